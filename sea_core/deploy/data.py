"""The windows a deployment is converted and checked with, drawn from the training set.

* :func:`training_window_samples`: the window length in 8-kHz samples, read from the
  training set's ``student_audio`` column type (THE source of the window for a
  log-mel-input model, whose frame count several window lengths share).
* :func:`read_student_audio`: ``n`` windows drawn (seeded, without replacement) from a split.
* :func:`draw_windows`: the representative windows (``QUANT.representative_windows`` from
  ``train``) and the held-out windows (``test``, else ``validate``, else the rest of
  ``train``), as the model's float input: int16 / :data:`~sea_core.params.INT16_SCALE`
  for an audio-input model, log-mel by :func:`student_logmels` for the trunk.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sea_core.errors import DataError
from sea_core.params import INT16_SCALE, QUANT, QuantParams

__all__ = ["split_files", "training_window_samples", "read_student_audio", "to_float",
           "student_logmels", "Windows", "draw_windows"]

HELD_OUT_SPLITS = ("test", "validate")
"""Splits tried in order for the held-out windows (fidelity and TFLM checks)."""


def split_files(data_dir, split: str) -> list[str]:
    """The part files of ``DIR/<split>/`` (local path or object-store URL), sorted."""
    from sea_core import storage

    if storage.is_url(data_dir):  # a training set on an object store (sea run --out s3://...)
        return storage.glob(storage.join(data_dir, split, "part-*.parquet"))
    return sorted(glob.glob(str(Path(data_dir) / split / "part-*.parquet")))


def _parquet(path: str):
    import fsspec
    import pyarrow.parquet as pq

    return pq.ParquetFile(fsspec.open(path, "rb").open() if "://" in path else path)


def _checked(pf, where: str):
    from sea_core.datasets.schema import TRAINING_SCHEMA_VERSION, check_schema

    check_schema(pf.schema_arrow, "training", TRAINING_SCHEMA_VERSION, where=where,
                 required=["student_audio"])
    return pf


def _files(data_dir, split: str) -> list[str]:
    files = split_files(data_dir, split)
    if not files:
        raise DataError(f"{data_dir}/{split}: no part-*.parquet files (is this a training set?)")
    return files


def training_window_samples(data_dir, split: str = "train") -> int:
    """Samples per ``student_audio`` window of the training set (its fixed list size).

    Raises
    ------
    DataError
        No part files in ``DIR/<split>/``.
    SchemaError
        The files are not a training set of the supported version.
    """
    f = _files(data_dir, split)[0]
    return int(_checked(_parquet(f), f).schema_arrow.field("student_audio").type.list_size)


def read_student_audio(data_dir, split: str, n: int, *, seed: int, exclude: int = 0,
                       window_samples: int | None = None) -> np.ndarray:
    """Draw ``n`` windows (seeded, without replacement) of ``student_audio`` from ``split``.

    Returns int16 [n, S] (fewer if the split holds fewer).

    Raises
    ------
    DataError
        No part files in ``DIR/<split>/``, or the window length does not match.
    SchemaError
        The files are not a training set of the supported version.
    """
    chunks = []
    for f in _files(data_dir, split):
        pf = _checked(_parquet(f), f)
        col = pf.read(columns=["student_audio"]).column("student_audio").combine_chunks()
        width = col.type.list_size
        chunks.append(col.values.to_numpy(zero_copy_only=False).reshape(-1, width))
    audio = np.concatenate(chunks).astype(np.int16, copy=False)
    if window_samples is not None and audio.shape[1] != window_samples:
        raise DataError(f"{data_dir}/{split}: student_audio holds {audio.shape[1]} samples per "
                        f"window, the model expects {window_samples}")
    order = np.random.default_rng(seed).permutation(len(audio))
    return audio[order[exclude:exclude + n]]


def to_float(audio_int16: np.ndarray) -> np.ndarray:
    """int16 windows -> float32 in [-1, 1) (x / INT16_SCALE, as soundfile decodes)."""
    return np.asarray(audio_int16).astype(np.float32) / INT16_SCALE


def student_logmels(audio_int16: np.ndarray, *, batch: int = 64) -> np.ndarray:
    """int16 8-kHz windows -> float32 log-mel [N, 64, F, 1] through THE student front-end."""
    import tensorflow as tf

    from sea_core.models.layers import student_frontend

    out = []
    for i in range(0, len(audio_int16), batch):
        x = tf.constant(to_float(audio_int16[i:i + batch]))
        out.append(np.asarray(student_frontend(x), dtype=np.float32))
    return np.concatenate(out)


@dataclass(frozen=True)
class Windows:
    """The model-input windows of a deployment."""

    representative: np.ndarray
    """Calibration windows of the converter (float model input)."""
    held_out: np.ndarray
    """Fidelity / TFLM-check windows (float model input)."""
    held_out_split: str
    """Where the held-out windows come from (recorded in the report)."""


def draw_windows(data_dir, window_samples: int, *, include_frontend: bool,
                 q: QuantParams = QUANT) -> Windows:
    """Representative windows from ``train`` and held-out windows, as the model's float input.

    Raises
    ------
    DataError
        ``train`` holds fewer than ``q.representative_windows`` windows, no held-out window,
        or a window length other than ``window_samples``.
    """
    rep = read_student_audio(data_dir, "train", q.representative_windows, seed=q.seed,
                             window_samples=window_samples)
    if len(rep) < q.representative_windows:
        raise DataError(f"{data_dir}/train holds {len(rep)} windows; the representative "
                        f"dataset needs {q.representative_windows}")
    held = None
    for split in HELD_OUT_SPLITS:
        if split_files(data_dir, split):
            held = read_student_audio(data_dir, split, q.fidelity_windows, seed=q.seed + 1,
                                      window_samples=window_samples)
            held_split = split
            break
    if held is None or len(held) == 0:
        held = read_student_audio(data_dir, "train", q.fidelity_windows, seed=q.seed,
                                  exclude=q.representative_windows, window_samples=window_samples)
        held_split = "train (not in the representative draw)"
    if len(held) == 0:
        raise DataError(f"{data_dir}: no held-out windows for the fidelity check")
    as_input = to_float if include_frontend else student_logmels
    return Windows(representative=as_input(rep), held_out=as_input(held), held_out_split=held_split)
