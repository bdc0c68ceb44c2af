"""After the embed job: what became of each processed recording, and the new manifest.

One pipeline (one chain into one sink)::

    UnitItems        the plan's work units (files processed, partitions rebuilt), read by workers
    PartitionState   each rebuilt partition's (uri, recording_id, windows) / the dead letters
    CoGroupByKey     processed files x what the output holds, keyed by URI
    ManifestRows     ok | dead | missing per processed URI (+ stats)
    KeptRows         the plan's unchanged manifest rows, carried over
    CountRun         CombineGlobally of the run's counts and totals
    WriteManifest    GroupByKey on the manifest shard (crc32(uri) % B): each shard sorted by
                     URI, written to the staging; stats.json

:func:`run_finalize_job` runs it as a Beam job (distributed runners);
:func:`run_finalize_in_process` evaluates the same graph in this process for the
in-process runner (the same functions per element, URI and shard, the groupings
as dicts, the same sink: byte-identical shards, without a Beam job's fixed cost).
The launcher reads ``stats.json`` (counts, capped URI lists) and, when the run
balances (inputs = ok + dead-lettered, nothing missing), moves the shards into
``DIR/manifest.parquet/`` (:func:`~pipelines.transforms.manifest.publish_manifest`).
"""
from __future__ import annotations

import json
import uuid
from collections import defaultdict

import apache_beam as beam

from pipelines.transforms.diff import smallest_uris
from pipelines.transforms.manifest import ManifestRow, shard_name, shard_of, write_shard
from pipelines.transforms.records import DEAD_LETTER_KEY, FRAMES_KIND, InputFile, Touch
from pipelines.transforms.write import OutputLayout

__all__ = ["FinalizeManifest", "run_finalize_job", "run_finalize_in_process", "read_stats",
           "MANIFEST_STAGING", "STATS_NAME"]

MANIFEST_STAGING = "manifest"
"""``<staging>/manifest/manifest-<b>-of-<B>.parquet``: the new manifest, before it is published."""
STATS_NAME = "stats.json"


def _unit_items(part):
    from pipelines.transforms.list_inputs import _read_units

    for unit in _read_units(part):
        yield from unit


def _partition_state(touch: Touch, layout: OutputLayout):
    """(uri, state) of every recording the rebuilt partition holds now."""
    from pipelines.transforms.write import read_table_or_none

    key = tuple(touch.key)
    if key == DEAD_LETTER_KEY:
        t = read_table_or_none(layout.path(key))
        seen = set()
        for row in (t.to_pylist() if t is not None else []):
            if row["uri"] not in seen:  # the first row of a URI (file sorted by uri, stage)
                seen.add(row["uri"])
                yield row["uri"], ("dead", row["error_kind"], row["stage"])
        return
    if key[0] != FRAMES_KIND:
        return
    t = read_table_or_none(layout.path(key), columns=["uri", "recording_id", "window_index"])
    if t is None or t.num_rows == 0:
        return
    g = t.group_by(["uri", "recording_id"]).aggregate([("window_index", "count")])
    for uri, rid, n in zip(g.column("uri").to_pylist(), g.column("recording_id").to_pylist(),
                           g.column("window_index_count").to_pylist()):
        yield uri, ("ok", rid, int(n), key)


def _manifest_rows(keyed, run_id: str):
    """Per URI: the new manifest row of a processed recording, or 'missing'; stats items."""
    uri, grouped = keyed
    files = list(grouped["input"])
    if not files:  # a kept (unchanged) recording of a rebuilt partition
        return
    f = files[0]
    states = list(grouped["state"])
    oks = [s for s in states if s[0] == "ok"]
    deads = [s for s in states if s[0] == "dead"]
    yield "s", ("inputs",)
    if oks:
        _, rid, n, key = oks[0]
        yield "row", ManifestRow(uri=f.uri, size=f.size, version=f.version, content_hash=rid,
                                 run_id=run_id, status="ok", sensor=key[1], day=key[2], windows=n)
        yield "s", ("ok",)
        yield "s", ("windows", n)
    elif deads:
        yield "row", ManifestRow(uri=f.uri, size=f.size, version=f.version, content_hash=None,
                                 run_id=run_id, status="dead", sensor=None, day=None, windows=0)
        yield "s", ("dead_lettered",)
    else:
        yield "s", ("missing", uri)
    if deads:
        yield "s", ("kind", deads[0][1])
        yield "s", ("stage", deads[0][2])
        if oks:
            yield "s", ("in_both_outputs", uri)


def _totals(item):
    r = item[1]
    if r.status == "ok":
        yield "s", ("total_ok", r.windows, (r.sensor, r.day))
    else:
        yield "s", ("total_dead",)


