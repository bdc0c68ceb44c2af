"""The public selection API: :func:`select` over a frames table (pyarrow or dict of arrays),
grouping its rows per (sensor, period) and sampling every group (:mod:`sea_core.sampling.group`)."""
from __future__ import annotations

import datetime as _dt
import math
import warnings
from typing import Any, Mapping

import numpy as np

from sea_core.errors import ParameterError, SeaWarning
from sea_core.params import SAMPLING, SamplingParams
from sea_core.sampling.group import plan_budget, sample_group
from sea_core.sampling.options import DPP_METHODS, RELEVANCE_METHODS, check_options, group_label
from sea_core.sampling.results import Selection

__all__ = ["select", "period_labels"]


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
    check_options(period=period)
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
    check_options(method=method, mode=mode, policy=policy, period=period)
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
    if emb is None and method in DPP_METHODS:
        raise ParameterError(f"method {method!r} needs the 'teacher_emb' column")
    if emb is not None:
        emb = np.asarray(emb)
        if emb.ndim != 2 or emb.shape[0] != n_total:
            raise ParameterError(f"teacher_emb: expected shape [{n_total}, D], got {emb.shape}")
    rel_col = _column(frames, "relevance")
    relevance = None if rel_col is None else np.asarray(_to_numpy(rel_col), dtype=np.float64)
    if relevance is None and method in RELEVANCE_METHODS:
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
                     method=method, mode=mode if method in DPP_METHODS else None, seed=int(seed),
                     period=period, policy=policy, per_sensor_budget=per_sensor_budget, total=total,
                     sensor_budget=sensor_budget, groups=results, small_groups=small, warnings=notes)
