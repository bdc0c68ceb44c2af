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
the shape is correct on every runner, DaskRunner included. After the
pipeline the driver reads back what was written, checks
``inputs == ok + dead_lettered``, and writes ``manifest.parquet``,
``run_summary.json`` and finally ``_SUCCESS``.

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
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import EmbedOptions, add_embed_arguments
from pipelines.runners import select_runner
from pipelines.transforms.decode import DecodeAndFrame, FramingConfig
from pipelines.transforms.list_inputs import ListInputs, list_inputs_in_beam, make_units, stage_units
from pipelines.transforms.manifest import (ManifestRow, Plan, check_settings, plan_run,
                                           read_manifest, write_manifest)
from pipelines.transforms.records import (DEAD_LETTER_KEY, METRICS_NAMESPACE, frames_key,
                                          parse_recording_path)
from pipelines.transforms.relevance import GroupByPartition, ScoreConfig, ScoreRelevance
from pipelines.transforms.spl import ComputeSpl, SplConfig
from pipelines.transforms.teacher import TeacherConfig, TeacherInference
from pipelines.transforms.write import (OutputLayout, WritePartitions, read_table_or_none, remove_file,
                                        remove_temp_files)
from sea_core.datasets.layout import (LISTING_STAGING_PREFIX, MANIFEST_NAME, STAGING_DIR, SUCCESS_NAME,
                                      UNITS_STAGING_PREFIX)
from sea_core.datasets.layout import RUN_SUMMARY_NAME as SUMMARY_NAME
from sea_core.errors import AudioError, DataError, ParameterError
from sea_core.params import (AISFX_FRONTEND, AISFX_WINDOWS, AUDIO_LIMITS, DISTILL_TEACHER_WINDOW,
                             LISTING, RELEVANCE, SPL, STUDENT_MEL64, teacher_window_name)
from sea_core.precision import cpu_bf16_flags, describe_cpu
from sea_core.datasets.schema import DEAD_LETTER_SCHEMA_VERSION, FRAMES_SCHEMA_VERSION