class _SumStats(beam.CombineFn):
    """The run's counts; the partitions set holds one (sensor, day) per frames partition."""

    _LISTS = ("missing", "in_both_outputs")

    def create_accumulator(self):
        return {"n": {}, "kind": {}, "stage": {}, "missing": [], "in_both_outputs": [],
                "partitions": set()}

    def add_input(self, acc, item):
        s = item[1]
        name = s[0]
        n = acc["n"]
        if name in ("kind", "stage"):
            acc[name][s[1]] = acc[name].get(s[1], 0) + 1
        elif name in self._LISTS:
            n[name] = n.get(name, 0) + 1
            acc[name].append(s[1])
            acc[name] = smallest_uris(acc[name])
        elif name == "windows":
            n["windows"] = n.get("windows", 0) + s[1]
        elif name == "total_ok":
            n["recordings_ok"] = n.get("recordings_ok", 0) + 1
            n["total_windows"] = n.get("total_windows", 0) + s[1]
            acc["partitions"].add(s[2])
        elif name == "total_dead":
            n["recordings_dead"] = n.get("recordings_dead", 0) + 1
        else:
            n[name] = n.get(name, 0) + 1
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            for part in ("n", "kind", "stage"):
                for k, v in a[part].items():
                    out[part][k] = out[part].get(k, 0) + v
            for name in self._LISTS:
                out[name] = smallest_uris(out[name] + list(a[name]))
            out["partitions"] |= a["partitions"]
        return out

    def extract_output(self, acc):
        n = acc["n"]
        return {"counts": {k: n.get(k, 0) for k in ("inputs", "ok", "dead_lettered", "windows",
                                                    "missing", "in_both_outputs")},
                "by_failure_kind": dict(sorted(acc["kind"].items())),
                "by_stage": dict(sorted(acc["stage"].items())),
                "missing": smallest_uris(acc["missing"], final=True),
                "in_both_outputs": smallest_uris(acc["in_both_outputs"], final=True),
                "totals": {"recordings_ok": n.get("recordings_ok", 0),
                           "recordings_dead": n.get("recordings_dead", 0),
                           "windows": n.get("total_windows", 0),
                           "partitions": len(acc["partitions"])}}


class _WriteFinalFn(beam.DoFn):
    """Sink: one manifest shard per bucket element; ``stats.json`` for the stats element."""

    def __init__(self, staging: str, n_shards: int, settings: dict):
        self.staging, self.n_shards, self.settings = staging, n_shards, settings

    def process(self, item):
        from sea_core import storage

        if item[0] == "stats":
            storage.publish_json(f"{self.staging}/{STATS_NAME}", item[1], sort_keys=True)
            return
        _, b, rows = item
        write_shard([r for r in rows if r is not None], self.settings,
                    f"{self.staging}/{MANIFEST_STAGING}/{shard_name(b, self.n_shards)}")


def _is(*kinds):
    return lambda item: item[0] in kinds


def _kept_rows(part):
    import pyarrow.parquet as pq

    from sea_core import storage

    f, i = part
    fs, path = storage.url_to_fs(f)
    with fs.open(path, "rb") as fh:
        for r in pq.ParquetFile(fh).read_row_group(i).to_pylist():
            yield "row", ManifestRow(**r)


def _parts(url: str):
    from sea_core import storage

    if storage.isdir(url):
        yield from storage.parquet_row_groups(sorted(storage.glob(f"{url.rstrip('/')}/part-*.parquet")))


