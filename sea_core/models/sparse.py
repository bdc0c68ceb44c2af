"""Sparse L3: magnitude pruning of a teacher's conv kernels.

edgel3 ships L3-Net audio models pruned to eight sparsity levels
(``SPARSE_L3_SPARSITIES``, reference section (h)); their weight files are not
available here, so :func:`sparse_teacher` rebuilds the idea on any teacher:
the smallest-magnitude conv kernel values are set to zero until the target
fraction is reached. Biases, BatchNorm and front-end constants are untouched.
All eight levels are accepted (edgel3 bug 4 rejected 73.5, 81.0 and 90.5).

No fine-tuning follows the pruning (edgel3's ``ft``/``kd`` retraining needs the
authors' data), so a pruned *random* teacher is only a test fixture and a
pruned real teacher approximates its unpruned self less well than the
authors' retrained files did.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sea_core.errors import ParameterError
from sea_core.models.teacher_base import Teacher
from sea_core.params import SPARSE_L3_SPARSITIES

__all__ = ["LayerPruneStats", "PruneReport", "prune_model", "sparse_teacher", "SparseTeacher",
           "MODES"]

MODES = ("layer", "global")
"""'layer': every pruned kernel reaches the target; 'global': one magnitude
threshold over all pruned kernels (the overall fraction reaches the target)."""


@dataclass(frozen=True, kw_only=True)
class LayerPruneStats:
    """Counts of one pruned kernel."""

    layer: str
    nonzero: int
    total: int

    @property
    def sparsity(self) -> float:
        """Percentage of zero values."""
        return 100.0 * (self.total - self.nonzero) / self.total if self.total else 0.0


@dataclass(frozen=True, kw_only=True)
class PruneReport:
    """What :func:`prune_model` did.

    ``nonzero``/``total``/``achieved`` cover the pruned kernels;
    ``model_nonzero``/``model_total`` cover every weight of the model
    (biases, BatchNorm statistics and any fixed front-end arrays included).
    """

    target: float
    mode: str
    layers: tuple[LayerPruneStats, ...]
    model_nonzero: int
    model_total: int

    @property
    def nonzero(self) -> int:
        return sum(s.nonzero for s in self.layers)

    @property
    def total(self) -> int:
        return sum(s.total for s in self.layers)

    @property
    def achieved(self) -> float:
        """Achieved sparsity (%) over the pruned kernels."""
        return 100.0 * (self.total - self.nonzero) / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {"target": self.target, "mode": self.mode, "achieved": self.achieved,
                "nonzero": self.nonzero, "total": self.total,
                "model_nonzero": self.model_nonzero, "model_total": self.model_total,
                "layers": [dict(asdict(s), sparsity=s.sparsity) for s in self.layers]}


def _check_sparsity(sparsity_percent, allow_any: bool) -> float:
    try:
        s = float(sparsity_percent)
    except (TypeError, ValueError):
        raise ParameterError(f"sparsity must be a number, got {sparsity_percent!r}") from None
    if allow_any:
        if not 0.0 <= s < 100.0:
            raise ParameterError(f"sparsity must be in [0, 100), got {sparsity_percent!r}")
        return s
    if s not in SPARSE_L3_SPARSITIES:
        raise ParameterError(f"sparsity must be one of {SPARSE_L3_SPARSITIES} "
                             f"(or pass allow_any=True), got {sparsity_percent!r}")
    return s


def _kernel_layers(model, layers):
    """(layer, kernel variable) pairs to prune."""
    import keras

    from sea_core.models.layers import walk_layers

    if isinstance(layers, str):
        if layers != "conv":
            raise ParameterError(f"layers must be 'conv' or a list of layer names, got {layers!r}")
        chosen = [l for l in walk_layers(model) if isinstance(l, keras.layers.Conv2D)]
    else:
        names = list(layers)
        by_name = {l.name: l for l in walk_layers(model)}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ParameterError(f"layers {unknown} are not in model {model.name!r}")
        chosen = [by_name[n] for n in names]
    pairs = []
    for layer in chosen:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            raise ParameterError(f"layer {layer.name!r} has no kernel to prune")
        pairs.append((layer, kernel))
    if not pairs:
        raise ParameterError(f"model {model.name!r} has no conv kernel to prune")
    return pairs


def _copy(model):
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def prune_model(model, sparsity_percent, *, layers="conv", mode: str = "layer",
                allow_any: bool = False, copy: bool = True):
    """Magnitude-prune the conv kernels of a (teacher) Keras model.

    The ``k = round(n * sparsity / 100)`` smallest-magnitude values are set to
    zero (ties broken by position, so the count is exact). Biases, BatchNorm
    and front-end arrays are never changed.

    Parameters
    ----------
    model : keras.Model
        e.g. ``get_teacher('l3-random').keras_model()``.
    sparsity_percent : float
        Target percentage of zeros, one of ``SPARSE_L3_SPARSITIES``
        (53.5, 63.5, 72.3, 73.5, 81.0, 87.0, 90.5, 95.45).
    layers : 'conv' or list of str
        ``'conv'`` prunes every ``Conv2D`` kernel (nested models included);
        a list names the layers to prune (each must have a ``kernel``).
    mode : {'layer', 'global'}
        Per-layer targets (each kernel reaches the sparsity) or one global
        magnitude threshold across the chosen kernels.
    allow_any : bool
        Accept any sparsity in [0, 100) instead of the released levels.
    copy : bool
        Prune a clone (default) and leave ``model`` unchanged; False prunes
        ``model`` in place.

    Returns
    -------
    model : keras.Model
        The pruned model.
    report : PruneReport
        Target, achieved sparsity, non-zero and total counts per pruned layer
        and overall, and the non-zero count of the whole model.

    Raises
    ------
    ParameterError
        Sparsity not a released level (message lists the valid ones), unknown
        mode or layer names, or no kernel to prune.
    """
    target = _check_sparsity(sparsity_percent, allow_any)
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
    if copy:
        model = _copy(model)
    pairs = _kernel_layers(model, layers)
    kernels = [np.asarray(k.numpy()) for _, k in pairs]
    masks = []
    if mode == "layer":
        for w in kernels:
            masks.append(_keep_mask(np.abs(w).ravel(), target).reshape(w.shape))
    else:
        flat = np.concatenate([np.abs(w).ravel() for w in kernels])
        keep = _keep_mask(flat, target)
        start = 0
        for w in kernels:
            masks.append(keep[start:start + w.size].reshape(w.shape))
            start += w.size
    stats = []
    for (layer, var), w, keep in zip(pairs, kernels, masks):
        pruned = np.where(keep, w, 0).astype(w.dtype)
        var.assign(pruned)
        stats.append(LayerPruneStats(layer=layer.name, nonzero=int(np.count_nonzero(pruned)),
                                     total=int(pruned.size)))
    all_w = [np.asarray(v.numpy()) for v in model.weights]
    report = PruneReport(target=target, mode=mode, layers=tuple(stats),
                         model_nonzero=int(sum(np.count_nonzero(w) for w in all_w)),
                         model_total=int(sum(w.size for w in all_w)))
    return model, report


def _keep_mask(magnitudes: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask keeping all but the ``round(n * sparsity / 100)`` smallest values."""
    n = magnitudes.size
    k = int(round(n * sparsity / 100.0))
    keep = np.ones(n, dtype=bool)
    if k > 0:
        keep[np.argsort(magnitudes, kind="stable")[:k]] = False
    return keep


