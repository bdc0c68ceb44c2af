"""Reading the embed pipeline's output (``DIR/frames/sensor=<id>/day=<YYYY-MM-DD>/*.parquet``).

Used by the select / fit-pca / build-training-set stages. Every file is
checked against the frames schema version so drift names the file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sea_core.errors import DataError
from sea_core.schema import FRAMES_SCHEMA_VERSION, check_schema

__all__ = ["Partition", "list_partitions", "read_partition", "window_ids", "fixed_list_to_numpy"]

_PART = re.compile(r"sensor=(?P<sensor>[^/]+)/day=(?P<day>\d{4}-\d{2}-\d{2})$")


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
        raise DataError(f"{frames_dir}: no frames dataset (expected DIR/frames/sensor=*/day=*/)")
    parts = []
    for folder in sorted(root.glob("sensor=*/day=*")):
        m = _PART.search(folder.as_posix())
        files = tuple(sorted(str(f) for f in folder.glob("*.parquet")))
        if m is None or not files:
            continue
        rows = 0
        for f in files:
            try:
                meta = pq.read_metadata(f)
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"{f}: unreadable Parquet file ({exc})") from exc
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