class FinalizeManifest(beam.PTransform):
    """The plan's units + kept rows + the written output -> manifest shards and stats in ``staging``."""

    def __init__(self, units_url: str, keep_url: str, layout: OutputLayout, staging: str, *,
                 run_id: str, settings: dict, n_shards: int, label: str | None = None):
        super().__init__(label)
        self.units_url, self.keep_url, self.layout = str(units_url), str(keep_url), layout
        self.staging, self.run_id, self.settings = str(staging), run_id, settings
        self.n_shards = int(n_shards)

    def expand(self, pbegin):
        p = pbegin.pipeline
        items = (p
                 | "UnitsDir" >> beam.Create([self.units_url], reshuffle=False)
                 | "UnitRowGroups" >> beam.FlatMap(_parts)
                 | "SpreadUnits" >> beam.Reshuffle()
                 | "UnitItems" >> beam.FlatMap(_unit_items))
        inputs = (items
                  | "Processed" >> beam.Filter(lambda it: isinstance(it, InputFile))
                  | "KeyProcessed" >> beam.Map(lambda f: (f.uri, f)))
        states = (items
                  | "Rebuilt" >> beam.Filter(lambda it: isinstance(it, Touch))
                  | "SpreadPartitions" >> beam.Reshuffle()
                  | "PartitionState" >> beam.FlatMap(_partition_state, self.layout))
        joined = ({"input": inputs, "state": states}
                  | "JoinByUri" >> beam.CoGroupByKey()
                  | "ManifestRows" >> beam.FlatMap(_manifest_rows, self.run_id))
        kept = (p
                | "KeepDir" >> beam.Create([self.keep_url], reshuffle=False)
                | "KeepRowGroups" >> beam.FlatMap(_parts)
                | "SpreadKept" >> beam.Reshuffle()
                | "KeptRows" >> beam.FlatMap(_kept_rows))
        rows = (joined | "NewRows" >> beam.Filter(_is("row")), kept) | "AllRows" >> beam.Flatten()
        stats = ((joined | "RunStats" >> beam.Filter(_is("s")),
                  rows | "Totals" >> beam.FlatMap(_totals))
                 | "AllStats" >> beam.Flatten()
                 | "CountRun" >> beam.CombineGlobally(_SumStats()).without_defaults()
                 | "TagStats" >> beam.Map(lambda s: ("stats", s)))
        n = self.n_shards
        every = (p
                 | "ShardCount" >> beam.Create([n], reshuffle=False)
                 | "EveryShard" >> beam.FlatMap(lambda k: ((b, None) for b in range(k))))
        shards = ((rows | "KeyByShard" >> beam.Map(lambda r: (shard_of(r[1].uri, n), r[1])), every)
                  | "AllShards" >> beam.Flatten()
                  | "ByShard" >> beam.GroupByKey()
                  | "TagShard" >> beam.Map(lambda kv: ("shard", kv[0], list(kv[1]))))
        return ((shards, stats)
                | "FinalItems" >> beam.Flatten()
                | "WriteManifest" >> beam.ParDo(_WriteFinalFn(self.staging, n, self.settings)))


def read_stats(staging: str) -> dict:
    from sea_core import storage

    url = f"{staging}/{STATS_NAME}"
    if not storage.exists(url):  # nothing processed and no manifest rows
        return _SumStats().extract_output(_SumStats().create_accumulator())
    return json.loads(storage.read_text(url))


def _final_staging(plan) -> str:
    return f"{plan.staging}/final-{uuid.uuid4().hex[:8]}"


def run_finalize_job(plan, layout: OutputLayout, *, run_id: str, settings: dict, n_shards: int,
                     runner=None, options=None) -> tuple[dict, str]:
    """Run :class:`FinalizeManifest` for a :class:`~pipelines.transforms.diff.StagedPlan`;
    returns (stats, URL of the staged manifest shards)."""
    from pipelines.driver import run_to_completion

    if runner is None:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        runner = FnApiRunner()
    staging = _final_staging(plan)
    p = beam.Pipeline(runner=runner, options=options)
    p | "Finalize" >> FinalizeManifest(plan.units_url, plan.keep_url, layout, staging,
                                       run_id=run_id, settings=settings, n_shards=n_shards)
    run_to_completion(p, "finalize")
    return read_stats(staging), f"{staging}/{MANIFEST_STAGING}"


def run_finalize_in_process(plan, layout: OutputLayout, *, run_id: str, settings: dict,
                            n_shards: int) -> tuple[dict, str]:
    """:class:`FinalizeManifest` evaluated in this process, without a Beam job; returns what
    :func:`run_finalize_job` returns.

    For the in-process runner, whose workers are this process anyway: the same
    functions per element, per URI and per shard, the groupings as dicts and the
    same sink, so it writes the same manifest shards and ``stats.json``.
    """
    from pipelines.driver import combine_globally, run_sink

    staging = _final_staging(plan)
    by_uri = defaultdict(lambda: {"input": [], "state": []})             # JoinByUri
    for part in _parts(plan.units_url):
        for item in _unit_items(part):
            if isinstance(item, InputFile):
                by_uri[item.uri]["input"].append(item)
            elif isinstance(item, Touch):
                for uri, state in _partition_state(item, layout):
                    by_uri[uri]["state"].append(state)
    joined = [x for kv in by_uri.items() for x in _manifest_rows(kv, run_id)]
    rows = [*filter(_is("row"), joined),
            *(x for part in _parts(plan.keep_url) for x in _kept_rows(part))]
    stats = combine_globally(_SumStats(), [*filter(_is("s"), joined),
                                           *(s for r in rows for s in _totals(r))])
    shards = {b: [] for b in range(n_shards)}                             # ByShard
    for _, r in rows:
        shards[shard_of(r.uri, n_shards)].append(r)
    run_sink(_WriteFinalFn(staging, n_shards, settings),
             [*(("shard", b, rs) for b, rs in shards.items()),
              *([("stats", stats)] if stats is not None else [])])
    return read_stats(staging), f"{staging}/{MANIFEST_STAGING}"
