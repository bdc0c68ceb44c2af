"""``sea plan``: flags -> :class:`sea_core.plan.Scenario` + measured rates -> the capacity
model (:func:`sea_core.plan.plan`), printed as a summary or as JSON."""
from __future__ import annotations

import argparse
import json

from sea_core.errors import ParameterError
from sea_core.params import TEACHERS
from sea_core.plan import Scenario, plan
from sea_core.plan_rates import DEFAULT_MACHINE, DEFAULT_MODELS_JSON, MACHINE_TYPES, load_throughputs

__all__ = ["format_report", "main"]


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
