"""What a selection returns: :class:`GroupResult` (one group) and :class:`Selection` (all groups)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sea_core.sampling.options import DPP_METHODS, group_label

__all__ = ["GroupResult", "Selection"]


@dataclass
class GroupResult:
    """The selection inside one (sensor, period) group.

    Attributes
    ----------
    key : (sensor, period label)
    size : int
        Windows in the group.
    k : int
        Budget of the group.
    indices : np.ndarray [n_selected] int64
        Positions *within the group* (sorted).
    logdet : dict
        ``log det(L_Y)`` per kernel name (``DPP_METHODS``); absent without embeddings.
    algorithm : str
        'uniform', 'weighted', 'k-dpp-dual', 'k-dpp-dense', 'greedy-map',
        'dppy-mcmc', 'whole-group' or 'skipped'.
    traps : list of dict
        Reference-mode trap reports (``{'trap': name, ...}``).
    info : dict
        Algorithm details (e.g. k-DPP rank, complement directions).
    seconds : float
        Wall time of the group's selection (excluding log-det reporting).
    """

    key: tuple[str, str]
    size: int
    k: int
    indices: np.ndarray
    logdet: dict = field(default_factory=dict)
    algorithm: str = ""
    traps: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"sensor": self.key[0], "period": self.key[1], "size": self.size, "k": self.k,
                "n_selected": int(self.indices.size), "logdet": self.logdet,
                "algorithm": self.algorithm, "traps": self.traps, "info": self.info,
                "seconds": self.seconds}


@dataclass
class Selection:
    """Result of :func:`select`.

    Attributes
    ----------
    indices : np.ndarray [n] int64
        Selected rows of ``frames`` (ascending).
    window_ids : np.ndarray or None
        ``frames['window_id']`` of the selected rows, when present.
    method, mode, seed, period, policy : as passed (``mode`` is None for random / relevance).
    per_sensor_budget : bool
    total : int
        Requested total (``k`` or ``ceil(fraction * N)``).
    sensor_budget : dict
        Budget per sensor.
    groups : list of GroupResult
    small_groups : list of (group label, size, k)
        Groups smaller than their k (taken whole or skipped, per ``policy``).
    warnings : list of str
        Human-readable summary of small groups and reference-mode traps.
    """

    indices: np.ndarray
    window_ids: np.ndarray | None
    method: str
    mode: str | None
    seed: int
    period: str
    policy: str
    per_sensor_budget: bool
    total: int
    sensor_budget: dict
    groups: list
    small_groups: list
    warnings: list

    @property
    def group_k(self) -> dict:
        """``{group label: k}``."""
        return {group_label(g.key, self.period): g.k for g in self.groups}

    @property
    def logdet(self) -> dict:
        """Total ``log det(L_Y)`` per kernel (sum over groups; block-diagonal corpus kernel)."""
        out = {}
        for name in DPP_METHODS:
            vals = [g.logdet[name] for g in self.groups if name in g.logdet]
            if vals and len(vals) == len(self.groups):
                out[name] = float(np.sum(vals))
        return out

    @property
    def traps(self) -> list:
        """Every trap report, each tagged with its group."""
        return [{"group": group_label(g.key, self.period), **t} for g in self.groups for t in g.traps]

    def to_dict(self, *, include_indices: bool = False) -> dict:
        """JSON-ready summary (indices only on request)."""
        out = {"method": self.method, "mode": self.mode, "seed": self.seed, "period": self.period,
               "policy": self.policy, "per_sensor_budget": self.per_sensor_budget,
               "total_requested": self.total, "n_selected": int(self.indices.size),
               "sensor_budget": self.sensor_budget, "logdet": self.logdet,
               "small_groups": [list(s) for s in self.small_groups], "warnings": self.warnings,
               "groups": [g.to_dict() for g in self.groups]}
        if include_indices:
            out["indices"] = self.indices.tolist()
            if self.window_ids is not None:
                out["window_ids"] = [str(w) for w in self.window_ids]
        return out
