"""``sea pipeline fit-pca``: StandardScaler + PCA on the selected windows -> versioned artifact, in Beam.

Pipeline (one chain, one final sink; safe on DaskRunner)::

    SelectionShards   one element per selection shard (``SELECTION/selection.parquet/part-*.parquet``)
    GroupMoments      a worker reads the shard's window ids, reads the frames partitions of
                      those (sensor, day)s, keeps the selected rows and reduces them to float64
                      Moments (count, mean, centred sum of outer products) chunk by chunk
    CombineMoments    ``CombineGlobally`` of a ``CombineFn`` merging Moments across workers
    WriteMoments      the merged Moments (O(D^2): 2 MB at D = 512) -> ``OUT/.moments.npz``

The driver then reads the moments, checks the counts (every selected window
found, one teacher), derives scaler + PCA from the covariance with ``eigh``
(``sea_core.reduction.fit_from_moments``; equal to sklearn's StandardScaler +
PCA on the same rows) and publishes the artifact. Driver memory is O(D^2) and
independent of the number of selected windows; worker memory is one group's
selected rows of one partition at a time.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from pipelines.driver import run_to_completion
from pipelines.transforms.moments import GroupMoments
from sea_core import storage
from sea_core.datasets.frames import frames_root
from sea_core.datasets.layout import (MOMENTS_TEMP_NAME, SELECTION_FILE, SELECTION_SHARD_GLOB,
                                      SELECTION_SUMMARY_FILE)
from sea_core.errors import DataError, ParameterError
from sea_core.params import REDUCTION
from sea_core.reduction import Moments, ReductionArtifact, fit_from_moments

__all__ = ["PcaConfig", "fit_pca", "parse_args", "run", "main"]

log = logging.getLogger(__name__)

PCA_LOCAL_MODE = "in_memory"
"""FnApiRunner mode of fit-pca when no runner is given: deterministic merge order."""


def _read_moments(url: str) -> dict:
    with np.load(io.BytesIO(storage.read_bytes(url))) as z:
        return {k: z[k] for k in z.files}


@dataclass(frozen=True, kw_only=True)
class PcaConfig:
    """Settings of one fit-pca run (paths made absolute on construction)."""

    frames: str
    """Frames dataset (output of ``sea pipeline embed``)."""
    selection: str
    """Output directory of ``sea pipeline select``."""
    output: str
    """Artifact directory."""
    dims: tuple[int, ...] = REDUCTION.dims

    def __post_init__(self):
        for name in ("frames", "selection", "output"):
            object.__setattr__(self, name, storage.absolute(getattr(self, name)))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))


def fit_pca(*, frames: str, selection: str, output: str, dims=REDUCTION.dims,
            beam_args: list[str] | None = None) -> ReductionArtifact:
    """Run the moments pipeline, fit in the driver from the moments, publish the artifact."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.runners import select_runner

    frames, selection, output = storage.absolute(frames), storage.absolute(selection), storage.absolute(output)
    sel_path = storage.join(selection, SELECTION_FILE)
    shards = storage.glob(storage.join(selection, SELECTION_FILE, SELECTION_SHARD_GLOB))
    if not shards:
        raise DataError(f"{sel_path}: no selection (run `sea pipeline select` first)")
    summary_path = storage.join(selection, SELECTION_SUMMARY_FILE)
    if not storage.isfile(summary_path):
        raise DataError(f"{summary_path}: missing selection summary (run `sea pipeline select`)")
    summary = storage.read_json(summary_path)
    root = frames_root(frames)
    moments_url = storage.join(output, MOMENTS_TEMP_NAME.format(uuid.uuid4().hex))
    beam_args = list(beam_args or [])
    if not any(a.startswith(("--runner", "--direct_running_mode")) for a in beam_args):
        # The moments are float64 sums merged in the order bundles finish; one in-process
        # worker fixes that order, so the default local run gives byte-identical PCAs run to
        # run (threads would differ in the last bits). Distributed runners agree to ~1e-14.
        beam_args.append(f"--direct_running_mode={PCA_LOCAL_MODE}")
    options = PipelineOptions(beam_args)
    runner, _ = select_runner(options)
    try:
        p = beam.Pipeline(runner=runner, options=options)
        (p
         | "SelectionShards" >> beam.Create(shards)
         | "Moments" >> GroupMoments(root, moments_url))
        run_to_completion(p, "fit-pca")
        if not storage.isfile(moments_url):
            raise DataError(f"{sel_path}: the fit-pca pipeline wrote no moments (empty selection?)")
        z = _read_moments(moments_url)
    finally:
        storage.rm(moments_url)
    n, wanted, found = int(z["n"]), int(z["wanted"]), int(z["found"])
    if wanted == 0:
        raise DataError(f"{sel_path}: the selection is empty")
    if found != wanted:
        raise DataError(f"{sel_path}: {wanted - found} selected window(s) are not in {frames} "
                        f"(was the selection made on another frames dataset?) "
                        f"[{', '.join(z['missing'].tolist()[:3])}]")
    teachers = z["teachers"].tolist()
    if len(teachers) != 1:
        raise DataError(f"{frames}: selected windows come from {len(teachers)} teachers {teachers}")
    usable = tuple(d for d in dims if d <= n)
    if not usable:
        raise ParameterError(f"{selection}: {n} selected windows cannot fit a PCA to any of the dims "
                             f"{tuple(dims)}; select more windows (--fraction/--k)")
    if usable != tuple(dims):
        log.warning("fit-pca: only %d windows selected; dims %s dropped (need >= dim samples)",
                    n, sorted(set(dims) - set(usable)))
    fingerprint = "sha256:" + hashlib.sha256("\n".join(z["digests"].tolist()).encode()).hexdigest()
    method = summary["method"] + (f"/{summary['mode']}" if summary.get("mode") else "")
    artifact = fit_from_moments(Moments(n, z["mean"], z["m2"]), dims=usable, sampling_method=method,
                                teacher_id=teachers[0], fingerprint=fingerprint)
    artifact.save(output)
    log.info("fit-pca: %d windows, dims %s, explained variance %.3f -> %s", n, usable,
             float(np.sum(artifact.explained_variance_ratio)), output)
    return artifact


