"""The plan of an embed run as a Beam job: the listing joined with the previous manifest.

One pipeline (one chain into one sink, correct on DaskRunner)::

    ListParts            the workers list the input (one element per prefix / manifest chunk)
    ReadManifest         the workers read the previous manifest (one element per row group)
    CoGroupByKey         both keyed by URI
    Classify             per URI: new | changed | unchanged | removed  (:func:`classify`)
    PartitionTouches     GroupByKey on the frames partition: which partitions to rebuild,
                         keeping which rows (the Touch items of :func:`plan_run`)
    CountPlan            CombineGlobally of the counts (+ the first removed URIs)
    WritePlan            the sink: work-unit shards, kept manifest rows, counts.json

It decides exactly what :func:`~pipelines.transforms.manifest.plan_run` (the
test oracle) decides on the launcher (tests/test_incremental_beam.py compares
the two), but the launcher only reads ``counts.json`` back - a few hundred bytes -
so its memory does not grow with the corpus, and the removal guard still refuses
before anything is written to the output. The embed job reads the unit shards
(:class:`~pipelines.transforms.list_inputs.ListInputs`), and the finalize step
(:mod:`pipelines.transforms.finalize`) reads the units and the kept rows.

:func:`run_plan_job` runs the Beam job (distributed runners);
:func:`run_plan_in_process` evaluates the same graph in this process for the
in-process runner, whose workers are this process anyway: the same functions per
element, URI and partition (:func:`classify`, ``_touch_of``, ``_SumCounts``,
the ``_WritePlanFn`` sink), the groupings as dicts, the same staged files, without
a Beam job's fixed cost (~0.7 s: graph construction, DoFn validation, runner start).
"""
from __future__ import annotations

import heapq
import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass

import apache_beam as beam

from pipelines.transforms.list_inputs import ListParts, _list_part, split_spec, stage_units
from pipelines.transforms.manifest import ReadManifest, _manifest_parts, _read_part, manifest_table
from pipelines.transforms.records import DEAD_LETTER_KEY, Touch
from sea_core.params import LISTING, RELEVANCE, RelevanceParams

__all__ = ["classify", "PlanRefresh", "smallest_uris", "StagedPlan", "run_plan_job",
           "run_plan_in_process", "read_counts", "UNITS_DIR", "KEEP_DIR", "COUNTS_NAME", "PLAN_COUNTS"]

log = logging.getLogger(__name__)

UNITS_DIR = "units"
"""``<staging>/units/part-*.parquet``: the work units (files to process, partition touches)."""
KEEP_DIR = "keep"
"""``<staging>/keep/part-*.parquet``: the unchanged manifest rows (carried into the new manifest)."""
COUNTS_NAME = "counts.json"
PLAN_COUNTS = ("listed", "process", "new", "changed", "unchanged", "removed", "previous",
               "touches")
_BUFFER_ROWS = 50_000
"""Rows a sink bundle buffers before it writes a shard (bounds worker memory)."""


def _key_of(uri: str, params: RelevanceParams):
    from pipelines.transforms.records import frames_key, parse_recording_path
    from sea_core.errors import AudioError

    try:
        n = parse_recording_path(uri, params)
    except AudioError:
        return None
    return frames_key(n.sensor, n.day)


def classify(uri: str, listed: list, previous: list, *, incremental: bool,
             params: RelevanceParams = RELEVANCE):
    """Tagged items for one URI (the per-recording half of :func:`plan_run`).

    ``incremental`` is True only for an --incremental run over a non-empty
    manifest. Yields ``("n", name)`` counts, ``("file", InputFile)`` to process,
    ``("keep", ManifestRow)`` rows carried over, ``("removed", uri)`` and partition
    markers ``("mark", key, ("A",) | ("K", uri))``: the partition is affected /
    keeps ``uri``'s existing rows.
    """
    old = previous[0] if previous else None
    if old is not None:
        yield "n", "previous"
    if not listed:
        if old is not None:
            yield "n", "removed"
            yield "removed", uri
            if incremental and old.key is not None:
                yield "mark", old.key, ("A",)
        return
    # a URI listed twice (overlapping prefixes): one deterministic choice
    f = sorted(listed, key=lambda x: (x.size, x.version))[-1]
    yield "n", "listed"
    if incremental and old is not None:
        if old.size == f.size and old.version == f.version and f.size >= 0:
            yield "n", "unchanged"
            yield "keep", old
            k = old.key if old.status == "ok" else DEAD_LETTER_KEY
            if k is not None:
                yield "mark", k, ("K", uri)
            return
        yield "n", "changed"
        if old.key is not None:
            yield "mark", old.key, ("A",)
    else:
        yield "n", "new"
    yield "n", "process"
    yield "file", f
    k = _key_of(f.uri, params)
    if k is not None:
        yield "mark", k, ("A",)