__all__ = ["EmbedConfig", "config_from_options", "build", "plan", "run", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedConfig:
    """Application settings of one embedding run (everything but the Beam flags)."""

    input: str
    output: str
    teacher: str = "aisfx"
    teacher_options: tuple = ()
    batch_size: int = 32
    hop_seconds: float | None = None
    shard_size: int = 16
    spl_sidecar: str | None = None
    require_sidecar: bool = False
    incremental: bool = False
    allow_removals: bool = False
    max_seconds: float = AUDIO_LIMITS.max_seconds
    teacher_window: str | None = None
    """aisfx analysis window ('1s' or '2.30s'); None = the distillation default (1 s).
    Other teachers accept only their own window."""
    teacher_precision: str = "auto"
    """'auto' | 'fp32' | 'bf16' (auto: bf16 on a CPU with AMX-BF16 / AVX512-BF16)."""
    allow_mixed_precision: bool = False
    sensors_csv: str | None = None
    """Per-sensor calibration (issue 18); None: ``sensors.csv`` next to the corpus, if any."""

    def __post_init__(self):
        if not self.input:
            raise ParameterError("--input is required (a glob, a directory or a manifest of URIs)")
        if not self.output:
            raise ParameterError("--output is required (an output directory)")
        for name in ("batch_size", "shard_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"--{name.replace('_', '-')} must be a positive integer, "
                                     f"got {v!r}")
        if self.hop_seconds is not None and not (self.hop_seconds > 0):
            raise ParameterError(f"--hop-seconds must be > 0, got {self.hop_seconds!r}")
        if not (isinstance(self.max_seconds, (int, float)) and not isinstance(self.max_seconds, bool)
                and self.max_seconds > 0 and self.max_seconds != float("inf")):
            raise ParameterError(f"--max-seconds must be a positive number of seconds, "
                                 f"got {self.max_seconds!r}")
        if "://" not in self.output and os.path.exists(self.output) \
                and not os.path.isdir(self.output):
            raise ParameterError(f"--output {self.output}: exists and is not a directory")
        if self.require_sidecar and not self.spl_sidecar:
            raise ParameterError("--require-sidecar needs --spl-sidecar DIR")
        from sea_core.precision import PRECISIONS
        if self.teacher_precision not in PRECISIONS:
            raise ParameterError(f"--teacher-precision must be one of {', '.join(PRECISIONS)}, "
                                 f"got {self.teacher_precision!r}")
        if any(k == "precision" for k, _ in self.teacher_options):
            raise ParameterError("give the teacher precision with --teacher-precision, not "
                                 "--teacher-opt precision=...")


def _parse_teacher_opts(items) -> tuple:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ParameterError(f"--teacher-opt expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            val = int(v)
        except ValueError:
            try:
                val = float(v)
            except ValueError:
                val = v
        out[k.strip()] = val
    return tuple(sorted(out.items()))


def _absolute(uri: str | None) -> str | None:
    """Local relative paths -> absolute (workers may run in another directory); URLs unchanged."""
    if not uri or "://" in uri:
        return uri
    return os.path.abspath(os.path.expanduser(uri))


def config_from_options(options: PipelineOptions) -> EmbedConfig:
    o = options.view_as(EmbedOptions)
    teacher = o.teacher if o.teacher in ("aisfx", "l3", "l3-random") else _absolute(o.teacher)
    return EmbedConfig(input=_absolute(o.input), output=_absolute(o.output), teacher=teacher,
                       teacher_options=_parse_teacher_opts(o.teacher_opt),
                       batch_size=o.batch_size, hop_seconds=o.hop_seconds,
                       shard_size=o.shard_size, spl_sidecar=_absolute(o.spl_sidecar),
                       require_sidecar=bool(o.require_sidecar), incremental=bool(o.incremental),
                       allow_removals=bool(o.allow_removals),
                       max_seconds=(AUDIO_LIMITS.max_seconds if o.max_seconds is None
                                    else o.max_seconds),
                       teacher_window=o.teacher_window,
                       teacher_precision=o.teacher_precision or "auto",
                       allow_mixed_precision=bool(o.allow_mixed_precision),
                       sensors_csv=_absolute(getattr(o, "sensors_csv", None)))


def _teacher_options(cfg: EmbedConfig) -> tuple:
    """``teacher_options`` plus the aisfx window (default: 1 s for distillation)."""
    opts = dict(cfg.teacher_options)
    if cfg.teacher == "aisfx":
        if cfg.teacher_window is not None and "window" in opts and \
                teacher_window_name(opts["window"]) != teacher_window_name(cfg.teacher_window):
            raise ParameterError(f"--teacher-window {cfg.teacher_window} and --teacher-opt "
                                 f"window={opts['window']} disagree")
        opts["window"] = teacher_window_name(opts.get("window") or cfg.teacher_window
                                             or DISTILL_TEACHER_WINDOW)
    return tuple(sorted(opts.items()))


@dataclass(frozen=True)
class _Resolved:
    teacher_id: str
    precision: str
    framing: FramingConfig
    spl: SplConfig
    teacher: TeacherConfig
    layout: OutputLayout
    recorded_precision: str | None = None
    """What the output records when an --incremental run mixed precisions (e.g. 'bf16+fp32')."""

    def settings(self, cfg: EmbedConfig) -> dict:
        """What must not change between an output and an --incremental refresh of it."""
        f = self.framing
        return {"teacher_id": self.teacher_id, "teacher_sample_rate": f.teacher_sr,
                "teacher_window_samples": f.teacher_window, "hop_seconds": f.hop_seconds,
                "center": f.center, "student_sample_rate": f.student_sr,
                "student_window_samples": f.student_window, "batch_size": cfg.batch_size,
                "spl_sidecar": bool(cfg.spl_sidecar), "require_sidecar": cfg.require_sidecar,
                "calibration_db": self.spl.calibration_db, "timezone": f.relevance.timezone,
                "bin_hours": f.relevance.bin_hours, "per_sensor": f.relevance.per_sensor,
                "teacher_precision": self.recorded_precision or self.precision,
                "frames_schema_version": FRAMES_SCHEMA_VERSION,
                "dead_letter_schema_version": DEAD_LETTER_SCHEMA_VERSION,
                # per-sensor calibration (issue 18): only when a sensors.csv gave one
                **({"calibration_db_by_sensor": dict(self.spl.calibration_by_sensor)}
                   if self.spl.calibration_by_sensor else {})}


def _resolve(cfg: EmbedConfig) -> _Resolved:
    from sea_core.models.teachers import get_teacher
    from sea_core.sensors import embed_calibration

    options = _teacher_options(cfg)
    # config only: no network yet; 'auto' is resolved here, on the machine that launches the run,
    # and every worker then uses that precision
    teacher = get_teacher(cfg.teacher, precision=cfg.teacher_precision, **dict(options))
    spec = teacher.spec
    if cfg.teacher != "aisfx" and cfg.teacher_window is not None and \
            abs(AISFX_WINDOWS[teacher_window_name(cfg.teacher_window)] / AISFX_FRONTEND.sample_rate
                - spec.window_seconds) > 1e-3:
        raise ParameterError(f"--teacher-window {cfg.teacher_window}: teacher {cfg.teacher!r} takes "
                             f"{spec.window_seconds:g}-s windows only")
    hop = float(cfg.hop_seconds if cfg.hop_seconds is not None else spec.corpus_hop_seconds)
    framing = FramingConfig(teacher_sr=spec.sample_rate, teacher_window=spec.window_samples,
                            hop_seconds=hop, student_sr=STUDENT_MEL64.sample_rate,
                            relevance=RELEVANCE, max_seconds=float(cfg.max_seconds))
    spl = SplConfig(teacher_sr=spec.sample_rate, window_seconds=framing.window_seconds,
                    sidecar_dir=cfg.spl_sidecar, require_sidecar=cfg.require_sidecar,
                    calibration_db=SPL.calibration_db,
                    calibration_by_sensor=embed_calibration(cfg.sensors_csv, cfg.input))
    return _Resolved(teacher_id=teacher.teacher_id, precision=teacher.precision, framing=framing,
                     spl=spl,
                     teacher=TeacherConfig(name=str(cfg.teacher), options=options,
                                           batch_size=cfg.batch_size, precision=teacher.precision),
                     layout=OutputLayout(root=cfg.output.rstrip("/"), emb_dim=spec.emb_dim,
                                         student_samples=framing.student_window))


def _precision_checked(previous: dict | None, current: dict, cfg: EmbedConfig) -> tuple:
    """Settings to compare for --incremental: a teacher precision other than the output's is
    refused (outputs written before precisions were recorded are fp32) unless
    --allow-mixed-precision, which records the mix (e.g. 'bf16+fp32')."""
    if previous is None:
        return previous, current
    previous = dict(previous)
    before = previous.setdefault("teacher_precision", "fp32")
    now = current["teacher_precision"]
    if before != now:
        if not cfg.allow_mixed_precision:
            raise ParameterError(
                f"--incremental: the existing output was embedded with teacher precision "
                f"{before!r}, this run would use {now!r}; pass --teacher-precision "
                f"{before.split('+')[0]} to match it, --allow-mixed-precision to mix them, or run "
                "without --incremental to rebuild")
        mixed = "+".join(sorted(set(before.split("+")) | {now}))
        previous["teacher_precision"] = current["teacher_precision"] = mixed
    return previous, current


def _manifest_settings(root: str) -> dict | None:
    """The settings recorded in ``root``'s manifest (its Parquet footer only), or None."""
    fs, path = fsspec.core.url_to_fs(f"{root}/{MANIFEST_NAME}")
    if not fs.isfile(path):
        return None
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return json.loads(meta[b"sea.settings"]) if b"sea.settings" in meta else None


def _listing_staging(cfg: EmbedConfig, options: PipelineOptions | None, run_id: str,
                     in_process: bool = False) -> str:
    """Where the listing job's workers write their result: a local temporary directory for
    an in-process listing or a local output, ``--temp_location`` when given, else
    ``DIR/_staging/``."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    if in_process:
        import tempfile
        return os.path.join(tempfile.mkdtemp(prefix="sea-listing-"), "listing")
    temp = options.view_as(GoogleCloudOptions).temp_location if options is not None else None
    if temp:
        return f"{temp.rstrip('/')}/sea-listing-{run_id}"
    if "://" not in cfg.output or cfg.output.startswith("file://"):
        import tempfile
        return os.path.join(tempfile.mkdtemp(prefix="sea-listing-"), "listing")
    return f"{cfg.output.rstrip('/')}/{STAGING_DIR}/{LISTING_STAGING_PREFIX}-{run_id}"


def plan(cfg: EmbedConfig, resolved: _Resolved | None = None, *, runner=None,
         options: PipelineOptions | None = None, run_id: str | None = None) -> Plan:
    """List the inputs (inside a Beam pipeline) and decide what this run processes.

    Reads the previous manifest. Raises before anything is written or removed:
    "input not found", "no input matches", an --incremental run with other
    settings or one that would remove too much (:func:`check_removals`).
    """
    resolved = resolved or _resolve(cfg)
    previous, settings = read_manifest(f"{resolved.layout.root}/{MANIFEST_NAME}")
    if cfg.incremental:
        check_settings(*_precision_checked(settings, resolved.settings(cfg), cfg))
    run_id = run_id or uuid.uuid4().hex[:12]
    staging = _listing_staging(cfg, options, run_id, in_process=runner is None)
    listed = list_inputs_in_beam(cfg.input, staging=staging, runner=runner, options=options)
    run_plan = plan_run(listed, previous, incremental=cfg.incremental,
                        keys_on_disk=resolved.layout.frames_keys_on_disk(),
                        params=resolved.framing.relevance)
    if run_plan.incremental:
        check_removals(len(run_plan.removed), len(previous), allow=cfg.allow_removals,
                       where=cfg.input)
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


def build(p: beam.Pipeline, cfg: EmbedConfig, *, run_plan: Plan | None = None,
          resolved: _Resolved | None = None, units_url: str | None = None) -> beam.PCollection:
    """Add the embedding pipeline to ``p``; returns the sink's per-partition results.

    The work units are staged at ``units_url`` (``run`` passes ``DIR/_staging/units-<run>.parquet``,
    which every worker reaches); without it they are staged in a local temporary
    directory - enough for in-process runners and for inspecting the graph. The
    graph holds only that URL, never the listing. The last transform added is the
    sink (DaskRunner evaluates only the last one).
    """
    resolved = resolved or _resolve(cfg)
    run_plan = run_plan or plan(cfg, resolved)
    units = make_units(run_plan.process, run_plan.touches, cfg.shard_size)
    if units_url is None:
        import tempfile
        units_url = os.path.join(tempfile.mkdtemp(prefix="sea-units-"), "units.parquet")
    stage_units(units, units_url)
    return (p
            | "ListInputs" >> ListInputs(units_url)
            | "DecodeAndFrame" >> DecodeAndFrame(resolved.framing)
            | "ComputeSpl" >> ComputeSpl(resolved.spl)
            | "TeacherInference" >> TeacherInference(resolved.teacher)
            | "GroupByPartition" >> GroupByPartition()
            | "ScoreRelevance" >> ScoreRelevance(ScoreConfig(layout=resolved.layout,
                                                             teacher_id=resolved.teacher_id,
                                                             teacher_precision=resolved.precision,
                                                             relevance=resolved.framing.relevance))
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


def _processed_state(run_plan: Plan, layout: OutputLayout) -> tuple[dict, dict]:
    """(uri -> (recording_id, windows, key)) of processed ok inputs, (uri -> dead row) of dead ones."""
    process = {f.uri for f in run_plan.process}
    keys = set()
    for u in process:
        try:
            n = parse_recording_path(u)
            keys.add(frames_key(n.sensor, n.day))
        except AudioError:
            pass
    ok: dict[str, tuple] = {}
    for key in sorted(keys):
        t = read_table_or_none(layout.path(key), columns=["uri", "recording_id", "window_index"])
        if t is None or t.num_rows == 0:
            continue
        g = t.group_by(["uri", "recording_id"]).aggregate([("window_index", "count")])
        for uri, rid, n in zip(g.column("uri").to_pylist(), g.column("recording_id").to_pylist(),
                               g.column("window_index_count").to_pylist()):
            if uri in process:
                ok[uri] = (rid, int(n), key)
    dead: dict[str, dict] = {}
    t = read_table_or_none(layout.path(DEAD_LETTER_KEY))
    if t is not None:
        for row in t.to_pylist():
            if row["uri"] in process:
                dead.setdefault(row["uri"], row)
    return ok, dead


def _write_text_atomic(uri: str, text: str) -> None:
    fs, path = fsspec.core.url_to_fs(uri)
    parent, name = path.rsplit("/", 1)
    fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.mv(tmp, path)


def _finalize(cfg: EmbedConfig, resolved: _Resolved, run_plan: Plan, *, run_id: str,
              runner: str, timings: dict, metrics: dict | None) -> dict:
    t0 = time.perf_counter()
    layout = resolved.layout
    ok, dead = _processed_state(run_plan, layout)
    listed = {f.uri: f for f in run_plan.listed}
    rows: dict[str, ManifestRow] = {u: run_plan.previous[u] for u in run_plan.unchanged}
    missing, both = [], sorted(set(ok) & set(dead))
    for f in run_plan.process:
        if f.uri in ok:
            rid, n, key = ok[f.uri]
            rows[f.uri] = ManifestRow(uri=f.uri, size=f.size, version=f.version, content_hash=rid,
                                      run_id=run_id, status="ok", sensor=key[1], day=key[2],
                                      windows=n)
        elif f.uri in dead:
            rows[f.uri] = ManifestRow(uri=f.uri, size=f.size, version=f.version,
                                      content_hash=None, run_id=run_id, status="dead",
                                      sensor=None, day=None, windows=0)
        else:
            missing.append(f.uri)
    n_in = len(run_plan.process)
    n_ok = sum(1 for f in run_plan.process if f.uri in ok)
    n_dead = sum(1 for f in run_plan.process if f.uri in dead and f.uri not in ok)
    balanced = (n_in == n_ok + n_dead) and not missing and not both
    kinds = Counter(d["error_kind"] for d in dead.values())
    stages = Counter(d["stage"] for d in dead.values())
    total_ok = [r for r in rows.values() if r.status == "ok"]
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
            "inputs": n_in, "ok": n_ok, "dead_lettered": n_dead,
            "windows": sum(ok[u][1] for u in ok),
            "by_failure_kind": dict(sorted(kinds.items())),
            "by_stage": dict(sorted(stages.items())),
            "listed": len(listed), "new": n_in - len(run_plan.changed),
            "changed": len(run_plan.changed), "unchanged": len(run_plan.unchanged),
            "removed": len(run_plan.removed), "missing": len(missing),
        },
        "balanced": balanced,
        "removed": run_plan.removed,
        "missing": missing,
        "in_both_outputs": both,
        "totals": {"recordings_ok": len(total_ok),
                   "recordings_dead": sum(1 for r in rows.values() if r.status == "dead"),
                   "windows": sum(r.windows for r in total_ok),
                   "partitions": len({(r.sensor, r.day) for r in total_ok})},
        "partitions_rebuilt": len(run_plan.touches),
        "timings_s": timings,
        "metrics": metrics,
        "settings": resolved.settings(cfg),
        "embed_config": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in asdict(cfg).items()},
    }
    root = layout.root
    if balanced:
        write_manifest(f"{root}/{MANIFEST_NAME}", rows, resolved.settings(cfg))
    timings["finalize"] = round(time.perf_counter() - t0, 3)
    timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 3)
    _write_text_atomic(f"{root}/{SUMMARY_NAME}", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if balanced:
        _write_text_atomic(f"{root}/{SUCCESS_NAME}", "")
    else:
        log.error("embed: inputs (%d) != ok (%d) + dead_lettered (%d); missing %s, in both %s - "
                  "no manifest / _SUCCESS written", n_in, n_ok, n_dead, missing[:5], both[:5])
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
def run(argv: list[str] | None = None, *, options: PipelineOptions | None = None) -> dict:
    """Run the pipeline; returns the run summary (also written to ``DIR/run_summary.json``).

    ``argv`` holds the application flags (see ``--help``) and any Beam flags.

    Raises
    ------
    ParameterError
        Missing / invalid flags, an --incremental run with other settings.
    DataError
        ``inputs != ok + dead_lettered`` (nothing may go missing), or the runner failed.
    """
    t_start = time.perf_counter()
    options = options or PipelineOptions(list(argv or []))
    cfg = config_from_options(options)
    resolved = _resolve(cfg)
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    runner, label = select_runner(options)
    # the listing (a Beam job) and its guards come first: nothing is written or removed before
    run_plan = plan(cfg, resolved, runner=runner, options=options, run_id=run_id)
    runner, label = select_runner(options)  # a fresh runner object for the embed job
    fs, root = fsspec.core.url_to_fs(resolved.layout.root)
    fs.makedirs(root, exist_ok=True)
    success = f"{root}/{SUCCESS_NAME}"
    if fs.exists(success):
        fs.rm(success)
    # the summary of this run from the start: a killed run does not leave the previous one
    _write_text_atomic(f"{resolved.layout.root}/{SUMMARY_NAME}", json.dumps(
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
    nothing = (run_plan.incremental and not run_plan.process and not run_plan.removed
               and run_plan.touched_keys == {DEAD_LETTER_KEY})
    metrics = None
    if nothing:
        log.info("embed: nothing new, changed or removed since the manifest; output unchanged")
        timings["pipeline"] = 0.0
    else:
        log.info("embed: %d to process (%d changed), %d unchanged, %d removed, %d partition(s) "
                 "to rebuild, teacher %s, runner %s", len(run_plan.process),
                 len(run_plan.changed), len(run_plan.unchanged), len(run_plan.removed),
                 len(run_plan.touches), resolved.teacher_id, label)
        log.info("embed: teacher precision %s (--teacher-precision %s; %s)", resolved.precision,
                 cfg.teacher_precision, describe_cpu())
        t0 = time.perf_counter()
        p = beam.Pipeline(runner=runner, options=options)
        units_url = f"{resolved.layout.root}/{STAGING_DIR}/{UNITS_STAGING_PREFIX}-{run_id}.parquet"
        build(p, cfg, run_plan=run_plan, resolved=resolved, units_url=units_url)
        try:
            result = p.run()
            state = result.wait_until_finish()
        finally:
            if fs.exists(f"{root}/{STAGING_DIR}"):
                fs.rm(f"{root}/{STAGING_DIR}", recursive=True)
        client = getattr(result, "client", None)  # DaskRunner's own dask Client: release it
        if client is not None and hasattr(client, "close"):
            client.close()
        if state is not None and str(state).split(".")[-1] not in ("DONE", "UNKNOWN"):
            raise DataError(f"pipeline ended in state {state} (runner {label})")
        timings["pipeline"] = round(time.perf_counter() - t0, 3)
        metrics = _metrics(result)
    summary = _finalize(cfg, resolved, run_plan, run_id=run_id, runner=label, timings=timings,
                        metrics=metrics)
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
    summary = run(argv)
    c = summary["counts"]
    print(f"{c['inputs']} inputs: {c['ok']} ok, {c['dead_lettered']} dead-lettered, "
          f"{c['windows']} windows -> {summary['output']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
