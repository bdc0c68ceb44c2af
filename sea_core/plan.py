"""`sea plan`: capacity model of a SONYC-scale corpus (windows, bytes, compute hours, cost).

Every number is a formula of the scenario (sensors, years, clip interval), the
teacher's framing (``TeacherSpec``: window, corpus hop, centred as the
pipeline frames it), the Parquet schemas (``sea_core.datasets.schema``) and the
throughputs measured by ``benchmarks/models.py``
(``benchmarks/results/models.json``). Where no measurement exists the
stated default of :data:`sea_core.params.CAPACITY` is used and the report says
so (:mod:`sea_core.plan_rates`). docs/scaling.md walks through the default
scenario; ``sea plan`` itself (flags, printed report) is :mod:`sea_core.plan_cli`.

>>> from sea_core.plan import Scenario, plan
>>> report = plan(Scenario(sensors=50, years=3, clip_interval_s=300))   # doctest: +SKIP
>>> report["corpus"]["windows"]                                          # doctest: +SKIP
141912000
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sea_core.errors import ParameterError
from sea_core.params import (CAPACITY, REDUCTION, SAMPLING, STUDENT_EMB_DIMS, STUDENT_MEL64,
                             STUDENT_PARAM_COUNTS, TEACHERS, TRAIN, TRAINING_SET, CapacityParams,
                             TeacherSpec)
from sea_core.plan_rates import MACHINE_TYPES, Throughputs, load_throughputs

__all__ = ["Scenario", "windows_per_clip", "plan"]

_INTEGRAL_TOL = 1e-9  # the same tolerance as sea_core.audio.framing
_SECONDS_PER_DAY = 86_400
_DAYS_PER_YEAR = 365
_EMB_BYTES = 4       # float32
_AUDIO_BYTES = 2     # int16
_PCA_BYTES = 8       # float64


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