def _classify_fn(keyed, incremental: bool, params: RelevanceParams):
    uri, grouped = keyed
    yield from classify(uri, list(grouped["listed"]), list(grouped["previous"]),
                        incremental=incremental, params=params)


def _touch_of(keyed):
    """A partition's markers -> its Touch (affected, or on disk but unknown to the manifest)."""
    key, marks = keyed
    key = tuple(key)
    affected = disk = False
    keep = set()
    for m in marks:
        if m[0] == "A":
            affected = True
        elif m[0] == "D":
            disk = True
        else:
            keep.add(m[1])
    # a frames partition on disk that no unchanged manifest row names (changed / removed rows
    # mark it affected): left by an interrupted run, rebuild it
    if affected or key == DEAD_LETTER_KEY or (disk and not keep):
        yield "n", "touches"
        yield "touch", Touch(key=key, keep_uris=frozenset(keep))


def _disk_keys(layout_root: str):
    """Frames partitions on disk (marker 'D'); the dead letters are always rebuilt ('A')."""
    from pipelines.transforms.write import OutputLayout

    yield DEAD_LETTER_KEY, ("A",)
    for k in OutputLayout(root=layout_root, emb_dim=1, student_samples=1).frames_keys_on_disk():
        yield k, ("D",)


class _SumCounts(beam.CombineFn):
    """Counts by name, plus the ``LISTING.summary_max_uris`` smallest removed URIs."""

    def create_accumulator(self):
        return {}, []

    def add_input(self, acc, item):
        counts, removed = acc
        if item[0] == "n":
            counts[item[1]] = counts.get(item[1], 0) + 1
        else:
            removed.append(item[1])
            removed = smallest_uris(removed)
        return counts, removed

    def merge_accumulators(self, accs):
        counts, removed = {}, []
        for c, r in accs:
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
            removed = smallest_uris(removed + list(r))
        return counts, removed

    def extract_output(self, acc):
        counts, removed = acc
        return {**{k: counts.get(k, 0) for k in PLAN_COUNTS},
                "removed_uris": smallest_uris(removed, final=True)}


def smallest_uris(uris: list, final: bool = False) -> list:
    """Bounded list of the ``LISTING.summary_max_uris`` smallest URIs: pruned when it holds
    twice that (amortised O(log n) per URI); ``final``: pruned and sorted."""
    n = LISTING.summary_max_uris
    if final:
        return sorted(heapq.nsmallest(n, uris))
    return uris if len(uris) <= 2 * n else heapq.nsmallest(n, uris)


class _WritePlanFn(beam.DoFn):
    """The plan job's sink: buffer a bundle, write its unit / kept-row shards; counts.json."""

    def __init__(self, staging: str, shard_size: int, settings: dict | None):
        self.staging, self.shard_size, self.settings = staging, shard_size, settings

    def start_bundle(self):
        self._files, self._touches, self._keep = [], [], []

    def process(self, item):
        from sea_core import storage

        kind = item[0]
        if kind == "counts":
            storage.publish_json(f"{self.staging}/{COUNTS_NAME}", item[1], sort_keys=True)
            return
        {"file": self._files, "touch": self._touches, "keep": self._keep}[kind].append(item[1])
        if len(self._files) + len(self._touches) + len(self._keep) >= _BUFFER_ROWS:
            self.finish_bundle()
            self.start_bundle()

    def finish_bundle(self):
        from sea_core import storage

        name = f"part-{uuid.uuid4().hex}.parquet"
        if self._files or self._touches:
            files = sorted(self._files, key=lambda f: f.uri)
            units = [files[i:i + self.shard_size] for i in range(0, len(files), self.shard_size)]
            if self._touches:
                units.append(sorted(self._touches, key=lambda t: t.key))
            stage_units(units, f"{self.staging}/{UNITS_DIR}/{name}")
        if self._keep:
            rows = sorted(self._keep, key=lambda r: r.uri)
            storage.publish_parquet(manifest_table(rows, self.settings),
                                    f"{self.staging}/{KEEP_DIR}/{name}")
        self._files, self._touches, self._keep = [], [], []


