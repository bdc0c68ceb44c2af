"""``sea pipeline select``: informed sampling of the PCA fitting set, per group, in Beam.

Groups are (sensor, period) with the reference budgets (``sea_core.sampling.plan_budget``,
computed in the driver from the Parquet footers: O(partitions), never O(windows)).
Each group is read, sampled and written by one worker (groups run in parallel):
its selected window ids become one Parquet shard
``OUT/selection.parquet/part-<sensor>-<period>.parquet`` (columns window_id,
sensor, period, day; no single-worker gather of ids). Only the small per-group
results are gathered by the last transform, which writes ``OUT/selection.json``
(method, mode, seed, budgets, log det per group and in total, small groups,
reference-mode traps) and then ``OUT/_SUCCESS``. Safe on every runner, DaskRunner
included (one chain, one final sink, no tagged outputs). ``OUT`` is any fsspec
URL; ``pyarrow.parquet.read_table(OUT/selection.parquet)`` reads every shard.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.frames_io import Partition, fixed_list_to_numpy, list_partitions, read_partition, window_ids
from pipelines.driver import run_to_completion
from sea_core import storage
from sea_core.errors import DataError, ParameterError
from sea_core.params import SAMPLING, SENSORS
from sea_core.sampling import (METHODS, MODES, PERIODS, POLICIES, check_options, group_label, period_labels,
                               plan_budget)

__all__ = ["SelectConfig", "plan_groups", "SampleGroups", "WriteSelection", "build", "parse_args", "run", "main",
           "selection_shards", "shard_name", "SELECTION_FILE", "SUMMARY_FILE"]

log = logging.getLogger(__name__)

SELECTION_FILE = "selection.parquet"
SUMMARY_FILE = "selection.json"
_DPP_METHODS = ("diversity", "diversity+relevance")


@dataclass(frozen=True, kw_only=True)
class SelectConfig:
    """Settings of one selection run (defaults from ``sea_core.params``; picklable).

    ``frames`` / ``output`` are made absolute (local paths) on construction.
    """

    frames: str
    output: str
    method: str
    fraction: float | None = None
    k: int | None = None
    mode: str = SAMPLING.default_mode
    period: str = SAMPLING.period
    seed: int = SAMPLING.dpp_seed
    policy: str = SAMPLING.small_group_policy
    per_sensor_budget: bool = False
    max_group_windows: int = SAMPLING.max_group_windows
    sensors: int | None = None
    """Sensor selection by DPP (issue 18, sea_core/sensors.py): first choose this many sensors."""
    sensors_csv: str | None = None
    sensor_method: str = SENSORS.method

    def __post_init__(self):
        check_options(prefix="--", method=self.method, mode=self.mode, period=self.period,
                      policy=self.policy)
        if (self.fraction is None) == (self.k is None):
            raise ParameterError("give exactly one of --fraction and --k")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ParameterError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.k is not None and self.k <= 0:
            raise ParameterError(f"--k must be > 0, got {self.k}")
        if self.max_group_windows < 1:
            raise ParameterError(f"--max-group-windows must be >= 1, got {self.max_group_windows}")
        object.__setattr__(self, "frames", storage.absolute(self.frames))
        object.__setattr__(self, "output", storage.absolute(self.output))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "max_group_windows", int(self.max_group_windows))


def plan_groups(parts: list[Partition], cfg: SelectConfig) -> tuple[list[tuple], dict]:
    """[(group key, partitions, k)], budget summary — from the footers only."""
    groups: dict[tuple, list[Partition]] = {}
    labels = period_labels(np.array([p.day for p in parts]), cfg.period)
    for part, label in zip(parts, labels):
        groups.setdefault((part.sensor, str(label)), []).append(part)
    sizes = {key: sum(p.rows for p in ps) for key, ps in groups.items()}
    n = sum(sizes.values())
    total = cfg.k if cfg.k is not None else math.ceil(cfg.fraction * n)
    k, sensor_budget = plan_budget(sizes, total=total, per_sensor_budget=cfg.per_sensor_budget)
    plan = [(key, tuple(groups[key]), int(k[key])) for key in sorted(groups)]
    return plan, {"windows": n, "total_requested": int(total), "groups": len(plan),
                  "sensor_budget": sensor_budget}


def shard_name(key: tuple) -> str:
    """File name of a group's selection shard."""
    return f"part-{key[0]}-{key[1]}.parquet"


def selection_shards(output: str) -> list[str]:
    """URLs of the selection shards under ``output`` (sorted)."""
    return storage.glob(storage.join(output, SELECTION_FILE, "part-*.parquet"))


