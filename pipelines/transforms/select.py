"""``sea pipeline select``'s transforms: sample each (sensor, period) group, then write the summary.

:class:`SampleGroups`: (group key, partitions, k) -> the group's selection shard
``OUT/selection.parquet/part-<sensor>-<period>.parquet`` (one worker per group);
:class:`WriteSelection`: the small per-group results -> ``OUT/selection.json`` +
``OUT/_SUCCESS`` (the final sink). ``cfg`` is the job's ``SelectConfig``
(``pipelines/select.py``): plain picklable attributes.
"""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa

from sea_core import storage
from sea_core.datasets.frames import fixed_list_to_numpy, read_partition, window_ids
from sea_core.datasets.layout import SELECTION_FILE, SELECTION_SUMMARY_FILE, selection_shard_name
from sea_core.sampling import DPP_METHODS, group_label

__all__ = ["SampleGroups", "WriteSelection"]


class _SampleGroupFn(beam.DoFn):
    def __init__(self, cfg):
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
        storage.publish_parquet(shard, storage.join(self.cfg.output, SELECTION_FILE,
                                                    selection_shard_name(key)),
                                compression="zstd")
        beam.metrics.Metrics.counter("sea.select", "groups").inc()
        beam.metrics.Metrics.counter("sea.select", "selected").inc(len(ids))
        yield {"group": result.to_dict(), "n_selected": int(len(ids))}


class SampleGroups(beam.PTransform):
    """(group key, partitions, k) -> the group's selection shard; yields {'group': ..., 'n_selected': n}."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def expand(self, pcoll):
        return (pcoll
                | "SpreadGroups" >> beam.Reshuffle()
                | "SampleEachGroup" >> beam.ParDo(_SampleGroupFn(self.cfg)))


class _WriteSelectionFn(beam.DoFn):
    def __init__(self, cfg, budget: dict):
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
        summary = {"method": self.cfg.method, "mode": self.cfg.mode if self.cfg.method in DPP_METHODS
                   else None, "seed": self.cfg.seed, "period": self.cfg.period,
                   "policy": self.cfg.policy, "fraction": self.cfg.fraction, "k": self.cfg.k,
                   "frames": str(self.cfg.frames), **self.budget,
                   "n_selected": int(sum(r["n_selected"] for r in results)),
                   "shards": len(results), "max_group_windows": self.cfg.max_group_windows,
                   "logdet": logdet, "small_groups": small,
                   "traps": [{"group": group_label((g["sensor"], g["period"]), self.cfg.period), **t}
                             for g in groups for t in g["traps"]],
                   "groups_detail": groups}
        storage.publish_text(storage.join(self.cfg.output, SELECTION_SUMMARY_FILE),
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

    def __init__(self, cfg, budget: dict):
        super().__init__()
        self.cfg, self.budget = cfg, budget

    def expand(self, pcoll):
        return (pcoll
                | "KeyAll" >> beam.Map(lambda r: ("selection", r))
                | "Gather" >> beam.GroupByKey()
                | "WriteFiles" >> beam.ParDo(_WriteSelectionFn(self.cfg, self.budget)))