def _is(*kinds):
    return lambda item: item[0] in kinds


class PlanRefresh(beam.PTransform):
    """List ``spec``, join with the manifest at ``manifest_url`` and write the plan to ``staging``.

    Parameters
    ----------
    spec : str
        The ``--input`` (glob, directory, manifest of URIs, file).
    manifest_url : str or None
        The previous ``manifest.parquet`` (a file or a directory of shards), None if absent.
    layout_root : str
        The output directory (its frames partitions on disk are rebuilt when unknown).
    incremental : bool
        An --incremental run over a non-empty manifest.
    """

    def __init__(self, spec: str, manifest_url: str | None, layout_root: str, staging: str, *,
                 incremental: bool, shard_size: int, settings: dict | None,
                 params: RelevanceParams = RELEVANCE, label: str | None = None):
        super().__init__(label)
        self.spec, self.manifest_url, self.root = str(spec), manifest_url, str(layout_root)
        self.staging, self.incremental, self.shard_size = str(staging), bool(incremental), shard_size
        self.settings, self.params = settings, params

    def expand(self, pbegin):
        p = pbegin.pipeline
        listed = (p
                  | "List" >> ListParts(self.spec)
                  | "KeyListed" >> beam.Map(lambda f: (f.uri, f)))
        previous = (p
                    | "ReadManifest" >> ReadManifest(self.manifest_url)
                    | "KeyPrevious" >> beam.Map(lambda r: (r.uri, r)))
        items = ({"listed": listed, "previous": previous}
                 | "JoinByUri" >> beam.CoGroupByKey()
                 | "Classify" >> beam.FlatMap(_classify_fn, self.incremental, self.params))
        disk = (p
                | "OutputRoot" >> beam.Create([self.root], reshuffle=False)
                | "PartitionsOnDisk" >> beam.FlatMap(_disk_keys))
        touches = ((items
                    | "Markers" >> beam.Filter(_is("mark"))
                    | "KeyMarkers" >> beam.Map(lambda m: (m[1], m[2])), disk)
                   | "AllMarkers" >> beam.Flatten()
                   | "ByPartition" >> beam.GroupByKey()
                   | "Touches" >> beam.FlatMap(_touch_of))
        counts = ((items | "CountItems" >> beam.Filter(_is("n", "removed")),
                   touches | "CountTouches" >> beam.Filter(_is("n")))
                  | "AllCounts" >> beam.Flatten()
                  | "CountPlan" >> beam.CombineGlobally(_SumCounts()).without_defaults()
                  | "TagCounts" >> beam.Map(lambda c: ("counts", c)))
        return ((items | "ToWrite" >> beam.Filter(_is("file", "keep")),
                 touches | "TouchItems" >> beam.Filter(_is("touch")), counts)
                | "PlanItems" >> beam.Flatten()
                | "WritePlan" >> beam.ParDo(_WritePlanFn(self.staging, self.shard_size,
                                                         self.settings)))


@dataclass
class StagedPlan:
    """What the plan job decided: counts on the launcher, everything else in ``staging``."""

    staging: str
    counts: dict
    incremental: bool
    manifest_rows: int
    """Rows of the previous manifest (the removal guard's denominator)."""

    @property
    def units_url(self) -> str:
        return f"{self.staging}/{UNITS_DIR}"

    @property
    def keep_url(self) -> str:
        return f"{self.staging}/{KEEP_DIR}"

    @property
    def nothing(self) -> bool:
        """An --incremental run with nothing new, changed or removed (only the dead letters
        would be touched): the embed job can be skipped."""
        c = self.counts
        return self.incremental and not c["process"] and not c["removed"] and c["touches"] <= 1

    @property
    def removed(self) -> list[str]:
        return list(self.counts["removed_uris"])

    def cleanup(self) -> None:
        from sea_core import storage

        try:
            if storage.exists(self.staging):
                storage.rm(self.staging, recursive=True)
        except OSError as exc:  # best effort: a temp dir
            log.warning("embed: could not remove the plan staging %s (%s)", self.staging, exc)


