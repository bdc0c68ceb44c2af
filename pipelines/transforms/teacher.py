"""Stage 4, batched teacher inference: the windows of a whole work unit in fixed-size batches.

The teacher is created with ``get_teacher`` in ``DoFn.setup`` and its network
built there, so it is loaded once per worker process (the teacher module
caches networks per process; DaskRunner calls ``setup`` once per partition,
which then costs nothing).

The windows of all recordings in the unit are concatenated (batches are
filled across recordings) and cut into batches of exactly ``batch_size``
rows; only the unit's last batch is partial. A window's embedding must not
depend on which other windows share its batch - otherwise reruns, incremental
refreshes and runners would differ - and TF/oneDNN kernels *can* differ with
the batch size (measured here: aisfx fp32 at batch 1 differs from batch 32 in
the last bits; batches 7, 14, 31 and any composition at a fixed size do not).
So the last batch is zero-padded to a fixed size:

* ``batch_size`` itself (the safe rule), unless
* a probe at worker set-up (:func:`batch_invariant`: deterministic windows,
  embedded at ``batch_size`` and at every multiple of ``batch_size // 4``)
  shows the rows bit-identical across those sizes on this CPU / precision;
  then the tail is padded only to the next multiple of ``batch_size // 4``
  (32 -> 8: ~3.5 padded windows per unit on average instead of ~16).

Either way every forward pass has one of a few fixed sizes whose rows are
proven (or assumed, for ``batch_size``) equal, so embeddings are bit-identical
across runners, bundle boundaries and incremental refreshes. No
``finish_bundle`` output is used (DaskRunner drops it).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np

from pipelines.transforms.records import METRICS_NAMESPACE, Recording

__all__ = ["TeacherConfig", "TeacherInference", "embed_fixed_batches", "batch_invariant"]


@dataclass(frozen=True)
class TeacherConfig:
    name: str
    """'aisfx' | 'l3' | 'l3-random' | a model path (``get_teacher``)."""
    options: tuple = field(default_factory=tuple)
    """``get_teacher`` keyword options as sorted (key, value) pairs."""
    batch_size: int = 32
    precision: str = "fp32"
    """'fp32' | 'bf16', already resolved by the driver (never 'auto' here)."""


def embed_fixed_batches(teacher, windows: np.ndarray, batch_size: int,
                        pad_quantum: int | None = None) -> np.ndarray:
    """``teacher.embed`` in passes of exactly ``batch_size`` rows; the last one zero-padded.

    ``pad_quantum`` (a divisor of ``batch_size``, only when :func:`batch_invariant`
    holds): pad the last pass to the next multiple of it instead of ``batch_size``.
    """
    n = int(windows.shape[0])
    out = np.empty((n, teacher.spec.emb_dim), np.float32)
    full = n - n % batch_size
    if full:
        out[:full] = teacher.embed(windows[:full], batch_size=batch_size)
    if full < n:
        q = pad_quantum or batch_size
        size = min(batch_size, -(-(n - full) // q) * q)
        tail = np.zeros((size, windows.shape[1]), np.float32)
        tail[:n - full] = windows[full:]
        out[full:] = teacher.embed(tail, batch_size=size)[:n - full]
    return out


_INVARIANT: dict[tuple, bool] = {}


def _probe_cache_file(teacher, batch_size: int, quantum: int):
    """Where this machine remembers a probe result (CPU model + flags, TF, network, sizes)."""
    import hashlib
    import platform

    import tensorflow as tf

    from sea_core.paths import cache_dir

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = "".join(sorted({line for line in f if line.startswith(("model name", "flags"))}))
    except OSError:
        cpu = platform.processor()
    key = repr((teacher._cache_key(), batch_size, quantum, tf.__version__, cpu))
    return cache_dir() / "batch_probe" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def batch_invariant(teacher, batch_size: int, quantum: int) -> bool:
    """True when ``teacher`` gives bit-identical rows at ``batch_size`` and at every multiple of
    ``quantum`` below it on this CPU (deterministic probe windows). Cached per process and in
    the cache directory per machine (CPU model and flags, TF version, network, sizes)."""
    import json

    key = (teacher._cache_key(), batch_size, quantum)
    if key in _INVARIANT:
        return _INVARIANT[key]
    path = _probe_cache_file(teacher, batch_size, quantum)
    try:
        _INVARIANT[key] = bool(json.loads(path.read_text())["invariant"])
        return _INVARIANT[key]
    except (OSError, ValueError, KeyError):
        pass
    rng = np.random.default_rng(0)
    t = np.arange(teacher.spec.window_samples) / teacher.spec.sample_rate
    probe = np.stack([0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * f * t)
                      for f in 100 + 37 * np.arange(batch_size)]).astype(np.float32)
    full = teacher.embed(probe, batch_size=batch_size)
    ok = all(np.array_equal(teacher.embed(probe[:s], batch_size=s), full[:s])
             for s in range(quantum, batch_size, quantum))
    _INVARIANT[key] = ok
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"invariant": ok, "teacher_id": teacher.teacher_id,
                                   "precision": teacher.precision,
                                   "batch_size": batch_size, "quantum": quantum}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the probe again
    return ok


class _EmbedUnit(beam.DoFn):
    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self._cfg = cfg
        self._teacher = None

    def setup(self):
        from apache_beam.metrics import Metrics

        from sea_core.models.teachers import get_teacher

        self._teacher = get_teacher(self._cfg.name, precision=self._cfg.precision,
                                    **dict(self._cfg.options))
        self._teacher.keras_model()  # build the network now, once per worker process
        bs = self._cfg.batch_size
        q = bs // 4 if bs % 4 == 0 and bs >= 8 else bs
        self._quantum = q if q < bs and batch_invariant(self._teacher, bs, q) else None
        logging.getLogger(__name__).info(
            "teacher %s (%s): batches of %d, last batch of a unit padded to a multiple of %d%s",
            self._teacher.teacher_id, self._teacher.precision, bs, self._quantum or bs,
            "" if self._quantum else " (rows differ with the batch size here)" if q < bs else "")
        self._ms = Metrics.distribution(METRICS_NAMESPACE, "teacher_ms")
        self._ok = Metrics.counter(METRICS_NAMESPACE, "ok")
        self._windows = Metrics.counter(METRICS_NAMESPACE, "windows")

    def process(self, unit):
        recs = [it for it in unit if isinstance(it, Recording)]
        if recs:
            t0 = time.perf_counter()
            windows = np.concatenate([r.teacher_windows for r in recs], axis=0)
            emb = embed_fixed_batches(self._teacher, windows, self._cfg.batch_size,
                                      self._quantum)
            del windows
            i = 0
            for r in recs:
                n = r.n_windows
                r.embeddings = emb[i:i + n]
                r.teacher_windows = None  # raw audio does not travel further
                i += n
            self._ms.update(int((time.perf_counter() - t0) * 1000))
            self._ok.inc(len(recs))
            self._windows.inc(i)
        yield unit


class TeacherInference(beam.PTransform):
    """Fill ``embeddings`` of every :class:`Recording` in a unit (and drop its raw windows)."""

    def __init__(self, cfg: TeacherConfig, label: str | None = None):
        super().__init__(label)
        self._cfg = cfg

    def expand(self, units):
        return units | "Embed" >> beam.ParDo(_EmbedUnit(self._cfg))
