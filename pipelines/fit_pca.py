"""``sea pipeline fit-pca``: StandardScaler + PCA on the selected windows -> versioned artifact.

Reads only the selected rows' teacher embeddings (partition by partition,
filtered by window id), so memory is that of the sample; above the memory
limit of ``ReductionParams`` the fit streams batches through IncrementalPCA.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.frames_io import fixed_list_to_numpy, list_partitions, read_partition, window_ids
from pipelines.select import SELECTION_FILE, SUMMARY_FILE
from sea_core.errors import DataError, ParameterError
from sea_core.params import REDUCTION
from sea_core.reduction import ReductionArtifact, fit_reduction

__all__ = ["selected_embeddings", "fit_pca", "main"]

log = logging.getLogger(__name__)


def selected_embeddings(frames: str, selection_dir: str) -> tuple[list[np.ndarray], str, str]:
    """Embeddings of the selected windows (one batch per partition), teacher id, fingerprint."""
    sel_path = Path(selection_dir) / SELECTION_FILE
    if not sel_path.is_file():
        raise DataError(f"{sel_path}: no selection (run `sea pipeline select` first)")
    selected = pq.read_table(sel_path, columns=["window_id", "sensor"])
    wanted = set(selected.column("window_id").to_pylist())
    if not wanted:
        raise DataError(f"{sel_path}: the selection is empty")
    sensors = set(selected.column("sensor").to_pylist())
    batches, teachers, found = [], set(), 0
    for part in list_partitions(frames):
        if part.sensor not in sensors:
            continue
        table = read_partition(part, ["recording_id", "window_index", "teacher_id", "teacher_emb"])
        ids = window_ids(table)
        mask = np.fromiter((i in wanted for i in ids), bool, len(ids))
        if not mask.any():
            continue
        sub = table.filter(mask)
        batches.append(fixed_list_to_numpy(sub.column("teacher_emb")).astype(np.float64))
        teachers.update(pc.unique(sub.column("teacher_id")).to_pylist())
        found += int(mask.sum())
    if found != len(wanted):
        raise DataError(f"{sel_path}: {len(wanted) - found} selected window(s) are not in {frames} "
                        f"(was the selection made on another frames dataset?)")
    if len(teachers) != 1:
        raise DataError(f"{frames}: selected windows come from {len(teachers)} teachers {sorted(teachers)}")
    digest = hashlib.sha256("\n".join(sorted(wanted)).encode()).hexdigest()
    return batches, teachers.pop(), f"sha256:{digest}"


def fit_pca(*, frames: str, selection: str, output: str, dims=REDUCTION.dims) -> ReductionArtifact:
    batches, teacher_id, fingerprint = selected_embeddings(frames, selection)
    summary_path = Path(selection) / SUMMARY_FILE
    if not summary_path.is_file():
        raise DataError(f"{summary_path}: missing selection summary (run `sea pipeline select`)")
    summary = json.loads(summary_path.read_text())
    n = sum(len(b) for b in batches)
    usable = tuple(d for d in dims if d <= n)
    if not usable:
        raise ParameterError(f"{selection}: {n} selected windows cannot fit a PCA to any of the dims "
                             f"{tuple(dims)}; select more windows (--fraction/--k)")
    if usable != tuple(dims):
        log.warning("fit-pca: only %d windows selected; dims %s dropped (need >= dim samples)",
                    n, sorted(set(dims) - set(usable)))
    method = summary["method"] + (f"/{summary['mode']}" if summary.get("mode") else "")
    artifact = fit_reduction(np.concatenate(batches) if len(batches) else batches, dims=usable,
                             sampling_method=method, teacher_id=teacher_id, fingerprint=fingerprint)
    artifact.save(output)
    log.info("fit-pca: %d windows, dims %s, explained variance %.3f -> %s", n, usable,
             float(np.sum(artifact.explained_variance_ratio)), output)
    return artifact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sea pipeline fit-pca",
                                     description="Fit scaler + PCA on the selected windows.")
    parser.add_argument("--frames", required=True)
    parser.add_argument("--selection", required=True, help="output directory of `sea pipeline select`")
    parser.add_argument("--output", required=True, help="artifact directory")
    parser.add_argument("--dims", default=",".join(map(str, REDUCTION.dims)))
    args = parser.parse_args(argv)
    dims = tuple(int(d) for d in args.dims.split(","))
    artifact = fit_pca(frames=args.frames, selection=args.selection, output=args.output, dims=dims)
    print(f"sea pipeline fit-pca: {artifact.n_fit} windows, dims {artifact.dims} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
