"""Running the refresh: the PCA re-fit policy (:func:`should_refit`), the measurements the
``refit-check`` / ``gated --record-fit`` steps make (:func:`refit_check`, :func:`record_fit`)
and the sequential runner with retries (:func:`run_schedule`) for hosts without Airflow.
The project (pyarrow, ``sea_core``, the frames reader) is imported lazily by the steps that read data."""
from __future__ import annotations

import json
import logging
import math
import shlex
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from schedule_config import RefitPolicy, Schedule, ScheduleError
from schedule_render import render

__all__ = ["RefitDecision", "should_refit", "refit_check", "record_fit", "write_json", "run_schedule"]

log = logging.getLogger("sea.schedule")


@dataclass(frozen=True)
class RefitDecision:
    refit: bool
    reasons: tuple[str, ...]
    n_new: int
    n_fit: int
    ev_on_new: float | None
    ev_at_fit: float | None

    def to_json(self) -> dict:
        return {**asdict(self), "reasons": list(self.reasons)}


def should_refit(n_new: int, n_fit: int, ev_on_new: float | None, ev_at_fit: float | None,
                 policy: RefitPolicy) -> RefitDecision:
    """Re-fit the scaler + PCA, or reuse the current artifact?

    Parameters
    ----------
    n_new : int
        Windows added to the corpus since the current fit.
    n_fit : int
        Windows of the corpus the current fit covered (0: there is no fit).
    ev_on_new, ev_at_fit : float or None
        Explained variance of the first ``policy.ev_dim`` components on the new
        windows (``ReductionArtifact.explained_variance_on``, an R² <= 1 that is
        negative when the new windows are explained worse than by their own mean) and
        on the fitting data at fit time, in [0, 1] (None: not measured).
    policy : RefitPolicy

    Returns
    -------
    RefitDecision
        ``refit`` is True when there is no fit, when ``n_new / n_fit >
        max_new_fraction`` (volume), or when ``ev_at_fit - ev_on_new >
        max_ev_drop`` (drift); ``reasons`` says which rule fired (or why reuse).

    Raises
    ------
    ScheduleError
        Negative counts, ``ev_at_fit`` outside [0, 1], ``ev_on_new`` above 1 or NaN.
    """
    if n_new < 0 or n_fit < 0:
        raise ScheduleError(f"window counts must be >= 0, got n_new={n_new}, n_fit={n_fit}")
    if ev_at_fit is not None and not 0.0 <= ev_at_fit <= 1.0 + 1e-9:
        raise ScheduleError(f"ev_at_fit must be in [0, 1], got {ev_at_fit!r}")
    if ev_on_new is not None and not ev_on_new <= 1.0 + 1e-9:  # also refuses NaN
        raise ScheduleError(f"ev_on_new must be <= 1 (an R²), got {ev_on_new!r}")
    reasons = []
    if n_fit == 0:
        reasons.append("no current fit")
    else:
        frac = n_new / n_fit
        if frac > policy.max_new_fraction:
            reasons.append(f"volume: {n_new} new / {n_fit} fitted = {frac:.3f} > "
                           f"max_new_fraction {policy.max_new_fraction}")
        if ev_on_new is not None and ev_at_fit is not None:
            drop = ev_at_fit - ev_on_new
            if drop > policy.max_ev_drop:
                reasons.append(f"drift: explained variance @{policy.ev_dim} fell {drop:.4f} "
                               f"({ev_at_fit:.4f} -> {ev_on_new:.4f}) > max_ev_drop {policy.max_ev_drop}")
    refit = bool(reasons)
    if not refit:
        ev = ("" if ev_on_new is None or ev_at_fit is None
              else f", explained variance {ev_at_fit:.4f} -> {ev_on_new:.4f}")
        reasons.append(f"reuse: {n_new} new / {n_fit} fitted windows{ev} within policy")
    return RefitDecision(refit=refit, reasons=tuple(reasons), n_new=int(n_new), n_fit=int(n_fit),
                         ev_on_new=ev_on_new, ev_at_fit=ev_at_fit)


