"""Training-set layout on disk: shards per split and the dataset card.

``DIR/{train,validate,test}/part-*.parquet`` (``schema.training_schema``) and
``DIR/dataset_card.json``. The card's counts are computed from the Parquet
footers, so they always equal the files' contents.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sea_core.params import STUDENT_MEL64, TRAINING_SET
from sea_core.schema import TRAINING_SCHEMA_VERSION, target_column, training_schema

__all__ = ["SPLITS", "CARD_FILE", "training_table", "write_shard", "write_card"]

SPLITS = ("train", "validate", "test")
CARD_FILE = "dataset_card.json"


def training_table(*, window_ids, sensors, days, audio_int16: np.ndarray,
                   targets: dict[int, np.ndarray]) -> pa.Table:
    """Build a table with the training schema from numpy arrays."""
    n, samples = audio_int16.shape
    schema = training_schema(list(targets), samples)
    columns = {
        "window_id": pa.array(list(window_ids), pa.string()),
        "sensor": pa.array(list(sensors), pa.string()),
        "day": pa.array(list(days), pa.string()),
        "student_audio": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(audio_int16, dtype=np.int16).ravel()), samples),
    }
    for dim, values in targets.items():
        values = np.ascontiguousarray(values, dtype=np.float32)
        if values.shape != (n, dim):
            raise ValueError(f"{target_column(dim)}: shape {values.shape}, expected {(n, dim)}")
        columns[target_column(dim)] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim)
    return pa.table([columns[f.name] for f in schema], schema=schema)


def write_shard(path: str | os.PathLike, table: pa.Table) -> None:
    """Write one shard atomically (temp file, then rename), deterministic bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, row_group_size=TRAINING_SET.row_group_rows, compression="zstd",
                   write_statistics=False)
    os.replace(tmp, path)


def write_card(root: str | os.PathLike, *, dims, student_samples: int, **fields) -> dict:
    """Write ``dataset_card.json`` with counts read back from the shards' footers."""
    root = Path(root)
    counts, shards = {}, {}
    for split in SPLITS:
        files = sorted((root / split).glob("*.parquet"))
        shards[split] = len(files)
        counts[split] = int(sum(pq.read_metadata(f).num_rows for f in files))
    card = {"schema_version": TRAINING_SCHEMA_VERSION, "dims": sorted((int(d) for d in dims), reverse=True),
            "student_samples": int(student_samples), "student_sample_rate": STUDENT_MEL64.sample_rate,
            "counts": counts, "shards": shards, **fields}
    tmp = root / (CARD_FILE + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True, default=str))
    os.replace(tmp, root / CARD_FILE)
    return card
