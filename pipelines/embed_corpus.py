"""`sea pipeline embed`: upstream corpus -> teacher embeddings + SPL + relevance, as Parquet.

Pipeline (one chain, one sink; every stage a named composite PTransform in
``pipelines/transforms/``)::

    ListInputs        work units of <= --shard-size recordings (+ partition touches), Reshuffle
    DecodeAndFrame    name -> sensor/day, bytes -> sha256 id, decode, teacher + aligned 8-kHz windows
    ComputeSpl        A-weighted Leq per window (computed, or from per-second sidecars)
    TeacherInference  fixed-size batches over the unit's windows, model loaded once per worker
    GroupByPartition  GroupByKey on (sensor, local day) | dead letters
    ScoreRelevance    merge kept rows (incremental), relevance over the whole partition, sort
    WritePartitions   one Parquet file per partition, temp file + rename

Good and failed inputs travel in the same PCollection (tagged-union items), so
the shape is correct on every runner, DaskRunner included. Two smaller steps
run around it: before, the plan (``transforms/diff.py``: listing joined with the
previous manifest, work units staged); after, the finalize step
(``transforms/finalize.py``: what was written, joined with what was processed;
new manifest shards). On a distributed runner each is a Beam job whose workers
do the work; on the default in-process runner (whose workers are this process)
both run in the launcher without a Beam job (``run_plan_in_process``,
``run_finalize_in_process``: the same functions, the same staged files, without
~0.7 s of fixed Beam cost each; ``_in_process`` decides). The driver reads their
counts only, checks ``inputs == ok + dead_lettered``, publishes
``manifest.parquet/``, writes ``run_summary.json`` and finally ``_SUCCESS``.

    sea pipeline embed --input 'data/upstream/**/*.flac' --output out/ --teacher aisfx
    python -m pipelines.embed_corpus --input ... --output ... --runner=DaskRunner \
        --dask_client_address=tcp://scheduler:8786
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.embed_config import (EmbedConfig, _precision_checked, _resolve, _Resolved,
                                    config_from_options)
from pipelines.options import add_embed_arguments
from pipelines.runners import select_runner
from pipelines.transforms.decode import DecodeAndFrame
from pipelines.transforms.diff import StagedPlan, run_plan_in_process, run_plan_job
from pipelines.transforms.finalize import run_finalize_in_process, run_finalize_job
from pipelines.transforms.list_inputs import ListInputs, check_input_exists
from pipelines.transforms.manifest import (MANIFEST_SHARD_ROWS, check_settings, manifest_footer,
                                           publish_manifest)
from pipelines.transforms.records import METRICS_NAMESPACE
from pipelines.transforms.relevance import GroupByPartition, ScoreConfig, ScoreRelevance
from pipelines.transforms.spl import ComputeSpl
from pipelines.transforms.teacher import TeacherInference
from pipelines.transforms.write import OutputLayout, WritePartitions, remove_file, remove_temp_files
from sea_core import storage
from sea_core.datasets.layout import MANIFEST_NAME, PLAN_STAGING_PREFIX, STAGING_DIR, SUCCESS_NAME
from sea_core.datasets.layout import RUN_SUMMARY_NAME as SUMMARY_NAME
from sea_core.errors import DataError, ParameterError
from sea_core.params import LISTING
from sea_core.precision import cpu_bf16_flags, describe_cpu

__all__ = ["parse_args", "build", "plan", "run", "main"]

log = logging.getLogger(__name__)


def _manifest_settings(root: str) -> dict | None:
    """The settings recorded in ``root``'s manifest (its Parquet footers only), or None."""
    found = manifest_footer(f"{root}/{MANIFEST_NAME}")
    return found[2] if found else None


