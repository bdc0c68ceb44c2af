"""Settings of ``sea pipeline embed`` (:mod:`pipelines.embed_corpus`): the config and its resolution.

:class:`EmbedConfig` holds the application settings of one run (everything but
the Beam flags), checked when built; :func:`config_from_options` reads them from
``EmbedOptions`` the way a Beam runner does. :func:`_resolve` turns a config into
what the job's transforms take (teacher id and precision, framing, SPL, teacher
and output-layout configs) and :meth:`_Resolved.settings` into what must not
change between an output and an ``--incremental`` refresh of it;
:func:`_precision_checked` is the teacher-precision rule of that refresh.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import EmbedOptions
from pipelines.transforms.decode import FramingConfig
from pipelines.transforms.spl import SplConfig
from pipelines.transforms.teacher import TeacherConfig
from pipelines.transforms.write import OutputLayout
from sea_core import storage
from sea_core.datasets.schema import DEAD_LETTER_SCHEMA_VERSION, FRAMES_SCHEMA_VERSION
from sea_core.errors import ParameterError
from sea_core.params import (AUDIO_LIMITS, DEFAULT_TEACHER, DISTILL_TEACHER_WINDOW, EMBED,
                             RELEVANCE, SPL, STUDENT_MEL64, TEACHER_BATCH_SIZE, TEACHER_NAMES,
                             RelevanceParams, check_teacher_window, teacher_window_name)

__all__ = ["EmbedConfig", "config_from_options"]


@dataclass(frozen=True)
class EmbedConfig:
    """Application settings of one embedding run (everything but the Beam flags)."""

    input: str
    output: str
    teacher: str = DEFAULT_TEACHER
    teacher_options: tuple = ()
    batch_size: int = TEACHER_BATCH_SIZE
    hop_seconds: float | None = None
    shard_size: int = EMBED.shard_size
    spl_sidecar: str | None = None
    require_sidecar: bool = False
    incremental: bool = False
    allow_removals: bool = False
    max_seconds: float = AUDIO_LIMITS.max_seconds
    teacher_window: str | None = None
    """aisfx analysis window ('1s' or '2.30s'); None = the distillation default (1 s).
    Other teachers accept only their own window."""
    teacher_precision: str = EMBED.teacher_precision
    """'auto' | 'fp32' | 'bf16' (auto: bf16 on a CPU with AMX-BF16 / AVX512-BF16)."""
    allow_mixed_precision: bool = False
    sensors_csv: str | None = None
    """Per-sensor calibration (issue 18); None: ``sensors.csv`` next to the corpus, if any."""

    def __post_init__(self):
        if not self.input:
            raise ParameterError("--input is required (a glob, a directory or a manifest of URIs)")
        if not self.output:
            raise ParameterError("--output is required (an output directory)")
        # local relative paths -> absolute (workers may run in another directory); URLs unchanged
        for name in ("input", "output", "spl_sidecar", "sensors_csv"):
            if getattr(self, name):
                object.__setattr__(self, name, storage.absolute(getattr(self, name)))
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
    teacher = o.teacher if o.teacher in TEACHER_NAMES else _absolute(o.teacher)
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
    relevance: RelevanceParams = RELEVANCE
    """Time zone of the local days, relevance bins (not framing: used to name partitions)."""
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
                "calibration_db": self.spl.calibration_db, "timezone": self.relevance.timezone,
                "bin_hours": self.relevance.bin_hours, "per_sensor": self.relevance.per_sensor,
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
    # The network is not built here (it is built once per worker), but creating the teacher
    # resolves its weights: aisfx downloads and converts them on first use (`pip download`,
    # cached), L3 / a Keras file are hashed for the teacher id. 'auto' precision is resolved
    # here, on the machine that launches the run, and every worker then uses that precision.
    teacher = get_teacher(cfg.teacher, precision=cfg.teacher_precision, **dict(options))
    spec = teacher.spec
    if cfg.teacher != "aisfx" and cfg.teacher_window is not None:
        try:
            check_teacher_window(spec, cfg.teacher_window, cfg.teacher)
        except ParameterError as exc:
            raise ParameterError(f"--teacher-window {cfg.teacher_window}: {exc}") from None
    hop = float(cfg.hop_seconds if cfg.hop_seconds is not None else spec.corpus_hop_seconds)
    framing = FramingConfig(teacher=spec, hop_seconds=hop, student_sr=STUDENT_MEL64.sample_rate,
                            max_seconds=float(cfg.max_seconds))
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