# --------------------------------------------------------------------------- teacher wrapper
_REPORTS: dict[tuple, PruneReport] = {}


class SparseTeacher(Teacher):
    """A teacher whose network is a magnitude-pruned copy of ``base``'s.

    Parameters
    ----------
    base : Teacher
        e.g. ``get_teacher('l3')`` or ``get_teacher('l3-random', seed=0)``.
    sparsity : float
        One of ``SPARSE_L3_SPARSITIES`` (any value in [0, 100) with ``allow_any``).
    mode : {'layer', 'global'}
        See :func:`prune_model`.
    allow_any : bool

    Attributes
    ----------
    teacher_id : str
        ``'sparse(<base id>,sparsity=<s>,mode=<mode>)'``.
    is_random : bool
        Inherited from ``base``.
    """

    def __init__(self, base, sparsity, *, mode: str = "layer", allow_any: bool = False):
        if not isinstance(base, Teacher):
            raise ParameterError(f"base must be a Teacher, got {type(base).__name__}")
        s = _check_sparsity(sparsity, allow_any)
        if mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(spec=base.spec,
                         teacher_id=f"sparse({base.teacher_id},sparsity={s:g},mode={mode})",
                         is_random=base.is_random, batch_size=base.batch_size)
        self.base = base
        self.sparsity = s
        self.mode = mode
        self.allow_any = bool(allow_any)

    def _build_model(self):
        model, report = prune_model(self.base.keras_model(), self.sparsity, mode=self.mode,
                                    allow_any=self.allow_any, copy=True)
        _REPORTS[self._cache_key()] = report
        return model

    @property
    def report(self) -> PruneReport:
        """The :class:`PruneReport` of this teacher's network (builds it if needed)."""
        self._ensure()
        return _REPORTS[self._cache_key()]


def sparse_teacher(base, sparsity, *, mode: str = "layer",
                   allow_any: bool = False) -> SparseTeacher:
    """Wrap ``base`` as a teacher whose conv kernels are pruned to ``sparsity`` percent.

    Parameters
    ----------
    base : Teacher
    sparsity : float
        One of ``SPARSE_L3_SPARSITIES`` = (53.5, 63.5, 72.3, 73.5, 81.0, 87.0,
        90.5, 95.45), all accepted (edgel3 bug 4 rejected three of them).
    mode : {'layer', 'global'}
    allow_any : bool
        Accept any sparsity in [0, 100).

    Returns
    -------
    SparseTeacher
        Same spec as ``base``; ``teacher_id`` records the base id and sparsity;
        ``.report`` gives the non-zero counts. The base network is not changed.

    Raises
    ------
    ParameterError
        ``base`` is not a Teacher, or invalid sparsity / mode.
    """
    return SparseTeacher(base, sparsity, mode=mode, allow_any=allow_any)