def _listing_staging(cfg: EmbedConfig, options: PipelineOptions | None, run_id: str,
                     in_process: bool = False) -> str:
    """Where the plan job's workers write the plan (work units, kept manifest rows, counts)
    and the finalize job the new manifest: a local temporary directory for an in-process
    plan or a local output, ``--temp_location`` when given, else ``DIR/_staging/``."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    if in_process:
        import tempfile
        return os.path.join(tempfile.mkdtemp(prefix="sea-listing-"), "listing")
    temp = options.view_as(GoogleCloudOptions).temp_location if options is not None else None
    if temp:
        return f"{temp.rstrip('/')}/sea-plan-{run_id}"
    if "://" not in cfg.output or cfg.output.startswith("file://"):
        import tempfile
        return os.path.join(tempfile.mkdtemp(prefix="sea-listing-"), "listing")
    return f"{cfg.output.rstrip('/')}/{STAGING_DIR}/{PLAN_STAGING_PREFIX}-{run_id}"


def _in_process(runner) -> bool:
    """Whether ``runner`` (from :func:`select_runner`; None: none chosen) is Beam's in-process
    FnApiRunner, whose workers are this process: the plan and finalize steps then run here,
    without a Beam job each (same logic, same staged files, ~0.7 s less per step)."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return runner is None or isinstance(runner, FnApiRunner)


def plan(cfg: EmbedConfig, resolved: _Resolved | None = None, *, runner=None,
         options: PipelineOptions | None = None, run_id: str | None = None,
         beam_job: bool = False) -> StagedPlan:
    """List the inputs and join them with the previous manifest (:mod:`pipelines.transforms.diff`):
    a Beam job (the plan job) whose workers stage the plan, or, for the in-process runner
    (``runner`` None or a FnApiRunner) unless ``beam_job``, the same steps in this process.
    The launcher reads counts.

    Reads only the previous manifest's footers here. Raises before anything is
    written to the output: "input not found", "no input matches", an
    --incremental run with other settings or one that would remove too much
    (:func:`check_removals`).
    """
    resolved = resolved or _resolve(cfg)
    root = resolved.layout.root
    found = manifest_footer(f"{root}/{MANIFEST_NAME}")
    n_previous, settings = (found[1], found[2]) if found else (0, None)
    if cfg.incremental:
        check_settings(*_precision_checked(settings, resolved.settings(cfg), cfg))
    check_input_exists(cfg.input)
    spec = str(cfg.input).strip()
    run_id = run_id or uuid.uuid4().hex[:12]
    staging = _listing_staging(cfg, options, run_id, in_process=runner is None)
    args = dict(manifest_url=f"{root}/{MANIFEST_NAME}" if found else None,
                manifest_rows=n_previous, layout_root=root, staging=staging,
                incremental=cfg.incremental, shard_size=cfg.shard_size, settings=settings,
                params=resolved.relevance)
    if _in_process(runner) and not beam_job:
        run_plan = run_plan_in_process(spec, **args)
    else:
        run_plan = run_plan_job(spec, **args, runner=runner, options=options)
    try:
        if not run_plan.counts["listed"]:
            raise DataError(f"no input matches {spec} (nothing was written or removed)")
        if run_plan.incremental:
            check_removals(run_plan.counts["removed"], n_previous, allow=cfg.allow_removals,
                           where=cfg.input)
    except BaseException:
        run_plan.cleanup()
        raise
    log.info("list: %d input(s) from %s", run_plan.counts["listed"], spec)
    return run_plan


def check_removals(n_removed: int, n_manifest: int, *, allow: bool, where: str) -> None:
    """Refuse an --incremental run that would remove too much of the output.

    A mistyped glob or an unmounted bucket lists (almost) nothing; removing more
    than ``LISTING.max_removed_fraction`` of the manifest (or all of it) needs
    ``--allow-removals``.
    """
    if allow or n_removed == 0 or n_manifest == 0:
        return
    if n_removed >= n_manifest or n_removed > LISTING.max_removed_fraction * n_manifest:
        raise ParameterError(
            f"--incremental would remove {n_removed} of the {n_manifest} recordings in the "
            f"manifest (more than {LISTING.max_removed_fraction:.0%}) because {where} no longer "
            f"lists them; check --input, or pass --allow-removals to remove them")


