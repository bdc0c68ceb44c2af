"""Reading the embed pipeline's output (``DIR/frames/sensor_key=<id>/day_key=<YYYY-MM-DD>/*.parquet``).

Used by the select / fit-pca / build-training-set stages. Every file is
checked against the frames schema version so drift names the file; a dataset
in the version-1 layout (``sensor=/day=`` directories) is refused the same way.
The files carry their own ``sensor`` and ``day`` columns, so the readers here
read files one by one and never need the directory keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sea_core import storage
from sea_core.errors import DataError, SchemaError
from sea_core.datasets.layout import FRAMES_DIR, FRAMES_PARTITION_KEYS, LEGACY_FRAMES_DIRS
from sea_core.datasets.schema import FRAMES_SCHEMA_VERSION, check_schema

__all__ = ["Partition", "list_partitions", "read_partition", "window_ids", "fixed_list_to_numpy",
           "frames_root", "partition_files", "read_files"]

_SK, _DK = FRAMES_PARTITION_KEYS
_PART = re.compile(rf"{_SK}=(?P<sensor>[^/]+)/{_DK}=(?P<day>\d{{4}}-\d{{2}}-\d{{2}})$")


def _read_metadata(f: str):
    try:
        fs, path = storage.url_to_fs(f)
        with fs.open(path, "rb") as fh:
            return pq.read_metadata(fh)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{f}: unreadable Parquet file ({exc})") from exc


def _refuse_legacy_layout(root: str) -> None:
    """SchemaError naming a file of the version-1 layout (``sensor=/day=`` directories), if any."""
    legacy = storage.glob(f"{root}/{LEGACY_FRAMES_DIRS}/*.parquet")
    if not legacy:
        return
    f = legacy[0]
    check_schema(_read_metadata(f).schema.to_arrow_schema(), "frames", FRAMES_SCHEMA_VERSION, where=f)
    raise SchemaError(f"{f}: frames partitions of schema version {FRAMES_SCHEMA_VERSION} live in "
                      f"{_SK}=<id>/{_DK}=<YYYY-MM-DD>/ directories, not sensor=/day=; "
                      f"rebuild the dataset")


@dataclass(frozen=True)
class Partition:
    """One (sensor, day) partition of the frames dataset (``files`` are fsspec URLs)."""

    sensor: str
    day: str
    files: tuple[str, ...]
    rows: int


def frames_root(frames_dir) -> str:
    """The ``frames/`` (``FRAMES_DIR``) folder URL of a run directory (or ``frames_dir`` itself when it is one)."""
    root = storage.absolute(frames_dir).rstrip("/")
    if storage.isdir(f"{root}/{FRAMES_DIR}"):
        root = f"{root}/{FRAMES_DIR}"
    if not storage.isdir(root):
        raise DataError(f"{frames_dir}: no frames dataset (expected DIR/{FRAMES_DIR}/{_SK}=*/{_DK}=*/)")
    return root


def partition_files(root: str, sensor: str, day: str) -> list[str]:
    """URLs of the Parquet files of one partition under a :func:`frames_root`."""
    return storage.glob(f"{root}/{_SK}={sensor}/{_DK}={day}/*.parquet")


def list_partitions(frames_dir) -> list[Partition]:
    """Partitions of ``frames_dir`` (the run directory or its ``frames/`` folder; any fsspec URL), sorted.

    One glob lists the files; each file's footer gives its row count and is checked
    against the frames schema.
    """
    root = frames_root(frames_dir)
    _refuse_legacy_layout(root)
    by_part: dict[tuple, list[str]] = {}
    for f in storage.glob(f"{root}/{_SK}=*/{_DK}=*/*.parquet"):
        m = _PART.search(f.rsplit("/", 1)[0])
        if m is not None:
            by_part.setdefault((m.group("sensor"), m.group("day")), []).append(f)
    parts = []
    for (sensor, day), files in sorted(by_part.items()):
        rows = 0
        for f in files:
            meta = _read_metadata(f)
            check_schema(meta.schema.to_arrow_schema(), "frames", FRAMES_SCHEMA_VERSION, where=f,
                         required=("recording_id", "window_index", "teacher_emb"))
            rows += meta.num_rows
        if rows:
            parts.append(Partition(sensor=sensor, day=day, files=tuple(sorted(files)), rows=rows))
    if not parts:
        raise DataError(f"{root}: the frames dataset is empty")
    return parts


def read_partition(part: Partition, columns: list[str]) -> pa.Table:
    """Columns of one partition, rows in file order."""
    return read_files(part.files, columns)


def read_files(files, columns: list[str]) -> pa.Table:
    tables = []
    for f in files:
        try:
            fs, path = storage.url_to_fs(f)
            with fs.open(path, "rb") as fh:
                tables.append(pq.read_table(fh, columns=columns))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: cannot read columns {columns} ({exc})") from exc
    return pa.concat_tables(tables)


def window_ids(table: pa.Table) -> np.ndarray:
    """``'<recording_id>:<window_index>'`` per row."""
    rec = table.column("recording_id").to_numpy(zero_copy_only=False).astype(str)
    idx = table.column("window_index").to_numpy(zero_copy_only=False)
    return np.char.add(np.char.add(rec, ":"), idx.astype(str))


def fixed_list_to_numpy(col) -> np.ndarray:
    """A fixed_size_list column -> [n, width] numpy array (no copy when possible)."""
    arr = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    width = arr.type.list_size
    return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), width)
