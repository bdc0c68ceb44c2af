"""``sea pipeline build-training-set``: PCA targets for every window, Parquet shards per split.

Each (sensor, day) partition of the frames dataset goes wholly to one split
(train / validate / test, deterministic from the split seed), so no recording
spans splits. A worker reads a partition, projects its teacher embeddings with
the scaler + PCA artifact (a side input: the arrays travel with the job, not a
path every worker must reach) to every requested dim, and writes the
partition's shards (~``TrainingSetParams.shard_target_bytes`` each, published
through ``sea_core.storage``: temp key, then move). The per-partition row counts
are summed by a ``CombineGlobally`` and the final transform writes them to a
small hidden file; the driver turns it into ``dataset_card.json`` and writes
``_SUCCESS`` last. One chain, one final sink: correct on every runner
(DaskRunner included). Every path is an fsspec URL.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from pipelines.driver import run_to_completion
from pipelines.transforms.trainset import ProjectAndWrite
from sea_core import storage
from sea_core.datasets.frames import Partition, list_partitions
from sea_core.datasets.layout import COUNTS_TEMP_NAME, RUN_SUMMARY_NAME, SPLITS
from sea_core.datasets.schema import target_column
from sea_core.datasets.trainset import dataset_card, publish_card
from sea_core.errors import DataError, ParameterError
from sea_core.params import REDUCTION, TRAINING_SET, TrainingSetParams
from sea_core.reduction import ReductionArtifact

__all__ = ["assign_splits", "TrainingSetConfig", "build", "build_training_set", "parse_args", "run", "main"]

log = logging.getLogger(__name__)


def assign_splits(parts: list[Partition], *, fractions=TRAINING_SET.split_fractions,
                  seed: int = TRAINING_SET.split_seed) -> dict[tuple[str, str], str]:
    """(sensor, day) -> split. Deterministic; every split gets >= 1 sensor-day when there are >= 3."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ParameterError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    keys = sorted({(p.sensor, p.day) for p in parts},
                  key=lambda k: hashlib.sha256(f"{seed}:{k[0]}:{k[1]}".encode()).hexdigest())
    n = len(keys)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val = max(n_val, 1 if fractions[1] > 0 else 0)
        n_test = max(n_test, 1 if fractions[2] > 0 else 0)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ParameterError(f"{n} sensor-day partition(s) cannot be split {fractions} with a "
                             f"non-empty train split")
    train, validate, test = SPLITS
    labels = [validate] * n_val + [test] * n_test + [train] * n_train
    return dict(zip(keys, labels))


def _artifact_fields(artifact: ReductionArtifact) -> dict:
    from dataclasses import fields
    return {f.name: getattr(artifact, f.name) for f in fields(artifact)}


def build(p: beam.Pipeline, *, frames: str, pca: str, output: str, dims: tuple[int, ...],
          params: TrainingSetParams = TRAINING_SET,
          counts_url: str | None = None) -> tuple[list[Partition], dict, ReductionArtifact]:
    """Add the stages to ``p``; returns the partitions, their splits and the artifact."""
    output = storage.absolute(output)
    counts_url = counts_url or storage.join(output, COUNTS_TEMP_NAME.format(uuid.uuid4().hex))
    artifact = ReductionArtifact.load(pca)
    bad = [d for d in dims if d > artifact.n_components]
    if bad:
        raise ParameterError(f"{pca}: dims {bad} exceed the artifact's {artifact.n_components} components")
    parts = list_partitions(frames)
    splits = assign_splits(parts, fractions=params.split_fractions, seed=params.split_seed)
    arrays = p | "Artifact" >> beam.Create([_artifact_fields(artifact)])
    (p
     | "Partitions" >> beam.Create([(part, splits[(part.sensor, part.day)]) for part in parts])
     | "Project" >> ProjectAndWrite(output, tuple(dims), arrays, params.shard_target_bytes, counts_url))
    return parts, splits, artifact


@dataclass(frozen=True, kw_only=True)
class TrainingSetConfig:
    """Settings of one build-training-set run (paths made absolute on construction)."""

    frames: str
    """Frames dataset (output of ``sea pipeline embed``)."""
    pca: str
    """Artifact directory of ``sea pipeline fit-pca``."""
    output: str
    dims: tuple[int, ...] = REDUCTION.dims
    params: TrainingSetParams = TRAINING_SET
    """Split fractions / seed and shard size."""

    def __post_init__(self):
        for name in ("frames", "pca", "output"):
            object.__setattr__(self, name, storage.absolute(getattr(self, name)))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))


