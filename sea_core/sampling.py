"""Informed selection of the PCA fitting set: random, relevance, diversity, diversity+relevance.

One entry point, :func:`select`, groups the windows per sensor and per period
(day / ISO week / month), gives each group the reference budget [ref (e)] and
samples each group independently:

* sensor budget = ``ceil(total / n_sensors)`` (``total`` with ``per_sensor_budget``),
  ``n_sensors`` = sensors present in ``frames``;
* per-group ``k = ceil(sensor budget / groups of that sensor)``;
* a group smaller than its ``k``: ``policy='whole'`` takes the whole group,
  ``policy='skip'`` selects nothing (the reference's silent skip); both are
  listed in :attr:`Selection.small_groups`.

Methods
-------
``random``
    Uniform without replacement.
``relevance``
    Relevance-weighted without replacement (``p ∝ q``).
``diversity``
    k-DPP with ``L = F Fᵀ + c·I`` (``F`` L1-normalised rows, ``c = 0.1``).
``diversity+relevance``
    k-DPP with ``L = diag(q) F Fᵀ diag(q) + c·I``.

Modes (DPP methods only)
------------------------
``reference``
    The authors' DPPy call, verbatim: ``FiniteDPP('likelihood', L=L).sample_mcmc_k_dpp(
    size=k, s_init=RandomState(413121).choice(n, k), nb_iter=3,
    random_state=RandomState(seed))``, keeping the last state. Dense ``L``; groups
    above ``SamplingParams.reference_max_group`` are refused. Its measured traps
    (``../shared/docs/dependencies.md`` §2) are detected and reported per group:
    ``few_swaps`` (how many indices moved from the start: at most 2),
    ``det_underflow`` (``det(L_start)`` underflows to 0 so the chain returns the
    start), ``duplicate_start`` (the with-replacement start; duplicates are never
    passed on: the result is de-duplicated and topped up deterministically).
``exact``
    An exact k-DPP sample through the dual kernel (:func:`sea_core.dpp.sample_k_dpp`).
``scalable``
    Greedy MAP (:func:`sea_core.dpp.greedy_map`) for every group size. Chosen so
    that the meaning of a mode does not change with the group size: 'scalable'
    always *maximises* ``det(L_Y)`` (deterministic, ignores the seed), 'exact'
    always *samples* it. Greedy is ``O(N k (D + k))``; exact is ``O(N D² + N k (D + k))``.

BLAS runs single-threaded inside a group (:func:`sea_core.dpp.single_thread_blas`):
the per-group LAPACK calls are small and the greedy / projection loops memory-bound,
so threads only add synchronisation on a shared machine; parallelism belongs at
the group level (the Beam stage samples groups in parallel).

Determinism: each group draws from ``np.random.Generator(PCG64(SeedSequence([seed,
*sha256(group key)])))``, so a group's result does not depend on which other
groups exist or their order. The reference mode reproduces the authors' seeding
(the same ``RandomState(413121)`` start and ``RandomState(seed)`` for every group).

Every selection reports ``log det(L_Y)`` per group under both kernels
('diversity' and, when relevance is present, 'diversity+relevance'), whatever
the method, so methods can be compared; the total is the sum over groups (the
corpus kernel is block-diagonal over groups).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from sea_core import dpp
from sea_core.errors import ParameterError, SeaWarning
from sea_core.params import SAMPLING, SamplingParams

__all__ = ["METHODS", "MODES", "PERIODS", "POLICIES", "KERNELS", "GroupResult", "Selection",
           "select", "sample_group", "sample_group_bounded", "split_blocks", "plan_budget", "group_rng", "period_labels", "group_label"]

METHODS = ("random", "relevance", "diversity", "diversity+relevance")
MODES = ("reference", "exact", "scalable")
PERIODS = ("day", "week", "month")
POLICIES = ("whole", "skip")
KERNELS = ("diversity", "diversity+relevance")
_DPP_METHODS = ("diversity", "diversity+relevance")


def group_label(key: tuple[str, str], period: str = "day") -> str:
    """``'sensor=<s>/<period>=<p>'`` for messages and reports."""
    return f"sensor={key[0]}/{period}={key[1]}"


# --------------------------------------------------------------------------- results
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
        ``log det(L_Y)`` per kernel name (``KERNELS``); absent without embeddings.
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
        for name in KERNELS:
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


# --------------------------------------------------------------------------- seeds and budgets
def group_rng(seed: int, key: tuple[str, str]) -> np.random.Generator:
    """Generator seeded from ``(seed, sha256(key))``: independent of group order."""
    digest = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
    words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *words])))


def plan_budget(group_sizes: Mapping[tuple[str, str], int], *, total: int,
                per_sensor_budget: bool = False) -> tuple[dict, dict]:
    """Reference budgets [ref (e)].

    Parameters
    ----------
    group_sizes : mapping (sensor, period) -> size
    total : int
        Windows to select overall (> 0).
    per_sensor_budget : bool
        Give every sensor the full ``total`` instead of ``ceil(total / n_sensors)``.

    Returns
    -------
    k_per_group : dict (sensor, period) -> k
    sensor_budget : dict sensor -> budget

    Raises
    ------
    ParameterError
        ``total <= 0``, no groups, or a group of size <= 0 (named).
    """
    if total <= 0:
        raise ParameterError(f"total selection budget must be > 0, got {total}")
    if not group_sizes:
        raise ParameterError("no groups to sample from (frames are empty)")
    for key, size in group_sizes.items():
        if size <= 0:
            raise ParameterError(f"group {group_label(key)} has {size} windows; groups must be non-empty")
    sensors = sorted({key[0] for key in group_sizes})
    per_sensor = total if per_sensor_budget else math.ceil(total / len(sensors))
    n_groups = {s: sum(1 for key in group_sizes if key[0] == s) for s in sensors}
    k = {key: math.ceil(per_sensor / n_groups[key[0]]) for key in group_sizes}
    return k, {s: per_sensor for s in sensors}


# --------------------------------------------------------------------------- one group
def _check_group(key, n: int, k: int) -> None:
    if n <= 0:
        raise ParameterError(f"group {group_label(key)} is empty (size {n}); cannot select from it")
    if k <= 0:
        raise ParameterError(f"group {group_label(key)}: k must be > 0, got {k}")


def _reference_mcmc(b: np.ndarray, k: int, *, seed: int, key, params: SamplingParams,
                    rng: np.random.Generator) -> tuple[np.ndarray, list, dict]:
    """The authors' DPPy call plus trap detection; returns de-duplicated local indices."""
    from dppy.finite_dpps import FiniteDPP

    n = b.shape[0]
    if n > params.reference_max_group:
        raise ParameterError(
            f"group {group_label(key)}: {n} windows exceed the reference mode limit "
            f"SamplingParams.reference_max_group={params.reference_max_group} (dense N x N kernel); "
            f"use mode='exact' or 'scalable'")
    ell = dpp.dense_kernel(b, params.dpp_diag)
    s_init = np.random.RandomState(params.s_init_seed).choice(n, k)      # with replacement, as the authors
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = FiniteDPP("likelihood", L=ell).sample_mcmc_k_dpp(
            size=k, s_init=s_init, nb_iter=params.reference_nb_iter,
            random_state=np.random.RandomState(seed))
        det_start = float(np.linalg.det(ell[np.ix_(s_init, s_init)]))
    raw = np.asarray(raw, dtype=np.int64)
    runtime = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    traps = []
    moved = int(np.setdiff1d(raw, s_init).size)
    traps.append({"trap": "few_swaps", "proposals": params.reference_nb_iter - 1, "moved": moved,
                  "detail": f"{moved} of {k} indices moved from the random start"})
    uniq_start = np.unique(s_init)
    n_dup_start = int(k - uniq_start.size)
    frozen = bool(np.array_equal(np.sort(raw), np.sort(s_init)))
    # Underflow: the start's distinct items form a non-singular L_S whose det is 0 in float64.
    sub = ell[np.ix_(uniq_start, uniq_start)]
    det_unique = float(np.linalg.det(sub))
    sign, ld = np.linalg.slogdet(sub)
    if sign > 0 and (det_unique == 0.0 or not np.isfinite(det_unique)):
        traps.append({"trap": "det_underflow", "det_start": det_start, "det_start_distinct": det_unique,
                      "logdet_start_distinct": float(ld), "chain_frozen": frozen,
                      "runtime_warnings": runtime,
                      "detail": f"det(L_start) over its {uniq_start.size} distinct items is {det_unique} in "
                                f"float64 (log det {float(ld):.1f}): the MH ratio is 0/0 and the chain "
                                f"{'returned the start unchanged' if frozen else 'moved anyway'}"})
    # Never pass duplicates on: keep first occurrences, top up from a seeded permutation.
    _, first = np.unique(raw, return_index=True)
    kept = raw[np.sort(first)]
    n_dup_out = int(k - kept.size)
    if n_dup_start or n_dup_out:
        topup = np.empty(0, dtype=np.int64)
        if n_dup_out:
            pool = np.setdiff1d(np.arange(n), kept)
            topup = np.sort(pool[rng.permutation(pool.size)[:n_dup_out]])
            kept = np.concatenate([kept, topup])
        traps.append({"trap": "duplicate_start", "n_duplicates_in_start": n_dup_start,
                      "n_duplicates_in_result": n_dup_out, "topped_up": topup.tolist(),
                      "det_start": det_start, "runtime_warnings": runtime,
                      "detail": f"RandomState({params.s_init_seed}).choice({n}, {k}) drew {n_dup_start} "
                                f"duplicate(s); {n_dup_out} left in the chain's state were replaced"})
    info = {"s_init_unique": int(np.unique(s_init).size), "det_start": det_start}
    return np.sort(kept), traps, info