class _SampleGroupFn(beam.DoFn):
    def __init__(self, cfg: SelectConfig):
        self.cfg = cfg

    def process(self, element):
        from sea_core.sampling import sample_group_bounded

        key, parts, k = element
        cols = ["recording_id", "window_index", "day", "start_time", "window_start_s", "relevance",
                "teacher_emb"]
        table = pa.concat_tables([read_partition(p, cols) for p in parts])
        emb = fixed_list_to_numpy(table.column("teacher_emb"))  # float32, zero-copy
        rel = table.column("relevance").to_numpy(zero_copy_only=False).astype(np.float64)
        start = table.column("start_time").cast(pa.int64()).to_numpy(zero_copy_only=False) / 1000.0
        times = start + table.column("window_start_s").to_numpy(zero_copy_only=False).astype(np.float64)
        table = table.drop_columns(["teacher_emb", "relevance", "start_time", "window_start_s"])
        result = sample_group_bounded(emb, rel, times, k=k, method=self.cfg.method, mode=self.cfg.mode,
                                      seed=self.cfg.seed, key=key, policy=self.cfg.policy,
                                      max_windows=self.cfg.max_group_windows)
        del emb
        idx = np.sort(np.asarray(result.indices, np.int64))
        ids = window_ids(table.take(pa.array(idx)))
        days = table.column("day").take(pa.array(idx)).to_numpy(zero_copy_only=False).astype(str)
        order = np.argsort(ids, kind="stable")
        shard = pa.table({"window_id": pa.array(ids[order], pa.string()),
                          "sensor": pa.array([key[0]] * len(ids), pa.string()),
                          "period": pa.array([str(key[1])] * len(ids), pa.string()),
                          "day": pa.array(days[order], pa.string())})
        storage.publish_parquet(shard, storage.join(self.cfg.output, SELECTION_FILE, shard_name(key)),
                                compression="zstd")
        beam.metrics.Metrics.counter("sea.select", "groups").inc()
        beam.metrics.Metrics.counter("sea.select", "selected").inc(len(ids))
        yield {"group": result.to_dict(), "n_selected": int(len(ids))}


class SampleGroups(beam.PTransform):
    """(group key, partitions, k) -> the group's selection shard; yields {'group': ..., 'n_selected': n}."""

    def __init__(self, cfg: SelectConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, pcoll):
        return (pcoll
                | "SpreadGroups" >> beam.Reshuffle()
                | "SampleEachGroup" >> beam.ParDo(_SampleGroupFn(self.cfg)))


class _WriteSelectionFn(beam.DoFn):
    def __init__(self, cfg: SelectConfig, budget: dict):
        self.cfg, self.budget = cfg, budget

    def process(self, element):
        _, results = element
        results = sorted(results, key=lambda r: (r["group"]["sensor"], r["group"]["period"]))
        groups = [r["group"] for r in results]
        kernels = {name for g in groups for name in g["logdet"]}
        logdet = {name: float(sum(g["logdet"][name] for g in groups))
                  for name in sorted(kernels) if all(name in g["logdet"] for g in groups)}
        small = [(group_label((g["sensor"], g["period"]), self.cfg.period), g["size"], g["k"])
                 for g in groups if g["size"] < g["k"]]
        summary = {"method": self.cfg.method, "mode": self.cfg.mode if self.cfg.method in _DPP_METHODS
                   else None, "seed": self.cfg.seed, "period": self.cfg.period,
                   "policy": self.cfg.policy, "fraction": self.cfg.fraction, "k": self.cfg.k,
                   "frames": str(self.cfg.frames), **self.budget,
                   "n_selected": int(sum(r["n_selected"] for r in results)),
                   "shards": len(results), "max_group_windows": self.cfg.max_group_windows,
                   "logdet": logdet, "small_groups": small,
                   "traps": [{"group": group_label((g["sensor"], g["period"]), self.cfg.period), **t}
                             for g in groups for t in g["traps"]],
                   "groups_detail": groups}
        storage.publish_text(storage.join(self.cfg.output, SUMMARY_FILE),
                             json.dumps(summary, indent=2, default=_json_default))
        storage.mark_success(self.cfg.output)
        yield summary


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class WriteSelection(beam.PTransform):
    """The small per-group results -> ``selection.json`` + ``_SUCCESS`` (the final sink)."""

    def __init__(self, cfg: SelectConfig, budget: dict):
        super().__init__()
        self.cfg, self.budget = cfg, budget

    def expand(self, pcoll):
        return (pcoll
                | "KeyAll" >> beam.Map(lambda r: ("selection", r))
                | "Gather" >> beam.GroupByKey()
                | "WriteFiles" >> beam.ParDo(_WriteSelectionFn(self.cfg, self.budget)))


