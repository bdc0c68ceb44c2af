"""`sea plan`: capacity model of a SONYC-scale corpus (windows, bytes, compute hours, cost).

Every number is a formula of the scenario (sensors, years, clip interval), the
teacher's framing (``TeacherSpec``: window, corpus hop, centred as the
pipeline frames it), the Parquet schemas (``sea_core.datasets.schema``) and the
throughputs measured by ``benchmarks/models.py``
(``benchmarks/results/models.json``). Where no measurement exists the
stated default of :data:`sea_core.params.CAPACITY` is used and the report says
so. docs/scaling.md walks through the default scenario.

>>> from sea_core.plan import Scenario, plan
>>> report = plan(Scenario(sensors=50, years=3, clip_interval_s=300))   # doctest: +SKIP
>>> report["corpus"]["windows"]                                          # doctest: +SKIP
141912000
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sea_core.errors import ParameterError
from sea_core.params import (CAPACITY, REDUCTION, SAMPLING, STUDENT_EMB_DIMS, STUDENT_MEL64,
                             STUDENT_PARAM_COUNTS, TEACHERS, TRAIN, TRAINING_SET, CapacityParams,
                             TeacherSpec)

__all__ = ["Scenario", "Throughputs", "windows_per_clip", "load_throughputs", "plan",
           "format_report", "main", "DEFAULT_MODELS_JSON", "MACHINE_TYPES", "MachineType",
           "DEFAULT_MACHINE"]

DEFAULT_MODELS_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "models.json"
"""Where ``benchmarks/models.py`` writes its measurements."""
PRECISION_JSON_NAME = "models_bf16.json"
"""A ``benchmarks/models.py`` run with fp32 and bf16 back to back, beside ``models.json``: when
``models.json`` has no bf16 rows, its bf16/fp32 ratio (same run, same batch) scales the fp32 rate."""

_INTEGRAL_TOL = 1e-9  # the same tolerance as sea_core.audio.framing
_SECONDS_PER_DAY = 86_400
_DAYS_PER_YEAR = 365
_EMB_BYTES = 4       # float32
_AUDIO_BYTES = 2     # int16
_PCA_BYTES = 8       # float64


@dataclass(frozen=True)
class MachineType:
    """A class of cloud CPU the teacher stage may run on, and how its rate is obtained."""

    precision: str
    """Teacher precision ``--teacher-precision auto`` picks there."""
    examples: str
    bf16_flags: str
    assumed_speedup: float | None = None
    """bf16 / fp32 teacher speed-up applied to the measured fp32 rate (an assumption, not
    measured on the benchmark machine); None: the measured rate of ``precision`` is used."""
    assumed_source: str = ""


MACHINE_TYPES: dict[str, MachineType] = {
    "no-bf16": MachineType(
        precision="fp32", bf16_flags="neither amx_bf16 nor avx512_bf16",
        examples="GCP N2 / N1 / C2 / N2D, AWS m6i / c6i / m5 / m6a (Ice Lake, Cascade Lake, "
                 "AMD Zen 2/3)"),
    "avx512-bf16": MachineType(
        precision="bf16", bf16_flags="avx512_bf16, no AMX",
        examples="AMD Zen 4 (EPYC Genoa): GCP C3D, AWS m7a / c7a - the benchmark machine's kind"),
    "amx-bf16": MachineType(
        precision="bf16", bf16_flags="amx_bf16 + avx512_bf16",
        examples="Intel Sapphire / Emerald Rapids: GCP C3 / C4, AWS m7i / c7i / r7i",
        assumed_speedup=2.35,
        assumed_source="assumed: 2.35x bf16/fp32 for aisfx measured on an AMX-BF16 CPU "
                       "(docs dependencies.md section 8), not on the benchmark machine"),
}
"""Machine types ``sea plan`` can assume (``--machine``)."""

DEFAULT_MACHINE = "avx512-bf16"
"""Measured (bf16 on AVX512-BF16); an AMX-BF16 machine is at least as fast (``--machine amx-bf16``)."""


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """What is planned for: the corpus, the teacher and the prices."""

    sensors: int = CAPACITY.sensors
    years: float = CAPACITY.years
    clip_interval_s: float = CAPACITY.clip_interval_s
    teacher: str = "aisfx"
    refresh_days: int = CAPACITY.refresh_days
    gpu_speedup: float = CAPACITY.gpu_speedup
    cost_cpu_hour: float = CAPACITY.cost_cpu_hour
    cost_gpu_hour: float = CAPACITY.cost_gpu_hour
    select_fraction: float = SAMPLING.default_fraction
    dims: tuple[int, ...] = REDUCTION.dims
    train_emb_dims: tuple[int, ...] = (128,)
    """Students trained per refresh."""
    epochs: int = TRAIN.epochs
    steps_per_epoch: int | None = None
    """None = ``sea train``'s default epoch (``sea_core.train.epoch_steps``: TRAIN.steps_per_epoch
    steps, or one pass when the training split is smaller)."""
    batch_size: int = TRAIN.batch_size

    def check(self) -> "Scenario":
        """Raise ParameterError on a value that makes no sense; return self."""
        positive = {"sensors": self.sensors, "years": self.years,
                    "clip_interval_s": self.clip_interval_s, "gpu_speedup": self.gpu_speedup,
                    "epochs": self.epochs, "batch_size": self.batch_size}
        if self.steps_per_epoch is not None:
            positive["steps_per_epoch"] = self.steps_per_epoch
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be > 0, got {value!r}")
        for name in ("cost_cpu_hour", "cost_gpu_hour", "refresh_days"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ParameterError(f"{name} must be >= 0, got {value!r}")
        if self.teacher not in TEACHERS:
            raise ParameterError(f"teacher must be one of {sorted(TEACHERS)}, got {self.teacher!r}")
        if not 0 < self.select_fraction <= 1:
            raise ParameterError(f"select_fraction must be in (0, 1], got {self.select_fraction!r}")
        if self.clip_interval_s < CAPACITY.clip_seconds:
            raise ParameterError(f"clip_interval_s ({self.clip_interval_s}) is shorter than a clip "
                                 f"({CAPACITY.clip_seconds} s)")
        bad = [d for d in self.train_emb_dims if d not in STUDENT_EMB_DIMS]
        if bad:
            raise ParameterError(f"train_emb_dims must be among {STUDENT_EMB_DIMS}, got {bad}")
        return self


@dataclass(frozen=True, kw_only=True)
class Throughputs:
    """Windows/s per vCPU (float32, batch ``CAPACITY.benchmark_batch``) and where they come from."""

    teacher_fps_per_vcpu: float
    student_fps_per_vcpu: dict[int, float]
    source: str
    """'measured: <file> (...)' or 'default: ...'."""
    measured: bool
    notes: tuple[str, ...] = field(default=())
    machine: str | None = None
    """Key of :data:`MACHINE_TYPES` the teacher rate is for (None: given directly)."""
    precision: str = "fp32"
    """Teacher precision of the rate."""
    student_window_samples: int | None = None
    """8-kHz window the student rates were measured at (None: the planned teacher's window).
    Rates are rescaled linearly to the planned student window (cost ~ frames)."""


def windows_per_clip(clip_seconds: float, spec: TeacherSpec, *, hop_seconds: float | None = None,
                     center: bool = True) -> int:
    """Windows ``frame_audio`` cuts from one clip: ``1 + ceil((L - W) / hop)``.

    ``L`` is the clip length in samples plus ``W // 2`` when centred, ``W`` the
    teacher window, ``hop`` the corpus hop in samples (``spec.corpus_hop_seconds``
    unless given). Same formula and tolerance as ``sea_core.audio.framing``.
    """
    sr = spec.sample_rate
    w = spec.window_samples
    n = int(round(clip_seconds * sr))
    if n < w:
        raise ParameterError(f"a {clip_seconds}-s clip is shorter than one {spec.name} window "
                             f"({w / sr:.3f} s)")
    hop = (spec.corpus_hop_seconds if hop_seconds is None else hop_seconds) * sr
    length = n + (w // 2 if center else 0)
    return 1 + max(0, math.ceil((length - w) / hop - _INTEGRAL_TOL))


def _student_window_samples(spec: TeacherSpec) -> int:
    """8-kHz int16 samples stored per window (student window = teacher window, ARCHITECTURE.md)."""
    return int(round(spec.window_seconds * STUDENT_MEL64.sample_rate))


def load_throughputs(path: str | Path | None = DEFAULT_MODELS_JSON, *, teacher: str = "aisfx",
                     params: CapacityParams = CAPACITY, machine: str = "no-bf16") -> Throughputs:
    """Measured windows/s per vCPU from ``benchmarks/models.py``'s JSON, else stated defaults.

    The benchmark ran with TensorFlow using all ``machine.cpu_count`` cores, so
    per-vCPU = measured / cpu_count (linear scaling assumed; the machine was
    shared, so this under-estimates a dedicated vCPU). ``machine`` (a key of
    :data:`MACHINE_TYPES`) picks the rows of its teacher precision (rows without a
    ``precision`` are fp32); a machine type with an ``assumed_speedup`` uses the
    measured fp32 rate times that factor (or the measured bf16 rate if higher) and
    says so in ``notes``.
    """
    if machine not in MACHINE_TYPES:
        raise ParameterError(f"machine must be one of {sorted(MACHINE_TYPES)}, got {machine!r}")
    mt = MACHINE_TYPES[machine]
    default = Throughputs(
        teacher_fps_per_vcpu=params.default_teacher_fps_per_vcpu,
        student_fps_per_vcpu={d: params.default_student_fps_per_vcpu for d in STUDENT_EMB_DIMS},
        source=f"default: no measurement at {path} (run benchmarks/models.py); "
               f"CapacityParams defaults used (fp32)", measured=False, machine=machine,
        precision="fp32")
    if path is None or not Path(path).is_file():
        return default
    try:
        data = json.loads(Path(path).read_text())
        cores = float(data["machine"]["cpu_count"])
        rows = data["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Throughputs(**{**asdict(default), "source": f"default: {path} unreadable ({exc})"})
    batch = params.benchmark_batch

    def row(kind: str, name: str, precision: str = "fp32") -> dict | None:
        for r in rows:
            if r.get("kind") == kind and str(r.get("name")) == name and r.get("batch") == batch \
                    and r.get("precision", "fp32") == precision:
                return r
        return None

    def pick(kind: str, name: str, precision: str = "fp32") -> float | None:
        r = row(kind, name, precision)
        return None if r is None else float(r["windows_per_s"]) / cores

    def teacher_rate(precision: str) -> float | None:
        # 'l3' and 'l3-random' are the same network (only the weights differ): same cost
        names = (teacher, *(("l3-random", "l3") if teacher.startswith("l3") else ()))
        return next((v for v in (pick("teacher", n, precision) for n in names) if v is not None),
                    None)

    notes = []
    teacher_fps = teacher_rate(mt.precision if mt.assumed_speedup is None else "fp32")
    precision = mt.precision
    if teacher_fps is None and mt.precision == "bf16" and mt.assumed_speedup is None:
        ratio = _bf16_ratio(Path(path).with_name(PRECISION_JSON_NAME), teacher, batch)
        base = teacher_rate("fp32")
        if ratio is not None and base is not None:
            teacher_fps = base * ratio
            notes.append(f"machine {machine}: teacher rate = measured fp32 x {ratio:.2f}, the "
                         f"bf16/fp32 ratio measured back to back in {PRECISION_JSON_NAME}")
    if teacher_fps is not None and mt.assumed_speedup is not None:
        measured_bf16 = teacher_rate("bf16")
        teacher_fps *= mt.assumed_speedup
        notes.append(f"machine {machine}: teacher rate = measured fp32 x {mt.assumed_speedup:g} "
                     f"({mt.assumed_source})")
        if measured_bf16 is not None and measured_bf16 > teacher_fps:
            teacher_fps = measured_bf16
            notes.append(f"machine {machine}: the measured bf16 rate (AVX512-BF16) is higher "
                         "and is used instead")
    if teacher_fps is None:
        teacher_fps = params.default_teacher_fps_per_vcpu
        precision = "fp32"
        notes.append(f"teacher {teacher!r} not in {path} ({mt.precision} rows): default "
                     f"{teacher_fps} windows/s/vCPU (fp32)")
    students = {}
    for d in STUDENT_EMB_DIMS:
        v = pick("student", f"sea-{d}")
        if v is None:
            v = params.default_student_fps_per_vcpu
            notes.append(f"student sea-{d} not in {path}: default {v} windows/s/vCPU")
        students[d] = v
    load = data["machine"].get("load_avg_1min_before")
    measured_rows = [row("student", f"sea-{d}") for d in STUDENT_EMB_DIMS]
    windows = {int(r["window_samples"]) for r in measured_rows if r and r.get("window_samples")}
    try:
        shown = Path(path).resolve().relative_to(DEFAULT_MODELS_JSON.parents[2])
    except ValueError:
        shown = path
    return Throughputs(
        student_window_samples=windows.pop() if len(windows) == 1 else None,
        teacher_fps_per_vcpu=teacher_fps, student_fps_per_vcpu=students,
        source=(f"measured: {shown} (batch {batch}, {data.get('created_at', '?')}, "
                f"{int(cores)} cores, 1-min load {load} before)"),
        measured=not notes, notes=tuple(notes), machine=machine, precision=precision)


def _bf16_ratio(path: Path, teacher: str, batch: int) -> float | None:
    """bf16 / fp32 teacher windows/s at ``batch`` in one models.py run, or None."""
    try:
        rows = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = (teacher, *(("l3-random", "l3") if teacher.startswith("l3") else ()))
    for name in names:
        rate = {r.get("precision", "fp32"): float(r["windows_per_s"]) for r in rows
                if r.get("kind") == "teacher" and str(r.get("name")) == name
                and r.get("batch") == batch}
        if rate.get("fp32") and rate.get("bf16"):
            return rate["bf16"] / rate["fp32"]
    return None


def plan(scenario: Scenario = Scenario(), throughputs: Throughputs | None = None, *,
         params: CapacityParams = CAPACITY) -> dict:
    """The capacity model: a JSON-able dict (see docs/scaling.md for each formula).

    Raises
    ------
    ParameterError
        An impossible scenario (non-positive sizes, unknown teacher, ...).
    """
    sc = scenario.check()
    tp = throughputs if throughputs is not None else load_throughputs(teacher=sc.teacher, params=params)
    spec = TEACHERS[sc.teacher]

    # ------------------------------------------------------------- corpus
    days = sc.years * _DAYS_PER_YEAR
    clips_per_sensor_day = _SECONDS_PER_DAY / sc.clip_interval_s
    clips = round(sc.sensors * days * clips_per_sensor_day)
    wpc = windows_per_clip(params.clip_seconds, spec)
    windows = clips * wpc
    audio_hours = clips * params.clip_seconds / 3600
    new_clips = round(sc.sensors * sc.refresh_days * clips_per_sensor_day)
    new_windows = new_clips * wpc
    selected = math.ceil(windows * sc.select_fraction)

    # ------------------------------------------------------------- bytes
    flac_per_clip = (params.clip_seconds * params.input_sample_rate * params.input_bits / 8
                     * params.flac_ratio)
    student_samples = _student_window_samples(spec)
    emb_b = spec.emb_dim * _EMB_BYTES
    audio_b = student_samples * _AUDIO_BYTES
    frames_row = (emb_b + audio_b + params.metadata_bytes_per_window) * params.parquet_ratio
    targets_b = sum(sc.dims) * _EMB_BYTES
    train_row = (audio_b + targets_b + params.training_row_overhead_bytes) * params.parquet_ratio
    pca_in = selected * spec.emb_dim * _PCA_BYTES
    models = {str(d): {"params": STUDENT_PARAM_COUNTS[d][0],
                       "float32_bytes": STUDENT_PARAM_COUNTS[d][0] * 4,
                       "int8_bytes_approx": STUDENT_PARAM_COUNTS[d][0]}
              for d in STUDENT_EMB_DIMS}
    bytes_ = {
        "flac_input": clips * flac_per_clip,
        "frames": windows * frames_row,
        "frames_per_window": frames_row,
        "frames_per_window_parts": {"teacher_emb": emb_b, "student_audio_int16": audio_b,
                                    "metadata": params.metadata_bytes_per_window},
        "selection_ids": selected * params.training_row_overhead_bytes,
        "pca_fit_matrix_float64": pca_in,
        # fit-pca is a Beam job: workers reduce the selected rows to float64 moments
        # (count, mean, D x D outer products), the driver runs eigh on D x D
        "pca_solver": "distributed moments + eigh",
        "pca_driver_bytes": 4 * spec.emb_dim ** 2 * _PCA_BYTES,
        "training_set": windows * train_row,
        "training_row": train_row,
        "models": models,
        "refresh_flac_input": new_clips * flac_per_clip,
        "refresh_frames": new_windows * frames_row,
    }

    # ------------------------------------------------------------- compute
    teacher_vcpu_s_per_window = 1.0 / tp.teacher_fps_per_vcpu
    gpu_fps = tp.teacher_fps_per_vcpu * sc.gpu_speedup

    def teacher_hours(n_windows: int) -> dict:
        return {"vcpu_hours": n_windows * teacher_vcpu_s_per_window / 3600,
                "gpu_hours": n_windows / gpu_fps / 3600}

    def preprocess_hours(n_clips: int) -> float:
        return n_clips * params.preprocess_cpu_s_per_clip / 3600

    pca_flops = 2.0 * selected * spec.emb_dim ** 2
    pca_hours = pca_flops / params.pca_flops_per_s_per_vcpu / 3600
    from sea_core.train import epoch_steps  # the trainer's own epoch definition
    train_rows = round(windows * TRAINING_SET.split_fractions[0])
    steps_per_epoch = epoch_steps(train_rows, sc.batch_size, sc.steps_per_epoch)
    train_samples = sc.epochs * steps_per_epoch * sc.batch_size
    window_scale = (1.0 if tp.student_window_samples is None
                    else tp.student_window_samples / student_samples)
    student_fps = {d: v * window_scale for d, v in tp.student_fps_per_vcpu.items()}
    train_hours = {str(d): train_samples * params.train_backward_factor
                   / student_fps[d] / 3600 for d in sc.train_emb_dims}
    train_total = sum(train_hours.values())
    train_gpu_total = train_total / sc.gpu_speedup  # same T4 / vCPU ratio assumed as for the teacher
    # build-training-set projects each window: (512 -> sum(dims)) GEMV, negligible next to I/O
    project_flops_per_window = 2.0 * spec.emb_dim * max(sc.dims)
    project_hours = lambda n: n * project_flops_per_window / params.pca_flops_per_s_per_vcpu / 3600  # noqa: E731

    full_teacher = teacher_hours(windows)
    new_teacher = teacher_hours(new_windows)
    compute = {
        "preprocess_vcpu_hours": preprocess_hours(clips),
        "teacher": full_teacher,
        "pca_fit_vcpu_hours": pca_hours,
        "project_vcpu_hours": project_hours(windows),
        "train_vcpu_hours": train_hours,
        "train_gpu_hours": train_gpu_total,
        "train_samples": train_samples,
        "train_steps_per_epoch": steps_per_epoch,
        "refresh": {
            "preprocess_vcpu_hours": preprocess_hours(new_clips),
            "teacher": new_teacher,
            "project_vcpu_hours": project_hours(new_windows),
            "train_vcpu_hours": train_total,
            "train_gpu_hours": train_gpu_total,
        },
    }

    # ------------------------------------------------------------- cost
    cpu, gpu = sc.cost_cpu_hour, sc.cost_gpu_hour

    def stage_costs(pre_h, teach, pca_h, proj_h, device):
        # device 'gpu': the teacher stage and training run on T4s, the rest on vCPUs
        on_gpu = device == "gpu"
        return {"preprocess": pre_h * cpu,
                "teacher": teach["gpu_hours"] * gpu if on_gpu else teach["vcpu_hours"] * cpu,
                "pca_fit": pca_h * cpu, "build_training_set": proj_h * cpu,
                "train": train_gpu_total * gpu if on_gpu else train_total * cpu}

    cost = {}
    for device in ("cpu", "gpu"):
        full = stage_costs(compute["preprocess_vcpu_hours"], full_teacher, pca_hours,
                           compute["project_vcpu_hours"], device)
        refresh = stage_costs(compute["refresh"]["preprocess_vcpu_hours"], new_teacher, 0.0,
                              compute["refresh"]["project_vcpu_hours"], device)
        refit = stage_costs(compute["refresh"]["preprocess_vcpu_hours"], new_teacher, pca_hours,
                            compute["project_vcpu_hours"], device)
        cost[device] = {
            "full_build": {**full, "total": sum(full.values())},
            "refresh_reuse_pca": {**refresh, "total": sum(refresh.values())},
            "refresh_with_refit": {**refit, "total": sum(refit.values())},
        }

    def bottleneck(stages: dict) -> str:
        return max((k for k in stages if k != "total"), key=lambda k: stages[k])

    best = "gpu" if cost["gpu"]["full_build"]["total"] <= cost["cpu"]["full_build"]["total"] else "cpu"
    chosen = cost[best]
    bottlenecks = {"device": best, "full_build": bottleneck(chosen["full_build"]),
                   "refresh": bottleneck(chosen["refresh_reuse_pca"])}

    return {
        "scenario": {**asdict(sc), "dims": list(sc.dims), "train_emb_dims": list(sc.train_emb_dims)},
        "teacher": {"name": spec.name, "sample_rate": spec.sample_rate,
                    "window_samples": spec.window_samples, "window_seconds": spec.window_seconds,
                    "corpus_hop_seconds": spec.corpus_hop_seconds, "center": True,
                    "emb_dim": spec.emb_dim},
        "machine": ({"type": tp.machine, "teacher_precision": tp.precision,
                     **asdict(MACHINE_TYPES[tp.machine])} if tp.machine else None),
        "throughputs": {"teacher_windows_per_s_per_vcpu": tp.teacher_fps_per_vcpu,
                        "teacher_windows_per_s_per_gpu": gpu_fps,
                        "student_windows_per_s_per_vcpu": {str(k): v for k, v in student_fps.items()},
                        "student_rate_window_scale": window_scale,
                        "source": tp.source, "measured": tp.measured, "notes": list(tp.notes)},
        "corpus": {"days": days, "clips_per_sensor_day": clips_per_sensor_day, "clips": clips,
                   "audio_hours": audio_hours, "windows_per_clip": wpc, "windows": windows,
                   "selected_windows": selected, "student_window_samples": student_samples,
                   "refresh_clips": new_clips, "refresh_windows": new_windows},
        "bytes": bytes_,
        "compute": compute,
        "cost_usd": cost,
        "bottleneck": bottlenecks,
        "assumptions": {k: v for k, v in asdict(params).items()
                        if k not in ("sensors", "years", "clip_interval_s", "refresh_days")},
    }


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{n:,.0f} B"
        n /= 1000
    return f"{n} B"  # pragma: no cover


def format_report(r: dict) -> str:
    """Human-readable summary of :func:`plan`'s dict."""
    sc, c, b, cp, t = r["scenario"], r["corpus"], r["bytes"], r["compute"], r["throughputs"]
    te = r["teacher"]
    lines = [
        f"SEA capacity plan: {sc['sensors']} sensors x {sc['years']:g} years, one "
        f"{r['assumptions']['clip_seconds']:g}-s clip every {sc['clip_interval_s']:g} s, teacher {te['name']}",
        *([f"  machine: {r['machine']['type']} ({r['machine']['bf16_flags']}; e.g. "
           f"{r['machine']['examples']}), teacher in {r['machine']['teacher_precision']}"]
          if r.get("machine") else []),
        f"  throughputs: {t['source']}",
        *[f"    note: {n}" for n in t["notes"]],
        f"    teacher {t['teacher_windows_per_s_per_vcpu']:.2f} windows/s/vCPU; "
        f"T4 = {sc['gpu_speedup']:g} x vCPU = {t['teacher_windows_per_s_per_gpu']:.0f} windows/s (assumed speed-up)",
        "corpus",
        f"  days {c['days']:g}, clips {c['clips']:,} ({c['audio_hours']:,.0f} h of audio)",
        f"  windows/clip {c['windows_per_clip']} (window {te['window_seconds']:.3f} s, hop "
        f"{te['corpus_hop_seconds']:.3f} s, centred) -> windows {c['windows']:,}",
        f"  selected for PCA ({sc['select_fraction']:g}): {c['selected_windows']:,}",
        "bytes",
        f"  FLAC input          {_size(b['flac_input'])}",
        f"  frames Parquet      {_size(b['frames'])}  ({b['frames_per_window']:,.0f} B/window: "
        f"teacher_emb {b['frames_per_window_parts']['teacher_emb']}, student int16 "
        f"{b['frames_per_window_parts']['student_audio_int16']}, metadata "
        f"{b['frames_per_window_parts']['metadata']})",
        f"  PCA fit             {_size(b['pca_fit_matrix_float64'])} of selected rows (float64) -> "
        f"{b['pca_solver']}: {_size(b['pca_driver_bytes'])} in the driver",
        f"  training set        {_size(b['training_set'])}  ({b['training_row']:,.0f} B/row)",
        "  models              " + ", ".join(
            f"sea-{d} {m['float32_bytes'] / 1e6:.2f} MB f32 / ~{m['int8_bytes_approx'] / 1e6:.2f} MB int8"
            for d, m in b["models"].items()),
        "compute (full build)",
        f"  preprocess          {cp['preprocess_vcpu_hours']:,.1f} vCPU-h",
        f"  teacher             {cp['teacher']['vcpu_hours']:,.1f} vCPU-h  or  {cp['teacher']['gpu_hours']:,.1f} T4-h",
        f"  PCA fit             {cp['pca_fit_vcpu_hours']:,.1f} vCPU-h",
        f"  build training set  {cp['project_vcpu_hours']:,.2f} vCPU-h (+ I/O of the bytes above)",
        "  train               " + ", ".join(f"sea-{d} {h:,.1f} vCPU-h" for d, h in cp["train_vcpu_hours"].items())
        + f" or {cp['train_gpu_hours']:,.1f} T4-h ({cp['train_samples']:,} samples = {sc['epochs']} epochs"
        f" x {cp['train_steps_per_epoch']:,} steps (sea train's epoch) x batch {sc['batch_size']},"
        f" no early stop; T4 speed-up assumed)",
        f"refresh every {sc['refresh_days']} days: {c['refresh_clips']:,} clips, {c['refresh_windows']:,} windows, "
        f"{_size(b['refresh_flac_input'])} FLAC -> {_size(b['refresh_frames'])} frames; teacher "
        f"{cp['refresh']['teacher']['vcpu_hours']:,.1f} vCPU-h or {cp['refresh']['teacher']['gpu_hours']:,.2f} T4-h",
        f"cost (USD; vCPU-h ${sc['cost_cpu_hour']:g}, T4-h ${sc['cost_gpu_hour']:g})",
    ]
    for device, label in (("cpu", "all on vCPUs"), ("gpu", "teacher + training on T4s")):
        cc = r["cost_usd"][device]
        lines.append(f"  {label}: full build ${cc['full_build']['total']:,.2f} "
                     f"(teacher ${cc['full_build']['teacher']:,.2f}); refresh ${cc['refresh_reuse_pca']['total']:,.2f} "
                     f"(reusing PCA) / ${cc['refresh_with_refit']['total']:,.2f} (with PCA refit)")
    bn = r["bottleneck"]
    lines.append(f"bottleneck (cheaper option: {bn['device'].upper()}): full build -> {bn['full_build']}; "
                 f"refresh -> {bn['refresh']}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    d = Scenario()
    ap = argparse.ArgumentParser(prog="sea plan", description=(
        "Capacity model of a SONYC-scale corpus: windows, bytes per stage, CPU vs GPU hours "
        "of the teacher stage (measured windows/s from benchmarks/results/models.json), "
        "cost per refresh and the bottleneck stage."))
    ap.add_argument("--sensors", type=int, default=d.sensors)
    ap.add_argument("--years", type=float, default=d.years)
    ap.add_argument("--clip-interval-s", "--clip-interval", dest="clip_interval_s", type=float,
                    default=d.clip_interval_s, help="seconds between clips of one sensor")
    ap.add_argument("--teacher", default=d.teacher, choices=sorted(TEACHERS))
    ap.add_argument("--machine", default=DEFAULT_MACHINE, choices=sorted(MACHINE_TYPES),
                    help="CPU type the teacher runs on: " + "; ".join(
                        f"{k}: {m.examples} ({m.precision}"
                        + (", assumed speed-up" if m.assumed_speedup else ", measured") + ")"
                        for k, m in MACHINE_TYPES.items()) + " (default %(default)s)")
    ap.add_argument("--gpu-speedup", type=float, default=d.gpu_speedup,
                    help="T4 windows/s divided by one vCPU's (assumed; default %(default)s)")
    ap.add_argument("--cost-cpu-hour", type=float, default=d.cost_cpu_hour, help="USD per vCPU-hour")
    ap.add_argument("--cost-gpu-hour", type=float, default=d.cost_gpu_hour, help="USD per T4-hour")
    ap.add_argument("--refresh-days", type=int, default=d.refresh_days)
    ap.add_argument("--select-fraction", type=float, default=d.select_fraction)
    ap.add_argument("--train-emb-dims", default=",".join(map(str, d.train_emb_dims)),
                    help="students trained per refresh, comma list")
    ap.add_argument("--epochs", type=int, default=d.epochs)
    ap.add_argument("--steps-per-epoch", type=int, default=d.steps_per_epoch)
    ap.add_argument("--models-json", default=str(DEFAULT_MODELS_JSON),
                    help="benchmarks/models.py output ('' = use the stated defaults)")
    ap.add_argument("--json", action="store_true", help="print the full model as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        dims = tuple(int(x) for x in args.train_emb_dims.split(",") if x.strip())
    except ValueError:
        raise ParameterError(f"--train-emb-dims: expected a comma list of ints, got {args.train_emb_dims!r}") from None
    sc = Scenario(sensors=args.sensors, years=args.years, clip_interval_s=args.clip_interval_s,
                  teacher=args.teacher, refresh_days=args.refresh_days, gpu_speedup=args.gpu_speedup,
                  cost_cpu_hour=args.cost_cpu_hour, cost_gpu_hour=args.cost_gpu_hour,
                  select_fraction=args.select_fraction, train_emb_dims=dims, epochs=args.epochs,
                  steps_per_epoch=args.steps_per_epoch)
    tp = load_throughputs(args.models_json or None, teacher=args.teacher, machine=args.machine)
    report = plan(sc, tp)
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else format_report(report))
    return 0