def sample_group(emb: np.ndarray | None, relevance: np.ndarray | None, *, k: int, method: str,
                 mode: str = "scalable", seed: int = SAMPLING.dpp_seed,
                 key: tuple[str, str] = ("-", "-"), policy: str = SAMPLING.small_group_policy,
                 params: SamplingParams = SAMPLING, report_logdet: bool = True) -> GroupResult:
    """Select ``k`` windows of one group (used by :func:`select`, Beam stages and benchmarks).

    Parameters
    ----------
    emb : np.ndarray [n, D] or None
        Teacher embeddings (required by the DPP methods and for log-det reports).
    relevance : np.ndarray [n] or None
        Relevance in (0, 1] (required by 'relevance' and 'diversity+relevance').
    k : int
        The group's budget (> 0).
    method, mode, seed, policy
        See :func:`select`.
    key : (sensor, period label)
        Names the group in errors and seeds its generator.
    params : SamplingParams
    report_logdet : bool
        Compute ``log det(L_Y)`` under each kernel.

    Returns
    -------
    GroupResult

    Raises
    ------
    ParameterError
        Empty group or ``k <= 0`` (naming the group), missing inputs, a group too
        large for the reference mode.
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}, got {method!r}")
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
    if policy not in POLICIES:
        raise ParameterError(f"policy must be one of {POLICIES}, got {policy!r}")
    if emb is None and method in _DPP_METHODS:
        raise ParameterError(f"group {group_label(key)}: method {method!r} needs embeddings")
    if relevance is None and method in ("relevance", "diversity+relevance"):
        raise ParameterError(f"group {group_label(key)}: method {method!r} needs relevance")
    n = int(emb.shape[0]) if emb is not None else (int(relevance.shape[0]) if relevance is not None else 0)
    _check_group(key, n, k)
    rng = group_rng(seed, key)
    t0 = time.perf_counter()
    traps, info = [], {}
    if k >= n:
        if k > n and policy == "skip":
            local, algo = np.empty(0, dtype=np.int64), "skipped"
        else:
            local, algo = np.arange(n, dtype=np.int64), "whole-group"
    elif method == "random":
        local, algo = np.sort(rng.choice(n, size=k, replace=False)), "uniform"
    elif method == "relevance":
        p = relevance / relevance.sum()
        local, algo = np.sort(rng.choice(n, size=k, replace=False, p=p)), "weighted"
    else:
        q = relevance if method == "diversity+relevance" else None
        with dpp.single_thread_blas():      # every mode, reference included (fair timings)
            if mode == "reference":
                b = dpp.dpp_features(emb, q)
                local, traps, info = _reference_mcmc(b, k, seed=seed, key=key, params=params, rng=rng)
                algo = "dppy-mcmc"
            elif mode == "exact":
                b = dpp.dpp_features(emb, q)
                local, info = dpp.sample_k_dpp(b, params.dpp_diag, k, rng, rtol=params.dual_eig_rtol)
                algo = f"k-dpp-{info['route']}"
            else:
                b = dpp.dpp_features(emb, q, dtype=np.float32)
                local, ld = dpp.greedy_map(b, params.dpp_diag, k)
                info, algo = {"logdet_greedy": ld}, "greedy-map"
            del b
    seconds = time.perf_counter() - t0
    logdet = {}
    if report_logdet and emb is not None:   # float64, on the selected rows only
        f = dpp.dpp_features(emb[local])
        every = np.arange(local.size)
        with dpp.single_thread_blas():
            logdet["diversity"] = dpp.logdet_subset(f, every, params.dpp_diag)
            if relevance is not None:
                f *= np.asarray(relevance, dtype=np.float64)[local, None]
                logdet["diversity+relevance"] = dpp.logdet_subset(f, every, params.dpp_diag)
    return GroupResult(key=tuple(key), size=n, k=int(k), indices=local, logdet=logdet,
                       algorithm=algo, traps=traps, info=info, seconds=seconds)


def split_blocks(times_s: np.ndarray, max_windows: int, block_seconds: float = 3600.0) -> list[np.ndarray]:
    """Row positions of consecutive time blocks of at most ``max_windows`` rows each.

    Rows are ordered by time; whole ``block_seconds`` blocks (hours) are packed
    together while they fit; a single hour larger than the cap is cut into
    consecutive pieces. Deterministic.
    """
    times = np.asarray(times_s, dtype=np.float64)
    order = np.argsort(times, kind="stable")
    hours = np.floor(times[order] / block_seconds).astype(np.int64)
    bounds = np.flatnonzero(np.diff(hours)) + 1
    pieces = np.split(order, bounds)
    blocks, current, size = [], [], 0
    for piece in pieces:
        for start in range(0, len(piece), max_windows):
            part = piece[start:start + max_windows]
            if size + len(part) > max_windows and current:
                blocks.append(np.concatenate(current))
                current, size = [], 0
            current.append(part)
            size += len(part)
    if current:
        blocks.append(np.concatenate(current))
    return [np.sort(b) for b in blocks]


def sample_group_bounded(emb: np.ndarray | None, relevance: np.ndarray | None, times_s: np.ndarray, *,
                         k: int, method: str, mode: str = "scalable", seed: int = SAMPLING.dpp_seed,
                         key: tuple[str, str] = ("-", "-"), policy: str = SAMPLING.small_group_policy,
                         params: SamplingParams = SAMPLING, max_windows: int | None = None,
                         report_logdet: bool = True) -> GroupResult:
    """:func:`sample_group`, with a group larger than ``max_windows`` split into time blocks.

    Each block (:func:`split_blocks`, whole hours where possible) gets the budget
    ``ceil(k * block / n)`` (the last ones trimmed so the total is ``k``), is
    sampled on its own (its generator seeded from the group key and the block
    number) and a warning is logged. The result's ``logdet`` is the sum over the
    blocks, ``info['blocks']`` their sizes and budgets. Memory is that of one
    block (see ``SamplingParams.max_group_windows``).
    """
    import logging

    cap = int(max_windows or params.max_group_windows)
    n = int(len(times_s))
    if n <= cap or k >= n:
        return sample_group(emb, relevance, k=k, method=method, mode=mode, seed=seed, key=key,
                            policy=policy, params=params, report_logdet=report_logdet)
    blocks = split_blocks(times_s, cap)
    budgets = [math.ceil(k * len(b) / n) for b in blocks]
    excess = sum(budgets) - k
    for i in range(len(budgets) - 1, -1, -1):
        if excess <= 0:
            break
        cut = min(excess, budgets[i] - 1)
        budgets[i] -= cut
        excess -= cut
    logging.getLogger(__name__).warning(
        "select: group %s has %d windows > max_group_windows %d; sampled as %d time blocks "
        "(sizes %s)", group_label(key), n, cap, len(blocks), [len(b) for b in blocks][:10])
    indices, logdet, traps, info_blocks, seconds, algos = [], {}, [], [], 0.0, set()
    for i, (rows, kb) in enumerate(zip(blocks, budgets)):
        sub_key = (key[0], f"{key[1]}#{i}")
        r = sample_group(None if emb is None else emb[rows],
                         None if relevance is None else relevance[rows], k=kb, method=method,
                         mode=mode, seed=seed, key=sub_key, policy=policy, params=params,
                         report_logdet=report_logdet)
        indices.append(rows[r.indices])
        for name, v in r.logdet.items():
            logdet[name] = logdet.get(name, 0.0) + float(v)
        traps += [{"block": i, **t} for t in r.traps]
        info_blocks.append({"size": int(len(rows)), "k": int(kb), "n_selected": int(r.indices.size)})
        seconds += r.seconds
        algos.add(r.algorithm)
    return GroupResult(key=tuple(key), size=n, k=int(k), indices=np.sort(np.concatenate(indices)),
                       logdet=logdet, algorithm="+".join(sorted(algos)) + f" in {len(blocks)} blocks",
                       traps=traps, info={"blocks": info_blocks, "max_group_windows": cap},
                       seconds=seconds)


# --------------------------------------------------------------------------- frames
def _column(frames: Any, name: str):
    try:
        import pyarrow as pa
        if isinstance(frames, (pa.Table, pa.RecordBatch)):
            return frames.column(name) if name in frames.column_names else None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(frames, Mapping):
        return frames.get(name)
    raise ParameterError(f"frames must be a pyarrow Table or a dict of arrays, got {type(frames).__name__}")


def _to_numpy(col) -> np.ndarray:
    if hasattr(col, "combine_chunks"):
        col = col.combine_chunks()
    if hasattr(col, "to_numpy"):
        import pyarrow as pa
        if isinstance(col, pa.Array):
            if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
                width = col.type.list_size if pa.types.is_fixed_size_list(col.type) else None
                flat = col.flatten().to_numpy(zero_copy_only=False)
                if width is None:
                    width = flat.size // max(len(col), 1)
                return flat.reshape(len(col), width)
            return col.to_numpy(zero_copy_only=False)
    return np.asarray(col)


def period_labels(days: np.ndarray, period: str) -> np.ndarray:
    """Period label of each day: 'YYYY-MM-DD', ISO week 'YYYY-Www' or 'YYYY-MM'.

    Parameters
    ----------
    days : np.ndarray of 'YYYY-MM-DD' strings or datetime64
    period : 'day' | 'week' | 'month'
    """
    if period not in PERIODS:
        raise ParameterError(f"period must be one of {PERIODS}, got {period!r}")
    try:
        d = np.asarray(days).astype("datetime64[D]")
    except ValueError as exc:
        raise ParameterError(f"day: cannot parse dates as YYYY-MM-DD ({exc})") from None
    if period == "day":
        return d.astype(str)
    if period == "month":
        return d.astype("datetime64[M]").astype(str)
    uniq, inv = np.unique(d, return_inverse=True)
    labels = []
    for u in uniq.astype(str):
        y, w, _ = _dt.date.fromisoformat(u).isocalendar()
        labels.append(f"{y}-W{w:02d}")
    return np.asarray(labels)[inv]


def _days_of(frames) -> np.ndarray:
    day = _column(frames, "day")
    if day is not None:
        return _to_numpy(day).astype(str)
    start = _column(frames, "start_time")
    if start is None:
        raise ParameterError("frames need a 'day' (YYYY-MM-DD) or 'start_time' column to group by period")
    if hasattr(start, "type"):                     # pyarrow: convert to the column's local time
        import pyarrow as pa
        import pyarrow.compute as pc
        arr = start.combine_chunks() if hasattr(start, "combine_chunks") else start
        if pa.types.is_timestamp(arr.type) and arr.type.tz is not None:
            arr = pc.local_timestamp(arr)
        return arr.cast(pa.date32()).to_numpy(zero_copy_only=False).astype("datetime64[D]").astype(str)
    return np.asarray(start).astype("datetime64[D]").astype(str)   # numpy: taken as local time


# --------------------------------------------------------------------------- select
def select(frames: Any, *, k: int | None = None, fraction: float | None = None, method: str,
           mode: str = "scalable", period: str = SAMPLING.period, seed: int = SAMPLING.dpp_seed,
           per_sensor_budget: bool = False, policy: str = SAMPLING.small_group_policy,
           params: SamplingParams = SAMPLING) -> Selection:
    """Select windows per (sensor, period) group with the reference budgets.

    Parameters
    ----------
    frames : pyarrow.Table or dict of arrays
        Columns: ``sensor``; ``day`` (YYYY-MM-DD) or ``start_time``; ``teacher_emb``
        [N, D] (required by the DPP methods, used for log-det reports otherwise);
        ``relevance`` [N] in (0, 1] (required by 'relevance' and 'diversity+relevance');
        optional ``window_id``.
    k : int, optional
        Total windows to select (the reference's ``total``).
    fraction : float, optional
        ``total = ceil(fraction * N)``; ``SamplingParams.default_fraction`` when
        neither ``k`` nor ``fraction`` is given.
    method : {'random', 'relevance', 'diversity', 'diversity+relevance'}
    mode : {'scalable', 'exact', 'reference'}
        DPP algorithm (see the module docstring); ignored by random / relevance.
    period : {'day', 'week', 'month'}
    seed : int
        Non-negative; reproduces every mode.
    per_sensor_budget : bool
        Every sensor gets ``total`` (the reference's ``per_sensor`` option).
    policy : {'whole', 'skip'}
        Groups smaller than their k.
    params : SamplingParams

    Returns
    -------
    Selection

    Raises
    ------
    ParameterError
        Bad option; both ``k`` and ``fraction``; non-finite embeddings, relevance
        outside (0, 1] (naming the field and group); an empty group or ``k <= 0``.
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}, got {method!r}")
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
    if policy not in POLICIES:
        raise ParameterError(f"policy must be one of {POLICIES}, got {policy!r}")
    if period not in PERIODS:
        raise ParameterError(f"period must be one of {PERIODS}, got {period!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise ParameterError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if k is not None and fraction is not None:
        raise ParameterError("give either k (total windows) or fraction, not both")

    sensor_col = _column(frames, "sensor")
    if sensor_col is None:
        raise ParameterError("frames: missing column 'sensor'")
    sensors = _to_numpy(sensor_col).astype(str)
    n_total = sensors.size
    if n_total == 0:
        raise ParameterError("frames: no rows to select from")
    labels = period_labels(_days_of(frames), period)
    if labels.size != n_total:
        raise ParameterError(f"frames: 'day'/'start_time' has {labels.size} rows, 'sensor' has {n_total}")

    emb_col = _column(frames, "teacher_emb")
    emb = None if emb_col is None else _to_numpy(emb_col)
    if emb is None and method in _DPP_METHODS:
        raise ParameterError(f"method {method!r} needs the 'teacher_emb' column")
    if emb is not None:
        emb = np.asarray(emb)
        if emb.ndim != 2 or emb.shape[0] != n_total:
            raise ParameterError(f"teacher_emb: expected shape [{n_total}, D], got {emb.shape}")
    rel_col = _column(frames, "relevance")
    relevance = None if rel_col is None else np.asarray(_to_numpy(rel_col), dtype=np.float64)
    if relevance is None and method in ("relevance", "diversity+relevance"):
        raise ParameterError(f"method {method!r} needs the 'relevance' column")
    wid_col = _column(frames, "window_id")
    window_ids = None if wid_col is None else _to_numpy(wid_col)

    # Groups: (sensor, period label), rows in frame order within each group.
    pair = np.char.add(np.char.add(sensors, "\x1f"), labels)
    uniq, inverse = np.unique(pair, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(uniq.size + 1))
    keys = [tuple(u.split("\x1f", 1)) for u in uniq]
    rows_of = {key: order[bounds[i]:bounds[i + 1]] for i, key in enumerate(keys)}

    def where(row: int) -> str:
        g = group_label((sensors[row], labels[row]), period)
        w = f", window_id {window_ids[row]}" if window_ids is not None else ""
        return f"row {row}{w}, group {g}"

    if emb is not None:
        bad = ~np.isfinite(emb).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ParameterError(f"teacher_emb: {int(bad.sum())} row(s) hold NaN/inf (first: {where(first)})")
    if relevance is not None:
        bad = ~(np.isfinite(relevance) & (relevance > 0) & (relevance <= 1))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ParameterError(f"relevance: {int(bad.sum())} value(s) outside (0, 1] "
                                 f"(first: {relevance[first]!r} at {where(first)})")

    total = int(k) if k is not None else math.ceil(
        (params.default_fraction if fraction is None else fraction) * n_total)
    if fraction is not None and not 0 < fraction <= 1:
        raise ParameterError(f"fraction must be in (0, 1], got {fraction!r}")
    k_of, sensor_budget = plan_budget({key: rows.size for key, rows in rows_of.items()},
                                      total=total, per_sensor_budget=per_sensor_budget)

    results, chosen, small, notes = [], [], [], []
    for key in keys:
        rows = rows_of[key]
        res = sample_group(None if emb is None else emb[rows],
                           None if relevance is None else relevance[rows],
                           k=k_of[key], method=method, mode=mode, seed=int(seed), key=key,
                           policy=policy, params=params)
        results.append(res)
        chosen.append(rows[res.indices])
        label = group_label(key, period)
        if res.size < res.k:
            small.append((label, res.size, res.k))
        notes.extend(f"{label}: {t['trap']}: {t['detail']}" for t in res.traps if t["trap"] != "few_swaps")
    if small:
        verb = "taken whole" if policy == "whole" else "skipped"
        notes.insert(0, f"{len(small)} group(s) smaller than their k were {verb}: "
                        + ", ".join(f"{g} ({s} < {kk})" for g, s, kk in small[:10])
                        + (" ..." if len(small) > 10 else ""))
    swaps = [t["moved"] for r in results for t in r.traps if t["trap"] == "few_swaps"]
    if swaps:
        notes.insert(0, f"reference mode: {params.reference_nb_iter - 1} swap proposals per chain; "
                        f"{len(swaps)} chain(s) moved {min(swaps)}..{max(swaps)} indices from the "
                        f"random start (effectively random sampling)")
    if notes:
        warnings.warn(f"select({method}, {mode}): " + "; ".join(notes[:5])
                      + (f" (+{len(notes) - 5} more in Selection.warnings)" if len(notes) > 5 else ""),
                      SeaWarning, stacklevel=2)
    indices = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
    return Selection(indices=indices.astype(np.int64),
                     window_ids=None if window_ids is None else window_ids[indices],
                     method=method, mode=mode if method in _DPP_METHODS else None, seed=int(seed),
                     period=period, policy=policy, per_sensor_budget=per_sensor_budget, total=total,
                     sensor_budget=sensor_budget, groups=results, small_groups=small, warnings=notes)
