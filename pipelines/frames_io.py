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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sea_core.errors import DataError, SchemaError
from sea_core.schema import FRAMES_PARTITION_KEYS, FRAMES_SCHEMA_VERSION, check_schema

__all__ = ["Partition", "list_partitions", "read_partition", "window_ids", "fixed_list_to_numpy"]

_SK, _DK = FRAMES_PARTITION_KEYS
_PART = re.compile(rf"{_SK}=(?P<sensor>[^/]+)/{_DK}=(?P<day>\d{{4}}-\d{{2}}-\d{{2}})$")
_LEGACY_DIRS = "sensor=*/day=*"  # frames schema version 1


def _read_metadata(f: str):
    try:
        return pq.read_metadata(f)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{f}: unreadable Parquet file ({exc})") from exc


def _refuse_legacy_layout(root: Path) -> None:
    """SchemaError naming a file of the version-1 layout (``sensor=/day=`` directories), if any."""
    legacy = sorted(f for d in root.glob(_LEGACY_DIRS) for f in d.glob("*.parquet"))
    if not legacy:
        return
    f = str(legacy[0])
    check_schema(_read_metadata(f).schema.to_arrow_schema(), "frames", FRAMES_SCHEMA_VERSION, where=f)
    raise SchemaError(f"{f}: frames partitions of schema version {FRAMES_SCHEMA_VERSION} live in "
                      f"{_SK}=<id>/{_DK}=<YYYY-MM-DD>/ directories, not sensor=/day=; "
                      f"rebuild the dataset")


@dataclass(frozen=True)
class Partition:
    """One (sensor, day) partition of the frames dataset."""

    sensor: str
    day: str
    files: tuple[str, ...]
    rows: int


def list_partitions(frames_dir: str | Path) -> list[Partition]:
    """Partitions of ``frames_dir`` (the run directory or its ``frames/`` folder), sorted."""
    root = Path(frames_dir)
    if (root / "frames").is_dir():
        root = root / "frames"
    if not root.is_dir():
        raise DataError(f"{frames_dir}: no frames dataset (expected DIR/frames/{_SK}=*/{_DK}=*/)")
    _refuse_legacy_layout(root)
    parts = []
    for folder in sorted(root.glob(f"{_SK}=*/{_DK}=*")):
        m = _PART.search(folder.as_posix())
        files = tuple(sorted(str(f) for f in folder.glob("*.parquet")))
        if m is None or not files:
            continue
        rows = 0
        for f in files:
            meta = _read_metadata(f)
            check_schema(meta.schema.to_arrow_schema(), "frames", FRAMES_SCHEMA_VERSION, where=f,
                         required=("recording_id", "window_index", "teacher_emb"))
            rows += meta.num_rows
        if rows:
            parts.append(Partition(sensor=m.group("sensor"), day=m.group("day"), files=files, rows=rows))
    if not parts:
        raise DataError(f"{root}: the frames dataset is empty")
    return parts


def read_partition(part: Partition, columns: list[str]) -> pa.Table:
    """Columns of one partition, rows in file order."""
    tables = []
    for f in part.files:
        try:
            tables.append(pq.read_table(f, columns=columns))
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
