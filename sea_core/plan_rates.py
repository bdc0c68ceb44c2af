"""Measured teacher / student rates for ``sea plan`` (:mod:`sea_core.plan`).

Windows/s per vCPU from ``benchmarks/models.py`` (``benchmarks/results/models.json``,
and ``models_bf16.json`` beside it for the bf16/fp32 ratio), per machine type
(:data:`MACHINE_TYPES`: the teacher precision it runs and whether its speed-up is
measured or assumed). Where no measurement exists the stated defaults of
:data:`sea_core.params.CAPACITY` are used and the returned :class:`Throughputs` says so.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sea_core.errors import ParameterError
from sea_core.params import CAPACITY, STUDENT_EMB_DIMS, CapacityParams

__all__ = ["Throughputs", "load_throughputs", "DEFAULT_MODELS_JSON", "PRECISION_JSON_NAME",
           "MACHINE_TYPES", "MachineType", "DEFAULT_MACHINE"]

DEFAULT_MODELS_JSON = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "models.json"
"""Where ``benchmarks/models.py`` writes its measurements."""
PRECISION_JSON_NAME = "models_bf16.json"
"""A ``benchmarks/models.py`` run with fp32 and bf16 back to back, beside ``models.json``: when
``models.json`` has no bf16 rows, its bf16/fp32 ratio (same run, same batch) scales the fp32 rate."""

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
