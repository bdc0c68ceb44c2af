"""The quick sampling comparison every ``sea run`` does (stage ``compare``).

No student is trained: each sampling method's PCA is judged by how much variance of
the windows it explains (held-out R^2 at the student dim) and by the log det of its
selection. :func:`frames_arrays` (the windows in memory, optionally a seeded uniform
sample) is shared with the poster experiments.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipelines.job.stages import mean_std
from sea_core.errors import ParameterError
from sea_core.params import EXPERIMENT
from sea_core.sampling import METHODS

__all__ = ["sampling_comparison", "frames_arrays"]


def frames_arrays(frames_dir, max_windows: int | None = None, seed: int = 0) -> dict:
    """sensor, day, teacher_emb (float32), relevance, window_id of the windows (in memory).

    With ``max_windows`` and a larger dataset: a uniform random sample of
    ``max_windows`` windows, drawn partition by partition (each partition keeps
    ``round(rows * max_windows / total)`` rows, seeded), so memory is bounded by
    the sample plus one partition whatever the corpus size.
    """
    from sea_core.datasets.frames import fixed_list_to_numpy, list_partitions, read_partition, window_ids

    parts = list_partitions(frames_dir)
    total = sum(p.rows for p in parts)
    ratio = 1.0 if not max_windows or total <= max_windows else max_windows / total
    rng = np.random.default_rng([int(seed), 0x5EA])
    sensors, days, embs, rels, ids = [], [], [], [], []
    for part in parts:
        table = read_partition(part, ["recording_id", "window_index", "teacher_emb", "relevance"])
        if ratio < 1.0:
            m = min(table.num_rows, int(round(table.num_rows * ratio)))
            if m == 0:
                continue
            keep = np.sort(rng.choice(table.num_rows, size=m, replace=False))
            table = table.take(keep)
        sensors += [part.sensor] * table.num_rows
        days += [part.day] * table.num_rows
        embs.append(fixed_list_to_numpy(table.column("teacher_emb")).astype(np.float32))
        rels.append(table.column("relevance").to_numpy(zero_copy_only=False))
        ids.append(window_ids(table))
    return {"sensor": np.asarray(sensors), "day": np.asarray(days),
            "teacher_emb": np.concatenate(embs), "relevance": np.concatenate(rels).astype(np.float64),
            "window_id": np.concatenate(ids), "total_windows": total}


def sampling_comparison(frames_dir: str | Path, *, k: int, dim: int, seeds=(0, 1, 2),
                        methods=METHODS, mode: str = "scalable",
                        max_windows: int | None = EXPERIMENT.comparison_max_windows) -> dict:
    """Each method's PCA judged on the windows (no student): R^2 at ``dim`` and log det.

    Works on at most ``max_windows`` windows (``ExperimentParams.comparison_max_windows``:
    a seeded uniform sample when the dataset is larger, with ``k`` scaled by the same
    ratio, at least ``dim``), so its memory does not grow with the corpus.

    Returns ``{"k", "dim", "rows": [{method, seed, r2, logdet}], "table": [{method, mean,
    std, logdet_mean}]}``; ``mean``/``std`` are of the held-out R^2 over seeds.
    """
    from sea_core.reduction import fit_reduction
    from sea_core.sampling import select

    frames = frames_arrays(frames_dir, max_windows=max_windows)
    total = int(frames.pop("total_windows"))
    n = len(frames["window_id"])
    k_requested = k
    if n < total:
        k = max(dim, math.ceil(k * n / total))
    if not dim <= k <= n:
        raise ParameterError(f"sampling comparison: need dim {dim} <= k {k} <= windows {n}")
    rows = []
    for method in methods:
        for seed in seeds:
            sel = select(frames, k=k, method=method, mode=mode, seed=seed)
            art = fit_reduction(frames["teacher_emb"][sel.indices].astype(np.float64), dims=(dim,),
                                sampling_method=method, teacher_id="comparison")
            rows.append({"method": method, "seed": seed, "n_selected": int(sel.indices.size),
                         "r2": art.explained_variance_on(frames["teacher_emb"], dim=dim),
                         "logdet": sel.logdet.get("diversity")})
    table = []
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        mean, std = mean_std([r["r2"] for r in mine])
        table.append({"method": method, "mean": mean, "std": std,
                      "logdet_mean": mean_std([r["logdet"] for r in mine])[0]})
    scope = f"all {n} windows" if n == total else f"a uniform sample of {n} of {total} windows"
    return {"metric": f"held-out R^2 of {scope} at dim {dim} (PCA fit on k={k})",
            "k": k, "k_requested": k_requested, "dim": dim, "windows": n, "total_windows": total,
            "sampled": n < total, "seeds": list(seeds), "rows": rows, "table": table}
