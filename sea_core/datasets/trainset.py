"""Training-set layout: shards per split and the dataset card.

``DIR/{train,validate,test}/part-*.parquet`` (``schema.training_schema``) and
``DIR/dataset_card.json`` (names: :mod:`sea_core.datasets.layout`). The ONE
table builder (:func:`training_table`) and the ONE shard writer settings
(:data:`SHARD_OPTIONS`) are used by the Beam job (``pipelines/transforms/trainset.py``)
and by the small in-memory writers (tests, benchmarks, the poster experiments).
Every file is published through :mod:`sea_core.storage` (temp key, then move).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sea_core import storage
from sea_core.datasets.layout import SPLITS, TRAINSET_CARD_FILE
from sea_core.datasets.schema import TRAINING_SCHEMA_VERSION, target_column, training_schema
from sea_core.params import STUDENT_MEL64, TRAINING_SET

__all__ = ["SHARD_OPTIONS", "training_table", "write_shard", "dataset_card",
           "publish_card", "write_card"]

SHARD_OPTIONS = dict(row_group_size=TRAINING_SET.row_group_rows, compression="zstd",
                     write_statistics=False)
"""Writer settings of every training shard (deterministic bytes)."""


def _strings(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == pa.string() else values.cast(pa.string())
    return pa.array(values if isinstance(values, np.ndarray) else list(values), pa.string())


def training_table(*, window_ids, sensors, days, audio_int16, targets: dict[int, np.ndarray]) -> pa.Table:
    """A table with the training schema.

    ``window_ids`` / ``sensors`` / ``days``: sequences or Arrow string arrays;
    ``audio_int16``: an int16 array [n, samples] or the frames' ``student_audio``
    fixed-size-list column (used as is); ``targets``: dim -> float32 [n, dim].
    """
    if isinstance(audio_int16, (pa.Array, pa.ChunkedArray)):
        audio = audio_int16.combine_chunks() if isinstance(audio_int16, pa.ChunkedArray) else audio_int16
        n, samples = len(audio), audio.type.list_size
    else:
        n, samples = audio_int16.shape
        audio = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(audio_int16, dtype=np.int16).ravel()), samples)
    schema = training_schema(list(targets), samples)
    columns = {"window_id": _strings(window_ids), "sensor": _strings(sensors), "day": _strings(days),
               "student_audio": audio}
    for dim, values in targets.items():
        values = np.ascontiguousarray(values, dtype=np.float32)
        if values.shape != (n, dim):
            raise ValueError(f"{target_column(dim)}: shape {values.shape}, expected {(n, dim)}")
        columns[target_column(dim)] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), dim)
    return pa.table([columns[f.name] for f in schema], schema=schema)


def write_shard(path: str | os.PathLike, table: pa.Table) -> int:
    """Publish one shard (temp key, then move; deterministic bytes). Returns the bytes written."""
    return storage.publish_parquet(table, str(path), **SHARD_OPTIONS)


def dataset_card(*, dims, student_samples: int, counts: dict, shards: dict, **fields) -> dict:
    """The ``dataset_card.json`` content (``counts`` / ``shards``: split -> number)."""
    return {"schema_version": TRAINING_SCHEMA_VERSION,
            "dims": sorted((int(d) for d in dims), reverse=True),
            "student_samples": int(student_samples), "student_sample_rate": STUDENT_MEL64.sample_rate,
            "counts": {s: int(counts.get(s, 0)) for s in SPLITS},
            "shards": {s: int(shards.get(s, 0)) for s in SPLITS}, **fields}


def publish_card(root, card: dict) -> int:
    """Publish ``root/dataset_card.json`` (sorted keys, indented)."""
    return storage.publish_text(storage.join(storage.absolute(root), TRAINSET_CARD_FILE),
                                json.dumps(card, indent=2, sort_keys=True, default=str))


def write_card(root: str | os.PathLike, *, dims, student_samples: int, **fields) -> dict:
    """Write ``dataset_card.json`` with counts read back from the shards' footers."""
    root = storage.absolute(root)
    counts, shards = {}, {}
    for split in SPLITS:
        files = storage.glob(storage.join(root, split, "*.parquet"))
        shards[split] = len(files)
        counts[split] = int(sum(_num_rows(f) for f in files))
    card = dataset_card(dims=dims, student_samples=student_samples, counts=counts, shards=shards, **fields)
    publish_card(root, card)
    return card


def _num_rows(url: str) -> int:
    fs, path = storage.url_to_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_metadata(f).num_rows