def _rows_of(files: list[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def _new_embeddings(files: list[str], limit: int):
    """Up to ``limit`` teacher embeddings from ``files``, spread evenly over them."""
    import numpy as np
    import pyarrow.parquet as pq

    from sea_core.datasets.frames import fixed_list_to_numpy

    if not files:
        return None
    per_file = max(1, limit // len(files))
    step = max(1, len(files) // limit) if len(files) > limit else 1
    chunks = []
    for f in files[::step]:
        table = pq.read_table(f, columns=["teacher_emb"])
        n = table.num_rows
        idx = np.linspace(0, n - 1, num=min(n, per_file)).round().astype(int) if n else []
        if len(idx):
            chunks.append(fixed_list_to_numpy(table.column("teacher_emb").take(idx)))
    return np.concatenate(chunks) if chunks else None


def refit_check(*, frames: str, pca: str, state: str, policy: RefitPolicy) -> RefitDecision:
    """Measure ``should_refit``'s inputs from the frames dataset, the artifact and the fit state.

    ``state`` (JSON written by ``gated --record-fit``) lists the frames files the
    current fit saw; the rest are new. ``ev_on_new`` is measured on up to
    ``policy.ev_sample_rows`` new windows with the current artifact
    (``ReductionArtifact.explained_variance_on``); fewer than 2 new windows, or
    windows without variance, leave it unmeasured (None).
    """
    from sea_core.datasets.frames import list_partitions
    from sea_core.reduction import ReductionArtifact

    files = sorted(f for p in list_partitions(frames) for f in p.files)
    state_path = Path(state)
    if not state_path.is_file() or not (Path(pca) / "reduction.json").is_file():
        return should_refit(_rows_of(files), 0, None, None, policy)
    st = json.loads(state_path.read_text())
    seen = set(st["files"])
    new = [f for f in files if f not in seen]
    n_new = _rows_of(new)
    art = ReductionArtifact.load(pca)
    dim = min(policy.ev_dim, art.n_components)
    ev_at_fit = float(st.get("ev_at_fit", art.explained_variance_ratio[:dim].sum()))
    emb = _new_embeddings(new, policy.ev_sample_rows)
    ev_new = None if emb is None or len(emb) < 2 else art.explained_variance_on(emb, dim=dim)
    if ev_new is not None and not math.isfinite(ev_new):
        log.warning("refit-check: the %d sampled new windows have no variance; drift not measured", len(emb))
        ev_new = None
    return should_refit(n_new, int(st["n_fit_windows"]), ev_new, ev_at_fit, policy)


def record_fit(*, frames: str, pca: str, state: str, policy: RefitPolicy, run_date: str) -> dict:
    """Write the fit state: the frames files (and windows) the new artifact covers, its explained variance."""
    from sea_core.datasets.frames import list_partitions
    from sea_core.reduction import ReductionArtifact

    files = sorted(f for p in list_partitions(frames) for f in p.files)
    art = ReductionArtifact.load(pca)
    dim = min(policy.ev_dim, art.n_components)
    doc = {"fitted_on": run_date, "n_fit_windows": _rows_of(files), "files": files,
           "ev_dim": dim, "ev_at_fit": float(art.explained_variance_ratio[:dim].sum()),
           "artifact_fingerprint": art.fingerprint}
    write_json(Path(state), doc)
    return doc


def write_json(path: Path, doc: dict) -> None:
    """``doc`` as indented JSON at ``path``, published by ``sea_core.storage`` (temp file, then move)."""
    from sea_core import storage

    storage.publish_text(str(path), json.dumps(doc, indent=2) + "\n")


# --------------------------------------------------------------------------- runner
def run_schedule(schedule: Schedule, run_date: str, *, overrides: dict[str, str] | None = None,
                 dry_run: bool = False, only: list[str] | None = None,
                 sleep=time.sleep) -> int:
    """Run the tasks in order, each with its retries and timeout; stop at the first failure.

    Returns 0 when every task succeeded, else the failing task's last exit status.
    """
    commands = render(schedule, run_date, overrides)
    for tid, argv in commands.items():
        if only and tid not in only:
            continue
        task = schedule.task(tid)
        if dry_run:
            print(f"[{tid}] {shlex.join(argv)}")
            continue
        for attempt in range(task.retries + 1):
            log.info("[%s] attempt %d/%d: %s", tid, attempt + 1, task.retries + 1, shlex.join(argv))
            try:
                rc = subprocess.run(argv, timeout=task.timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = 124
            except OSError as exc:
                log.error("[%s] cannot start: %s", tid, exc)
                rc = 127
            if rc == 0:
                break
            if attempt < task.retries:
                sleep(task.retry_delay_s)
        else:
            log.error("[%s] failed (exit %d) after %d attempt(s)", tid, rc, task.retries + 1)
            return rc
    return 0