def build(p: beam.Pipeline, cfg: EmbedConfig, *, run_plan: StagedPlan | None = None,
          resolved: _Resolved | None = None) -> beam.PCollection:
    """Add the embedding pipeline to ``p``; returns the sink's per-partition results.

    The work units are the shards the plan job's workers staged (``run_plan.units_url``;
    without ``run_plan`` the plan job runs in-process now, staging in a local
    temporary directory - enough for in-process runners and for inspecting the
    graph). The graph holds only that URL, never the listing. The last transform
    added is the sink (DaskRunner evaluates only the last one).
    """
    resolved = resolved or _resolve(cfg)
    run_plan = run_plan or plan(cfg, resolved)
    return (p
            | "ListInputs" >> ListInputs(run_plan.units_url)
            | "DecodeAndFrame" >> DecodeAndFrame(resolved.framing, resolved.relevance)
            | "ComputeSpl" >> ComputeSpl(resolved.spl)
            | "TeacherInference" >> TeacherInference(resolved.teacher)
            | "GroupByPartition" >> GroupByPartition()
            | "ScoreRelevance" >> ScoreRelevance(ScoreConfig(layout=resolved.layout,
                                                             teacher_id=resolved.teacher_id,
                                                             teacher_precision=resolved.precision,
                                                             relevance=resolved.relevance))
            | "WritePartitions" >> WritePartitions(resolved.layout))


# --------------------------------------------------------------------------- after the pipeline
def _metrics(result) -> dict | None:
    try:
        res = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception:  # noqa: BLE001 - runners without metrics (DaskRunner) raise various errors
        return None
    out: dict = {}
    for c in res.get("counters", []):
        v = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(v or 0)
    for d in res.get("distributions", []):
        v = d.committed if d.committed is not None else d.attempted
        if v is not None:
            out[d.key.metric.name] = {"sum_ms": int(v.sum), "count": int(v.count),
                                      "max_ms": int(v.max)}
    return out


def _finalize(cfg: EmbedConfig, resolved: _Resolved, run_plan: StagedPlan, *, run_id: str,
              runner: str, timings: dict, metrics: dict | None,
              options: PipelineOptions | None = None, in_process: bool = False) -> dict:
    """The finalize step (:mod:`pipelines.transforms.finalize`: the processed recordings joined
    with what the output holds, the new manifest shards written; a Beam job whose workers do it,
    or this process when ``in_process``), then, on the launcher, the summary, the manifest
    publish and ``_SUCCESS`` - from counts only."""
    t0 = time.perf_counter()
    layout = resolved.layout
    root = layout.root
    settings = resolved.settings(cfg)
    c = run_plan.counts
    n_shards = max(1, -(-(c["process"] + c["unchanged"]) // MANIFEST_SHARD_ROWS))
    try:
        if in_process:
            stats, shards = run_finalize_in_process(run_plan, layout, run_id=run_id,
                                                    settings=settings, n_shards=n_shards)
        else:
            stats, shards = run_finalize_job(
                run_plan, layout, run_id=run_id, settings=settings, n_shards=n_shards,
                runner=select_runner(options)[0] if options is not None else None,
                options=options)
        k = stats["counts"]
        n_in, n_ok, n_dead = c["process"], k["ok"], k["dead_lettered"]
        balanced = (n_in == k["inputs"] == n_ok + n_dead and not k["missing"]
                    and not k["in_both_outputs"])
        if balanced:
            publish_manifest(shards, f"{root}/{MANIFEST_NAME}")
    finally:
        run_plan.cleanup()
        if storage.exists(f"{root}/{STAGING_DIR}"):  # this run's plan (remote output), leftovers
            storage.rm(f"{root}/{STAGING_DIR}", recursive=True)
    summary = {
        "run_id": run_id,
        "status": "finished",
        "runner": runner,
        "teacher": cfg.teacher,
        "teacher_id": resolved.teacher_id,
        "teacher_window_samples": resolved.framing.teacher_window,
        "window_seconds": resolved.framing.window_seconds,
        "teacher_precision": resolved.precision,
        "teacher_precision_recorded": resolved.recorded_precision or resolved.precision,
        "cpu_bf16_flags": list(cpu_bf16_flags()),
        "incremental": run_plan.incremental,
        "input": cfg.input,
        "output": cfg.output,
        "counts": {
            "inputs": n_in, "ok": n_ok, "dead_lettered": n_dead, "windows": k["windows"],
            "by_failure_kind": stats["by_failure_kind"], "by_stage": stats["by_stage"],
            "listed": c["listed"], "new": c["new"], "changed": c["changed"],
            "unchanged": c["unchanged"], "removed": c["removed"], "missing": k["missing"],
        },
        "balanced": balanced,
        # URI lists: the first LISTING.summary_max_uris in URI order (the counts are exact)
        "removed": run_plan.removed,
        "missing": stats["missing"],
        "in_both_outputs": stats["in_both_outputs"],
        "totals": stats["totals"],
        "partitions_rebuilt": c["touches"],
        "timings_s": timings,
        "metrics": metrics,
        "settings": settings,
        "embed_config": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in asdict(cfg).items()},
    }
    timings["finalize"] = round(time.perf_counter() - t0, 3)
    timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 3)
    storage.publish_text(f"{root}/{SUMMARY_NAME}", json.dumps(summary, indent=2, sort_keys=True)
                         + "\n")
    if balanced:
        storage.publish_text(f"{root}/{SUCCESS_NAME}", "")
    else:
        log.error("embed: inputs (%d) != ok (%d) + dead_lettered (%d); missing %s, in both %s - "
                  "no manifest / _SUCCESS written", n_in, n_ok, n_dead, stats["missing"][:5],
                  stats["in_both_outputs"][:5])
    return summary