def run(cfg: PcaConfig, beam_args: Sequence[str] = ()) -> dict:
    """Fit and publish the artifact (``beam_args``: Beam flags); returns its summary:
    ``output``, ``artifact`` (:meth:`ReductionArtifact.metadata`) and the full
    ``explained_variance_ratio`` list."""
    artifact = fit_pca(frames=cfg.frames, selection=cfg.selection, output=cfg.output, dims=cfg.dims,
                       beam_args=list(beam_args))
    return {"output": cfg.output, "artifact": artifact.metadata(),
            "explained_variance_ratio": [float(v) for v in artifact.explained_variance_ratio]}


def parse_args(argv: list[str] | None = None) -> tuple[PcaConfig, list[str]]:
    """``sea pipeline fit-pca`` flags -> (config, the remaining Beam flags)."""
    parser = argparse.ArgumentParser(prog="sea pipeline fit-pca",
                                     description="Fit scaler + PCA on the selected windows (Beam: "
                                                 "moments on the workers, eigh in the driver).")
    parser.add_argument("--frames", required=True)
    parser.add_argument("--selection", required=True, help="output directory of `sea pipeline select`")
    parser.add_argument("--output", required=True, help="artifact directory")
    parser.add_argument("--dims", default=",".join(map(str, REDUCTION.dims)))
    args, beam_args = parser.parse_known_args(argv)
    dims = tuple(int(d) for d in args.dims.split(","))
    return PcaConfig(frames=args.frames, selection=args.selection, output=args.output, dims=dims), beam_args


def main(argv: list[str] | None = None) -> int:
    cfg, beam_args = parse_args(argv)
    summary = run(cfg, beam_args)
    meta = summary["artifact"]
    print(f"sea pipeline fit-pca: {meta['n_fit']} windows, dims {tuple(meta['dims'])} -> "
          f"{cfg.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