def build_training_set(*, frames: str, pca: str, output: str, dims: tuple[int, ...],
                       beam_args: list[str] | None = None,
                       params: TrainingSetParams = TRAINING_SET) -> dict:
    """Run the pipeline and write the dataset card; returns the card."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.runners import select_runner

    frames, pca, out = storage.absolute(frames), storage.absolute(pca), storage.absolute(output)
    if any(storage.glob(storage.join(out, s, "*.parquet")) for s in SPLITS):
        raise DataError(f"{out}: already holds a training set; use a new --output")
    storage.rm(storage.join(out, storage.SUCCESS_NAME))
    counts_url = storage.join(out, COUNTS_TEMP_NAME.format(uuid.uuid4().hex))
    options = PipelineOptions(beam_args or [])
    runner, _ = select_runner(options)
    try:
        p = beam.Pipeline(runner=runner, options=options)
        parts, splits, artifact = build(p, frames=frames, pca=pca, output=out, dims=dims,
                                        params=params, counts_url=counts_url)
        run_to_completion(p, "build-training-set")
        if not storage.isfile(counts_url):
            raise DataError(f"{out}: the pipeline wrote no shards")
        written = storage.read_json(counts_url)
    finally:
        storage.rm(counts_url)
    samples = written["samples"]
    summary_path = storage.join(frames, RUN_SUMMARY_NAME)
    source = storage.read_json(summary_path) if storage.isfile(summary_path) else {}
    sensor_days = {s: sorted(f"{k[0]}/{k[1]}" for k, v in splits.items() if v == s) for s in SPLITS}
    card = dataset_card(
        dims=dims, student_samples=samples, counts=written["counts"], shards=written["shards"],
        teacher_id=artifact.teacher_id, sampling_method=artifact.sampling_method,
        pca_artifact=pca, fingerprint=artifact.fingerprint, n_fit=artifact.n_fit,
        explained_variance_ratio={str(d): float(np.sum(artifact.explained_variance_ratio[:d]))
                                  for d in dims},
        split_fractions=list(params.split_fractions), sensor_days=sensor_days,
        source_runs=[{"frames": frames, "run_id": source.get("run_id"),
                      "teacher_id": source.get("teacher_id")}],
        target_columns=[target_column(d) for d in sorted(dims, reverse=True)])
    windows = sum(p.rows for p in parts)
    if sum(card["counts"].values()) != windows:
        raise DataError(f"{out}: wrote {sum(card['counts'].values())} rows for {windows} windows")
    publish_card(out, card)
    storage.mark_success(out)
    return card


def run(cfg: TrainingSetConfig, beam_args: Sequence[str] = ()) -> dict:
    """Build the training set (``beam_args``: Beam flags); returns the dataset card."""
    return build_training_set(frames=cfg.frames, pca=cfg.pca, output=cfg.output, dims=cfg.dims,
                              beam_args=list(beam_args), params=cfg.params)


def parse_args(argv: list[str] | None = None) -> tuple[TrainingSetConfig, list[str]]:
    """``sea pipeline build-training-set`` flags -> (config, the remaining Beam flags)."""
    parser = argparse.ArgumentParser(prog="sea pipeline build-training-set",
                                     description="Project every window with the PCA artifact into "
                                                 "Parquet training shards.")
    parser.add_argument("--frames", required=True)
    parser.add_argument("--pca", required=True, help="artifact directory of `sea pipeline fit-pca`")
    parser.add_argument("--dims", default=",".join(map(str, REDUCTION.dims)))
    parser.add_argument("--output", required=True)
    args, beam_args = parser.parse_known_args(argv)
    return TrainingSetConfig(frames=args.frames, pca=args.pca, output=args.output,
                             dims=tuple(int(d) for d in args.dims.split(","))), beam_args


def main(argv: list[str] | None = None) -> int:
    cfg, beam_args = parse_args(argv)
    card = run(cfg, beam_args)
    print(f"sea pipeline build-training-set: {card['counts']} rows, dims {card['dims']} -> {cfg.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