def _remove_legacy_frames(layout: OutputLayout) -> None:
    """Remove frames files of the version-1 layout (``sensor=/day=``) left in the output.

    Only a full run gets here with such files (an --incremental run of a
    version-1 output is refused: its settings record the old schema version),
    and a full run rebuilds every partition anyway.
    """
    legacy = layout.legacy_frames_files()
    if legacy:
        log.warning("embed: removing %d frames file(s) of the old sensor=/day= layout (frames "
                    "schema version 1) under %s/frames", len(legacy), layout.root)
        for uri in legacy:
            remove_file(uri)


# --------------------------------------------------------------------------- entry points
def parse_args(argv: list[str] | None = None) -> tuple[EmbedConfig, list[str]]:
    """``sea pipeline embed`` flags -> (config, the remaining Beam flags).

    The application flags are read the way a Beam runner reads them (``EmbedOptions``,
    :func:`config_from_options`); the flags ``add_embed_arguments`` does not declare are
    the Beam flags.
    """
    argv = list(argv or [])
    parser = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    add_embed_arguments(parser)
    _, beam_args = parser.parse_known_args(argv)
    return config_from_options(PipelineOptions(argv)), beam_args


def run(cfg: EmbedConfig, beam_args: Sequence[str] = (), *, beam_jobs: bool = False) -> dict:
    """Run the pipeline; returns the run summary (also written to ``DIR/run_summary.json``).

    ``beam_args``: Beam pipeline flags (``--runner``, ...); the application settings are ``cfg``.
    On the in-process runner the plan and finalize steps run in this process; ``beam_jobs``
    runs them as Beam jobs there too (as on every other runner; tests compare the two).

    Raises
    ------
    ParameterError
        Missing / invalid flags, an --incremental run with other settings.
    DataError
        ``inputs != ok + dead_lettered`` (nothing may go missing), or the runner failed.
    """
    t_start = time.perf_counter()
    options = PipelineOptions(list(beam_args))
    resolved = _resolve(cfg)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    runner, label = select_runner(options)
    in_process = _in_process(runner) and not beam_jobs
    log.info("embed: plan and finalize %s", "in this process (in-process runner: no Beam job)"
             if in_process else f"as Beam jobs on {label}")
    # the listing and its guards come first: nothing is written or removed before
    run_plan = plan(cfg, resolved, runner=runner, options=options, run_id=run_id,
                    beam_job=not in_process)
    runner, label = select_runner(options)  # a fresh runner object for the embed job
    fs, root = storage.url_to_fs(resolved.layout.root)
    fs.makedirs(root, exist_ok=True)
    success = f"{root}/{SUCCESS_NAME}"
    if fs.exists(success):
        fs.rm(success)
    # the summary of this run from the start: a killed run does not leave the previous one
    storage.publish_text(f"{resolved.layout.root}/{SUMMARY_NAME}", json.dumps(
        {"run_id": run_id, "status": "running", "balanced": False, "input": cfg.input,
         "output": cfg.output}, indent=2, sort_keys=True) + "\n")
    removed_tmp = remove_temp_files(resolved.layout.root)
    if removed_tmp:
        log.warning("embed: removed %d temporary file(s) left by an interrupted run under %s",
                    removed_tmp, resolved.layout.root)
    if cfg.incremental:
        _, current = _precision_checked(_manifest_settings(resolved.layout.root),
                                        resolved.settings(cfg), cfg)
        resolved = replace(resolved, recorded_precision=current["teacher_precision"])
    _remove_legacy_frames(resolved.layout)
    timings = {"list": round(time.perf_counter() - t_start, 3)}
    nothing = run_plan.nothing
    metrics = None
    if nothing:
        log.info("embed: nothing new, changed or removed since the manifest; output unchanged")
        timings["pipeline"] = 0.0
    else:
        log.info("embed: %d to process (%d changed), %d unchanged, %d removed, %d partition(s) "
                 "to rebuild, teacher %s, runner %s", *(run_plan.counts[k] for k in (
                     "process", "changed", "unchanged", "removed", "touches")),
                 resolved.teacher_id, label)
        log.info("embed: teacher precision %s (--teacher-precision %s; %s)", resolved.precision,
                 cfg.teacher_precision, describe_cpu())
        t0 = time.perf_counter()
        p = beam.Pipeline(runner=runner, options=options)
        build(p, cfg, run_plan=run_plan, resolved=resolved)
        try:
            result = p.run()
            state = result.wait_until_finish()
        except BaseException:
            run_plan.cleanup()
            raise
        client = getattr(result, "client", None)  # DaskRunner's own dask Client: release it
        if client is not None and hasattr(client, "close"):
            client.close()
        if state is not None and str(state).split(".")[-1] not in ("DONE", "UNKNOWN"):
            raise DataError(f"pipeline ended in state {state} (runner {label})")
        timings["pipeline"] = round(time.perf_counter() - t0, 3)
        metrics = _metrics(result)
    summary = _finalize(cfg, resolved, run_plan, run_id=run_id, runner=label, timings=timings,
                        metrics=metrics, options=options, in_process=in_process)
    c = summary["counts"]
    log.info("embed: %d inputs = %d ok + %d dead-lettered, %d windows (%s) -> %s",
             c["inputs"], c["ok"], c["dead_lettered"], c["windows"], summary["teacher_id"],
             cfg.output)
    if not summary["balanced"]:
        raise DataError(f"{cfg.output}: inputs ({c['inputs']}) != ok ({c['ok']}) + dead_lettered "
                        f"({c['dead_lettered']}); see {SUMMARY_NAME}")
    return summary


def _help_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sea pipeline embed",
        description="Embed an upstream corpus with a teacher: frames (teacher embedding, SPL, "
                    "relevance, 8-kHz int16 student audio) as Parquet partitioned by sensor and "
                    "local day, dead letters, manifest, run summary. Any Beam pipeline option "
                    "is passed through (--runner, --direct_running_mode, --direct_num_workers, "
                    "--job_endpoint, --environment_type, --dask_client_address, Dataflow and "
                    "Flink flags); without --runner it runs in-process on Beam's FnApiRunner.")
    add_embed_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        _help_parser().print_help()
        return 0
    summary = run(*parse_args(argv))
    c = summary["counts"]
    print(f"{c['inputs']} inputs: {c['ok']} ok, {c['dead_lettered']} dead-lettered, "
          f"{c['windows']} windows -> {summary['output']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
