"""One group's selection: seeds, the reference budgets, random / relevance / k-DPP sampling
(the modes of :mod:`sea_core.sampling`), the authors' DPPy call with its trap reports, and
time blocks for a group too large for memory."""
from __future__ import annotations

import hashlib
import logging
import math
import time
import warnings
from typing import Mapping

import numpy as np

from sea_core import dpp
from sea_core.errors import ParameterError
from sea_core.params import SAMPLING, SamplingParams
from sea_core.sampling.options import DPP_METHODS, RELEVANCE_METHODS, check_options, group_label
from sea_core.sampling.results import GroupResult

__all__ = ["group_rng", "plan_budget", "sample_group", "split_blocks", "sample_group_bounded"]

log = logging.getLogger(__name__)


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
    check_options(method=method, mode=mode, policy=policy)
    if emb is None and method in DPP_METHODS:
        raise ParameterError(f"group {group_label(key)}: method {method!r} needs embeddings")
    if relevance is None and method in RELEVANCE_METHODS:
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
    log.warning(
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
