"""Stage 6, write: the ONE sink - one Parquet file per output partition, written atomically.

Output layout (names: ``sea_core.datasets.layout``; columns: ``sea_core.datasets.schema``)::

    DIR/frames/sensor_key=<id>/day_key=<YYYY-MM-DD>/part-00000.parquet   frames_schema, rows sorted
    DIR/dead_letter/part-00000.parquet                                   dead_letter_schema, rows sorted

The frames files keep their ``sensor`` and ``day`` columns; the hive
directory keys are ``sensor_key`` / ``day_key`` so they never collide with
them (``sea_core.datasets.layout.frames_partition_dir`` says why).

Files are published through ``sea_core.storage`` (a hidden temporary name in
the same directory, then renamed), so a reader (or a restarted run) never sees
half a file. Writer
settings are fixed and no wall-clock value is stored, so the same rows give
byte-identical files. A frames partition left with no rows is removed.

This DoFn is the last transform of the pipeline and the only one with side
effects (DaskRunner evaluates only the last transform; one sink keeps every
runner correct).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.transforms.records import (DEAD_LETTER_KIND, FRAMES_KIND, METRICS_NAMESPACE)
from sea_core import storage
from sea_core.datasets.layout import (DEAD_LETTER_DIR, FRAMES_DIR, FRAMES_PARTITION_KEYS,
                                      LEGACY_FRAMES_GLOB, PART_NAME, frames_partition_dir)
from sea_core.datasets.schema import dead_letter_schema, frames_schema

__all__ = ["OutputLayout", "WritePartitions", "write_table_atomic", "read_table_or_none",
           "remove_file", "FRAMES_SORT", "DEAD_LETTER_SORT", "PARQUET_OPTIONS",
           "remove_temp_files", "TEMP_MARKER"]

FRAMES_SORT = [("start_time", "ascending"), ("uri", "ascending"), ("window_index", "ascending")]
DEAD_LETTER_SORT = [("uri", "ascending"), ("stage", "ascending")]
_DICT_COLUMNS = ["recording_id", "uri", "sensor", "day", "spl_source", "teacher_id",
                 "stage", "error_kind", "error_class"]
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True,
                       data_page_version="1.0", version="2.6", row_group_size=4096)
"""Fixed writer settings (byte-identical output for identical rows)."""


@dataclass(frozen=True)
class OutputLayout:
    """Where each partition lives under the output directory, and the schemas."""

    root: str
    emb_dim: int
    student_samples: int

    def frames_schema(self) -> pa.Schema:
        return frames_schema(self.emb_dim, self.student_samples)

    def schema(self, key: tuple) -> pa.Schema:
        return self.frames_schema() if key[0] == FRAMES_KIND else dead_letter_schema()

    def path(self, key: tuple) -> str:
        root = self.root.rstrip("/")
        if key[0] == FRAMES_KIND:
            return f"{root}/{FRAMES_DIR}/{frames_partition_dir(key[1], key[2])}/{PART_NAME}"
        if key[0] == DEAD_LETTER_KIND:
            return f"{root}/{DEAD_LETTER_DIR}/{PART_NAME}"
        raise ValueError(f"unknown partition key {key!r}")

    def frames_keys_on_disk(self) -> list[tuple]:
        """(frames, sensor, day) of every partition file present under ``root``."""
        sk, dk = FRAMES_PARTITION_KEYS
        fs, path = storage.url_to_fs(f"{self.root.rstrip('/')}/{FRAMES_DIR}")
        try:
            found = fs.glob(f"{path}/{sk}=*/{dk}=*/{PART_NAME}")
        except (FileNotFoundError, OSError):
            return []
        keys = []
        for p in found:
            parts = p.replace("\\", "/").split("/")
            keys.append((FRAMES_KIND, parts[-3][len(sk) + 1:], parts[-2][len(dk) + 1:]))
        return sorted(set(keys))

    def legacy_frames_files(self) -> list[str]:
        """URLs of frames files in the schema-version-1 layout (``sensor=/day=`` directories).

        A full run removes them: a dataset mixing both layouts is not readable.
        """
        fs, path = storage.url_to_fs(f"{self.root.rstrip('/')}/{FRAMES_DIR}")
        try:
            found = fs.glob(f"{path}/{LEGACY_FRAMES_GLOB}")
        except (FileNotFoundError, OSError):
            return []
        return sorted(fs.unstrip_protocol(p) if "://" in self.root else p for p in found)


def read_table_or_none(uri: str, schema: pa.Schema | None = None,
                       columns: list[str] | None = None) -> pa.Table | None:
    """The Parquet table at ``uri`` (cast to ``schema``), or None when there is no file."""
    fs, path = storage.url_to_fs(uri)
    if not fs.isfile(path):
        return None
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=columns)
    if schema is not None and columns is None:
        table = table.select(schema.names).cast(schema)
    return table


def write_table_atomic(table: pa.Table, uri: str) -> int:
    """Publish ``table`` at ``uri`` with the fixed writer settings (``storage.publish_parquet``:
    hidden temp file beside ``uri``, then rename). Returns bytes."""
    return storage.publish_parquet(table, uri, use_dictionary=[c for c in _DICT_COLUMNS
                                                               if c in table.column_names],
                                   **PARQUET_OPTIONS)


TEMP_MARKER = ".tmp-"
"""Temp files are ``.<name>.tmp-<hex>`` beside their target (``sea_core.storage``'s publish rule)."""


def remove_temp_files(root: str) -> int:
    """Remove the hidden ``.<name>.tmp-*`` files a killed run left under ``root``; returns how many.

    Called by the driver before the pipeline starts (one writer per output), so
    a 0-byte ``.part-*.parquet.tmp-*`` cannot outlive the rerun and trip readers
    that do not skip hidden files.
    """
    fs, path = storage.url_to_fs(root)
    try:
        found = fs.find(path)
    except (FileNotFoundError, OSError):
        return 0
    stale = [p for p in found
             if p.rsplit("/", 1)[-1].startswith(".") and TEMP_MARKER in p.rsplit("/", 1)[-1]]
    for p in stale:
        try:
            fs.rm(p)
        except (FileNotFoundError, OSError):
            pass
    return len(stale)


def remove_file(uri: str) -> bool:
    """Remove a partition file (and its now-empty directories). True when something was removed."""
    fs, path = storage.url_to_fs(uri)
    if not fs.isfile(path):
        return False
    fs.rm(path)
    parent = path.rsplit("/", 1)[0]
    for _ in range(2):  # day_key=..., then sensor_key=... (day=, sensor= in the old layout)
        try:
            if fs.ls(parent):
                break
            fs.rmdir(parent)
        except (OSError, FileNotFoundError):
            break
        parent = parent.rsplit("/", 1)[0]
    return True


class _WritePartition(beam.DoFn):
    def __init__(self, layout: OutputLayout):
        super().__init__()
        self._layout = layout

    def setup(self):
        from apache_beam.metrics import Metrics

        self._ms = Metrics.distribution(METRICS_NAMESPACE, "write_ms")
        self._files = Metrics.counter(METRICS_NAMESPACE, "partitions_written")

    def process(self, keyed):
        key, table = keyed
        t0 = time.perf_counter()
        path = self._layout.path(key)
        if table.num_rows == 0 and key[0] == FRAMES_KIND:
            action = "removed" if remove_file(path) else "empty"
            nbytes = 0
        else:
            nbytes = write_table_atomic(table, path)
            action = "written"
            self._files.inc()
        self._ms.update(int((time.perf_counter() - t0) * 1000))
        yield {"kind": key[0], "key": list(key), "path": path, "rows": int(table.num_rows),
               "bytes": nbytes, "action": action}


class WritePartitions(beam.PTransform):
    """(partition key, sorted Arrow table) -> one atomically written Parquet file per key."""

    def __init__(self, layout: OutputLayout, label: str | None = None):
        super().__init__(label)
        self._layout = layout

    def expand(self, tables):
        return tables | "WriteParquet" >> beam.ParDo(_WritePartition(self._layout))


def sorted_table(table: pa.Table, kind: str) -> pa.Table:
    return table.sort_by(FRAMES_SORT if kind == FRAMES_KIND else DEAD_LETTER_SORT)


def drop_uris(table: pa.Table, uris) -> pa.Table:
    """Rows of ``table`` whose ``uri`` is not in ``uris``."""
    uris = list(uris)
    if not uris or table.num_rows == 0:
        return table
    mask = pc.invert(pc.is_in(table.column("uri"), value_set=pa.array(uris, pa.string())))
    return table.filter(mask)


def keep_uris(table: pa.Table, uris) -> pa.Table:
    """Rows of ``table`` whose ``uri`` is in ``uris``."""
    uris = list(uris)
    if not uris or table.num_rows == 0:
        return table.slice(0, 0)
    return table.filter(pc.is_in(table.column("uri"), value_set=pa.array(uris, pa.string())))


def fixed_list(values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """[N, K] numpy -> fixed_size_list<dtype>[K] (zero-copy of the flat buffer)."""
    v = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1), type=dtype), v.shape[1])
