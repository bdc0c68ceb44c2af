"""Numeric precision of the teacher and the trainer: fp32, or bfloat16 on CPUs that have it.

``auto`` means bf16 where ``/proc/cpuinfo`` lists ``amx_bf16`` or ``avx512_bf16``
(Intel Sapphire Rapids and later: GCP C3/C4, AWS m7i/c7i; AMD Zen 4 and later
have AVX512-BF16), fp32 elsewhere (or when the flags cannot be read).

bf16 is applied *per layer*, after the float32 network is built and its weights
loaded (:func:`apply_precision`): each leaf layer gets the Keras
``mixed_bfloat16`` dtype policy (float32 variables, bfloat16 compute, oneDNN
AVX512-BF16 / AMX kernels), except

* the fixed front-ends (STFT, mel, log: :class:`sea_core.models.layers._FixedFrontend`),
* every layer up to and including the first convolution / dense layer (the
  log-mel input rounded to bf16 costs the most fidelity: measured min cosine to
  fp32 over real aisfx windows 0.99988 with it in bf16, 0.99999 without),
* layers named in ``keep_float32`` (the trainer's output layer).

Keras' *global* policy is never touched, so nothing leaks into models built
later in the same process (students, evaluation); :func:`global_policy_scope`
is there for code that has to build under a global policy and restores it.
"""
from __future__ import annotations

import contextlib
import functools
import logging

from sea_core.errors import ParameterError

__all__ = ["PRECISIONS", "BF16_CPU_FLAGS", "cpu_bf16_flags", "resolve_precision",
           "apply_precision", "model_precision", "global_policy_scope"]

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
"""Accepted values of ``--teacher-precision`` / ``--precision``."""

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags that make ``auto`` choose bf16."""

_MIXED = "mixed_bfloat16"


@functools.lru_cache(maxsize=4)
def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The bf16 flags of this CPU (subset of :data:`BF16_CPU_FLAGS`); () when unreadable."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return tuple(f for f in BF16_CPU_FLAGS if f in flags)
    except OSError:
        pass
    return ()


def resolve_precision(precision: str | None, *, flags: tuple[str, ...] | None = None) -> str:
    """``'fp32'`` or ``'bf16'`` for ``precision`` in :data:`PRECISIONS` (``None`` = auto).

    Raises
    ------
    ParameterError
        Unknown value.
    """
    p = "auto" if precision is None else str(precision).strip().lower()
    if p not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if p != "auto":
        return p
    flags = cpu_bf16_flags() if flags is None else flags
    return "bf16" if flags else "fp32"


def describe_cpu() -> str:
    """One line for logs: which bf16 flags this CPU has."""
    flags = cpu_bf16_flags()
    return f"CPU bf16 flags: {', '.join(flags) if flags else 'none'}"


def _is_frontend(layer) -> bool:
    from sea_core.models.layers import _FixedFrontend
    return isinstance(layer, _FixedFrontend)


def _is_first_compute(layer) -> bool:
    from keras import layers
    return isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.DepthwiseConv2D,
                              layers.SeparableConv2D, layers.Dense))


def apply_precision(model, precision: str, *, keep_float32: tuple[str, ...] = ()) -> int:
    """Set the dtype policy of ``model``'s leaf layers in place for ``precision``.

    ``'fp32'`` resets every leaf layer to ``float32`` (e.g. before saving a model
    trained in bf16); ``'bf16'`` gives ``mixed_bfloat16`` to the layers described
    in the module docstring. Weights are untouched (float32 either way). Call it
    before the model is traced (a ``tf.function`` traced earlier keeps its dtypes).

    Returns
    -------
    int
        Number of layers running in bfloat16.
    """
    from sea_core.models.layers import walk_layers

    if precision not in ("fp32", "bf16"):
        raise ParameterError(f"precision must be 'fp32' or 'bf16' here, got {precision!r}")
    n_bf16 = 0
    seen_compute = False
    for layer in walk_layers(model):
        if precision == "fp32" or _is_frontend(layer) or layer.name in keep_float32:
            target = "float32"
        elif not seen_compute:
            target = "float32"  # the input side up to the first conv/dense stays float32
        else:
            target = _MIXED
        if not seen_compute and _is_first_compute(layer):
            seen_compute = True
        if layer.dtype_policy.name != target:
            layer.dtype_policy = target
        n_bf16 += target == _MIXED
    return n_bf16


def model_precision(model) -> str:
    """``'bf16'`` when any leaf layer computes in bfloat16, else ``'fp32'``."""
    from sea_core.models.layers import walk_layers

    return "bf16" if any(layer.dtype_policy.compute_dtype == "bfloat16"
                         for layer in walk_layers(model)) else "fp32"


@contextlib.contextmanager
def global_policy_scope(policy: str):
    """Set Keras' global dtype policy (thread-local in Keras 3) and restore it on exit."""
    import keras

    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)
