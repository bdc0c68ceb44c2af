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
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from pipelines.driver import run_to_completion
from pipelines.transforms.select import SampleGroups, WriteSelection
from sea_core import storage
from sea_core.datasets.frames import Partition, list_partitions
from sea_core.datasets.layout import SELECTION_FILE, SELECTION_SUMMARY_FILE
from sea_core.errors import DataError, ParameterError
from sea_core.params import SAMPLING, SENSORS
from sea_core.sampling import (METHODS, MODES, PERIODS, POLICIES, check_options, period_labels,
                               plan_budget)

__all__ = ["SelectConfig", "plan_groups", "build", "parse_args", "run", "main"]

log = logging.getLogger(__name__)


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


def _clear_output(output: str) -> None:
    """Remove this stage's previous output (shards of other groups must not survive a rerun)."""
    for name in (storage.SUCCESS_NAME, SELECTION_SUMMARY_FILE, SELECTION_FILE):
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
    return storage.read_json(storage.join(cfg.output, SELECTION_SUMMARY_FILE))


def main(argv: list[str] | None = None) -> int:
    summary = run(*parse_args(argv))
    print(f"sea pipeline select: {summary['n_selected']} of {summary['windows']} windows "
          f"({summary['method']}, {summary['groups']} groups) -> {summary['frames']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
