"""The one select -> fit-pca -> build-training-set chain of ``sea run`` and ``sea experiment``.

Every stage is called the same way: a config object (``SelectConfig``, ``PcaConfig``,
``TrainingSetConfig``) and the Beam flags, ``run(cfg, beam_args)``. :func:`fitting_set_size`
is the one rule for the size ``k`` of the PCA fitting set.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pipelines import build_training_set, fit_pca, select
from pipelines.build_training_set import TrainingSetConfig
from pipelines.fit_pca import PcaConfig
from sea_core.datasets.layout import RUN_PCA_DIR, RUN_SELECTION_DIR, RUN_TRAINSET_DIR
from sea_core.datasets.frames import list_partitions
from pipelines.select import SelectConfig
from sea_core.errors import DataError

__all__ = ["fitting_set_size", "run_select", "run_fit_pca", "run_training_set", "run_chain"]


def fitting_set_size(frames, *, dim: int, min_fit_per_dim: int, fraction: float | None = None,
                     k: int | None = None) -> int:
    """``k`` of the PCA fitting set: ``ceil(fraction x windows)`` (or the given ``k``), at least
    ``min_fit_per_dim x dim`` windows.

    Raises
    ------
    DataError
        The frames dataset holds fewer windows than that.
    """
    windows = sum(p.rows for p in list_partitions(frames))
    wanted = math.ceil(fraction * windows) if k is None else int(k)
    k = max(wanted, min_fit_per_dim * dim)
    if k > windows:
        raise DataError(f"{frames}: {windows} windows cannot give a PCA fitting set of {k} "
                        f"(>= {min_fit_per_dim} x dim {dim}); use a larger corpus")
    return k


def run_select(frames, out, *, method: str, mode: str, k: int, seed: int, sensors: int | None = None,
               beam_args: Sequence[str] = ()) -> dict:
    """``sea pipeline select`` of ``k`` windows; returns ``selection.json``'s content."""
    return select.run(SelectConfig(frames=str(frames), output=str(out), method=method, mode=mode, k=k,
                                   seed=seed, sensors=sensors), beam_args)


def run_fit_pca(frames, selection, out, *, dims: tuple[int, ...], beam_args: Sequence[str] = ()) -> dict:
    """``sea pipeline fit-pca``; returns the artifact summary (``fit_pca.run``)."""
    return fit_pca.run(PcaConfig(frames=str(frames), selection=str(selection), output=str(out), dims=dims),
                       beam_args)


def run_training_set(frames, pca, out, *, dims: tuple[int, ...], beam_args: Sequence[str] = ()) -> dict:
    """``sea pipeline build-training-set``; returns the dataset card."""
    return build_training_set.run(TrainingSetConfig(frames=str(frames), pca=str(pca), output=str(out),
                                                    dims=dims), beam_args)


def run_chain(frames, out: Path, *, method: str, mode: str, k: int, seed: int, dims: tuple[int, ...],
              beam_args: Sequence[str] = ()) -> tuple[dict, dict, dict]:
    """select -> fit-pca -> training set under ``out`` (``selection/``, ``pca/``, ``trainset/``);
    returns (selection summary, PCA summary, dataset card)."""
    out = Path(out)
    sel = run_select(frames, out / RUN_SELECTION_DIR, method=method, mode=mode, k=k, seed=seed,
                     beam_args=beam_args)
    pca = run_fit_pca(frames, out / RUN_SELECTION_DIR, out / RUN_PCA_DIR, dims=dims, beam_args=beam_args)
    card = run_training_set(frames, out / RUN_PCA_DIR, out / RUN_TRAINSET_DIR, dims=dims, beam_args=beam_args)
    return sel, pca, card
