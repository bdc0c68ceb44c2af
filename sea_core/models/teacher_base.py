"""The teacher interface: :class:`Teacher` (audio windows -> embeddings) and its network cache.

A :class:`Teacher` is a small picklable description (spec, weights location,
``teacher_id``); the Keras network is built lazily, once per process (a
module-level cache keyed by class and ``teacher_id``), and is dropped when the
teacher is pickled so Beam / dask can ship it to workers. The named teachers
(:mod:`sea_core.models.teachers`) and users' Keras files
(:mod:`sea_core.models.keras_teacher`) are subclasses.
"""
from __future__ import annotations

import logging
import threading

import numpy as np

from sea_core.errors import ParameterError
from sea_core.params import TEACHER_BATCH_SIZE, TeacherSpec

__all__ = ["Teacher", "clear_model_cache", "check_batch_size"]

log = logging.getLogger(__name__)

_CACHE: dict[tuple, tuple] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: a SparseTeacher builds its base inside


def clear_model_cache() -> None:
    """Forget the networks built in this process (they are rebuilt on next use)."""
    with _CACHE_LOCK:
        _CACHE.clear()


class Teacher:
    """A teacher network: audio windows -> embeddings.

    Attributes
    ----------
    spec : TeacherSpec
        Name, sample rate, window length and embedding dim.
    teacher_id : str
        Identifies the network *and its weights* (recorded in every output),
        e.g. ``'aisfx-0.1.2/45f'`` (1-s window), ``'l3-random(seed=0)'``.
    is_random : bool
        True when the weights are random (a stand-in, not a trained teacher).
    batch_size : int
        Default windows per forward pass.
    precision : {'fp32', 'bf16'}
        The arithmetic the network runs in. The constructors take ``'fp32'``
        (default: exact), ``'bf16'`` or ``'auto'`` (resolved at creation: bf16 on
        CPUs with AMX-BF16 / AVX512-BF16, see :mod:`sea_core.precision`; the
        pipelines' default). Not part of ``teacher_id``: same network, same weights.
    """

    graph_revision = 1
    """Bumped when a subclass computes the same function with another graph (float32 rounding
    differs, e.g. a folded BatchNorm): part of the model cache key and of the batch-size probe
    cache, never of ``teacher_id`` (the same network with the same weights)."""

    def __init__(self, *, spec: TeacherSpec, teacher_id: str, is_random: bool = False,
                 batch_size: int = TEACHER_BATCH_SIZE, precision: str = "fp32"):
        from sea_core.precision import resolve_precision

        self.spec = spec
        self.teacher_id = str(teacher_id)
        self.is_random = bool(is_random)
        self.batch_size = check_batch_size(batch_size)
        self.precision = resolve_precision(precision)
        self._model = None
        self._infer = None

    # -- subclasses ---------------------------------------------------------------------------
    def _build_model(self):
        """Build the audio -> embedding Keras model with its weights (once per process)."""
        raise NotImplementedError

    def _cache_key(self) -> tuple:
        return (type(self).__qualname__, self.teacher_id, self.spec, self.precision,
                self.graph_revision)

    # -- public -------------------------------------------------------------------------------
    def keras_model(self):
        """The Keras model ``(B, window_samples) -> (B, emb_dim)`` (built on first call).

        The model is shared by every teacher with the same ``teacher_id`` in
        this process: copy it before changing its weights.
        """
        self._ensure()
        return self._model

    def embed(self, windows: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Embeddings of audio windows.

        Parameters
        ----------
        windows : np.ndarray
            [N, window_samples] float audio at ``spec.sample_rate`` (N may be 0).
        batch_size : int, optional
            Windows per forward pass; default ``self.batch_size``.

        Returns
        -------
        np.ndarray
            [N, emb_dim] float32.

        Raises
        ------
        ParameterError
            Wrong shape, non-float or non-finite input, bad batch size.
        """
        bs = self.batch_size if batch_size is None else check_batch_size(batch_size)
        x = np.asarray(windows)
        if x.ndim != 2 or x.shape[1] != self.spec.window_samples:
            raise ParameterError(f"{self.teacher_id}: windows must have shape "
                                 f"[N, {self.spec.window_samples}], got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ParameterError(f"{self.teacher_id}: windows must be float audio, got {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ParameterError(f"{self.teacher_id}: windows hold NaN or infinite samples")
        out = np.empty((x.shape[0], self.spec.emb_dim), np.float32)
        if x.shape[0] == 0:
            return out
        self._ensure()
        for i in range(0, x.shape[0], bs):
            y = self._infer(x[i:i + bs])
            out[i:i + bs] = np.asarray(y, dtype=np.float32).reshape(-1, self.spec.emb_dim)
        return out

    # -- machinery ----------------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._model is not None:
            return
        key = self._cache_key()
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is None:
                model = self._build_model()
                if self.precision != "fp32":
                    from sea_core.precision import apply_precision
                    apply_precision(model, self.precision)
                log.info("teacher %s: %s network built (%s)", self.teacher_id, self.precision,
                         _cpu_line())
                hit = (model, _make_infer(model, self.spec.window_samples))
                _CACHE[key] = hit
        self._model, self._infer = hit

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_infer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(teacher_id={self.teacher_id!r}, "
                f"sample_rate={self.spec.sample_rate}, window_samples={self.spec.window_samples}, "
                f"emb_dim={self.spec.emb_dim}, is_random={self.is_random}, "
                f"precision={self.precision!r})")


def _cpu_line() -> str:
    from sea_core.precision import describe_cpu
    return describe_cpu()


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int, or ParameterError unless it is a positive int (not a bool)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _make_infer(model, window_samples: int):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, window_samples], tf.float32)],
                 reduce_retracing=True)
    def infer(x):
        return tf.cast(model(x, training=False), tf.float32)  # bf16 networks: float32 out

    return lambda x: infer(tf.constant(x)).numpy()
