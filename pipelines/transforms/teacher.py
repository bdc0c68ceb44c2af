"""Stage 4, batched teacher inference: the windows of a whole work unit in fixed-size batches.

The teacher is created with ``get_teacher`` in ``DoFn.setup`` and its network
built there, so it is loaded once per worker process (the teacher module
caches networks per process; DaskRunner calls ``setup`` once per partition,
which then costs nothing).

Every forward pass has exactly ``batch_size`` rows: the windows of all
recordings in the unit are concatenated, cut into batches, and the last batch
is zero-padded. A window's embedding is then independent of which other
windows share its batch (TF/oneDNN kernels can differ with the batch *size*),
so reruns, incremental refreshes and every runner give bit-identical vectors.
No ``finish_bundle`` output is used (DaskRunner drops it).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np

from pipelines.transforms.records import METRICS_NAMESPACE, Recording

__all__ = ["TeacherConfig", "TeacherInference", "embed_fixed_batches"]


@dataclass(frozen=True)
class TeacherConfig:
    name: str
    """'aisfx' | 'l3' | 'l3-random' | a model path (``get_teacher``)."""
    options: tuple = field(default_factory=tuple)
    """``get_teacher`` keyword options as sorted (key, value) pairs."""
    batch_size: int = 32
    precision: str = "fp32"
    """'fp32' | 'bf16', already resolved by the driver (never 'auto' here)."""


def embed_fixed_batches(teacher, windows: np.ndarray, batch_size: int) -> np.ndarray:
    """``teacher.embed`` with every forward pass exactly ``batch_size`` rows (last one zero-padded)."""
    n = int(windows.shape[0])
    out = np.empty((n, teacher.spec.emb_dim), np.float32)
    full = n - n % batch_size
    if full:
        out[:full] = teacher.embed(windows[:full], batch_size=batch_size)
    if full < n:
        tail = np.zeros((batch_size, windows.shape[1]), np.float32)
        tail[:n - full] = windows[full:]
        out[full:] = teacher.embed(tail, batch_size=batch_size)[:n - full]
    return out


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
        self._ms = Metrics.distribution(METRICS_NAMESPACE, "teacher_ms")
        self._ok = Metrics.counter(METRICS_NAMESPACE, "ok")
        self._windows = Metrics.counter(METRICS_NAMESPACE, "windows")

    def process(self, unit):
        recs = [it for it in unit if isinstance(it, Recording)]
        if recs:
            t0 = time.perf_counter()
            windows = np.concatenate([r.teacher_windows for r in recs], axis=0)
            emb = embed_fixed_batches(self._teacher, windows, self._cfg.batch_size)
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