def read_counts(staging: str) -> dict:
    """``counts.json`` of a plan job (zeros when nothing was listed and there is no manifest)."""
    from sea_core import storage

    url = f"{staging}/{COUNTS_NAME}"
    if not storage.exists(url):
        return {**{k: 0 for k in PLAN_COUNTS}, "removed_uris": []}
    return json.loads(storage.read_text(url))


def run_plan_job(spec: str, *, manifest_url: str | None, manifest_rows: int, layout_root: str,
                 staging: str, incremental: bool, shard_size: int, settings: dict | None,
                 params: RelevanceParams = RELEVANCE, runner=None, options=None) -> StagedPlan:
    """Run :class:`PlanRefresh` as a Beam job (Beam's in-process FnApiRunner when ``runner`` is
    None); returns the staged plan.

    The launcher reads ``counts.json`` only. Raises nothing about the counts:
    the caller applies the listing contract and the removal guard (and calls
    :meth:`StagedPlan.cleanup` when it refuses).
    """
    from pipelines.driver import run_to_completion

    if runner is None:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        runner = FnApiRunner()
    inc = bool(incremental and manifest_rows)
    p = beam.Pipeline(runner=runner, options=options)
    p | "PlanRefresh" >> PlanRefresh(spec, manifest_url, layout_root, staging, incremental=inc,
                                     shard_size=shard_size, settings=settings, params=params)
    return _staged_plan(staging, inc, manifest_rows, lambda: run_to_completion(p, "plan"))


def _staged_plan(staging: str, incremental: bool, manifest_rows: int, stage) -> StagedPlan:
    """Run ``stage()`` (it writes the plan under ``staging``) and read its counts back; the
    staging is removed when it fails."""
    plan = StagedPlan(staging=staging, counts={}, incremental=incremental,
                      manifest_rows=manifest_rows)
    try:
        stage()
        plan.counts = read_counts(staging)
    except BaseException:
        plan.cleanup()
        raise
    return plan


def run_plan_in_process(spec: str, *, manifest_url: str | None, manifest_rows: int,
                        layout_root: str, staging: str, incremental: bool, shard_size: int,
                        settings: dict | None, params: RelevanceParams = RELEVANCE) -> StagedPlan:
    """:class:`PlanRefresh` evaluated in this process, without a Beam job; returns the staged plan.

    For the in-process runner, whose workers are this process anyway: the same
    functions per element, per URI and per partition, the groupings as dicts and
    the same sink, so it stages the same files as :func:`run_plan_job` without
    the fixed cost of a Beam job (~0.7 s). Raises like :func:`run_plan_job`.
    """
    from pipelines.driver import combine_globally, run_sink

    inc = bool(incremental and manifest_rows)

    def stage():
        by_uri = defaultdict(lambda: {"listed": [], "previous": []})     # JoinByUri
        for part in split_spec(spec):
            for f in _list_part(part):
                by_uri[f.uri]["listed"].append(f)
        for part in _manifest_parts(manifest_url):
            for r in _read_part(part):
                by_uri[r.uri]["previous"].append(r)
        items = [it for kv in by_uri.items() for it in _classify_fn(kv, inc, params)]
        marks = defaultdict(list)                                          # ByPartition
        for _, key, mark in filter(_is("mark"), items):
            marks[key].append(mark)
        for key, mark in _disk_keys(layout_root):
            marks[key].append(mark)
        touches = [t for kv in marks.items() for t in _touch_of(kv)]
        counts = combine_globally(_SumCounts(), [*filter(_is("n", "removed"), items),
                                                 *filter(_is("n"), touches)])
        run_sink(_WritePlanFn(staging, shard_size, settings),
                 [*filter(_is("file", "keep"), items), *filter(_is("touch"), touches),
                  *([("counts", counts)] if counts is not None else [])])

    return _staged_plan(staging, inc, manifest_rows, stage)