def _clear_output(output: str) -> None:
    """Remove this stage's previous output (shards of other groups must not survive a rerun)."""
    for name in (storage.SUCCESS_NAME, SUMMARY_FILE, SELECTION_FILE):
        storage.rm(storage.join(output, name), recursive=True)


def build(p: beam.Pipeline, cfg: SelectConfig):
    """Add the selection stages to ``p``; returns the summary PCollection."""
    parts = list_partitions(cfg.frames)
    # sensor selection by DPP (issue 18): keep only the chosen sensors' partitions
    from sea_core.sensors import filter_partitions
    parts, sensor_record = filter_partitions(parts, frames=cfg.frames, k=cfg.sensors,
                                             sensors_csv=cfg.sensors_csv, method=cfg.sensor_method,
                                             seed=cfg.seed)
    plan, budget = plan_groups(parts, cfg)
    if sensor_record is not None:
        budget["sensor_selection"] = sensor_record
    _clear_output(cfg.output)
    log.info("select: %d windows in %d groups, total %d (%s/%s)", budget["windows"], len(plan),
             budget["total_requested"], cfg.method, cfg.mode)
    return (p
            | "Groups" >> beam.Create(plan)
            | "Sample" >> SampleGroups(cfg)
            | "Write" >> WriteSelection(cfg, budget))


def parse_args(argv: list[str] | None = None) -> tuple[SelectConfig, list[str]]:
    """``sea pipeline select`` flags -> (config, the remaining Beam flags)."""
    parser = argparse.ArgumentParser(prog="sea pipeline select",
                                     description="Select the PCA fitting set from a frames dataset.")
    parser.add_argument("--frames", required=True, help="embed pipeline output directory")
    parser.add_argument("--output", required=True)
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--mode", default=SAMPLING.default_mode, choices=MODES)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fraction", type=float)
    group.add_argument("--k", type=int)
    parser.add_argument("--period", default=SAMPLING.period, choices=PERIODS)
    parser.add_argument("--seed", type=int, default=SAMPLING.dpp_seed)
    parser.add_argument("--policy", default=SAMPLING.small_group_policy, choices=POLICIES)
    parser.add_argument("--per-sensor-budget", action="store_true")
    parser.add_argument("--max-group-windows", type=int, default=SAMPLING.max_group_windows,
                        help="split larger (sensor, period) groups into time blocks (bounds "
                             "a worker's memory; default %(default)s)")
    # sensor selection by DPP (issue 18)
    parser.add_argument("--sensors", type=int, help="first choose this many sensors (k-DPP over sensors.csv)")
    parser.add_argument("--sensors-csv", help="sensor coordinates (default: sensors.csv next to the corpus)")
    parser.add_argument("--sensor-method", default=SENSORS.method, choices=("kdpp", "greedy"))
    args, beam_args = parser.parse_known_args(argv)
    fraction = args.fraction if (args.fraction is not None or args.k is not None) \
        else SAMPLING.default_fraction
    cfg = SelectConfig(frames=args.frames, output=args.output, method=args.method, mode=args.mode,
                       fraction=fraction, k=args.k, period=args.period, seed=args.seed,
                       policy=args.policy, per_sensor_budget=args.per_sensor_budget,
                       max_group_windows=args.max_group_windows,
                       sensors=args.sensors, sensors_csv=args.sensors_csv,
                       sensor_method=args.sensor_method)
    return cfg, beam_args


def run(cfg: SelectConfig, beam_args: Sequence[str] = ()) -> dict:
    """Run the selection pipeline (``beam_args``: Beam flags); return ``selection.json``'s content."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.runners import select_runner

    options = PipelineOptions(list(beam_args))
    runner, _ = select_runner(options)
    p = beam.Pipeline(runner=runner, options=options)
    build(p, cfg)
    run_to_completion(p, "select")
    if not storage.isfile(storage.join(cfg.output, storage.SUCCESS_NAME)):
        raise DataError(f"{cfg.output}: the select pipeline finished without writing "
                        f"{storage.SUCCESS_NAME} (runner problem?)")
    return storage.read_json(storage.join(cfg.output, SUMMARY_FILE))


def main(argv: list[str] | None = None) -> int:
    summary = run(*parse_args(argv))
    print(f"sea pipeline select: {summary['n_selected']} of {summary['windows']} windows "
          f"({summary['method']}, {summary['groups']} groups) -> {summary['frames']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
