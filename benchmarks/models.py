"""Inference throughput of every teacher and SEA student on this CPU (issue 4 item 7).

Writes ``benchmarks/results/models.json``: windows (frames) per second at batch
1 / 32 / 64, in fp32 and in bf16 (``precision`` of each row: Keras
``mixed_bfloat16`` per layer, front-end and first conv float32, see
``sea_core.precision``; the two precisions of a case run back to back), for

* the teachers ``aisfx`` (real weights) and ``l3-random`` (L3-Net audio, seeded
  random weights: same cost as the trained L3), through ``Teacher.embed`` -
  audio windows in, embeddings out, front-end included, as the pipeline calls it;
* the SEA students 512 / 256 / 128 / 64 with their front-end (8-kHz audio in),
  random init, window length of the default (aisfx) teacher, through a
  ``tf.function`` of the Keras model (the trainer's / exporter's forward pass).

Each case runs one warm-up batch, then timed batches until ``--min-seconds``
and ``--min-batches`` are both reached. The machine is shared, so the 1-minute
load average before and after is recorded; ``sea plan`` divides windows/s by
``machine.cpu_count`` to get a per-vCPU rate.

Run: ``.venv/bin/python benchmarks/models.py [--batches 1,32,64] [--min-seconds 3]``
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "models.json"


def _timed(fn, batch: int, min_seconds: float, min_batches: int) -> dict:
    fn()  # warm-up: graph tracing, weight loading
    times = []
    t_start = time.perf_counter()
    while len(times) < min_batches or time.perf_counter() - t_start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    total = float(np.sum(times))
    return {"batch": batch, "timed_batches": len(times), "seconds": round(total, 4),
            "ms_per_batch_median": round(1000 * float(np.median(times)), 3),
            "windows_per_s": round(batch * len(times) / total, 3)}


def bench_teacher(name: str, batches, min_seconds, min_batches, rng, precisions) -> list[dict]:
    from sea_core.models.teachers import get_teacher

    teachers = {p: get_teacher(name, precision=p) for p in precisions}
    spec = teachers[precisions[0]].spec
    rows = []
    for i, b in enumerate(batches):
        x = (0.1 * rng.standard_normal((b, spec.window_samples))).astype(np.float32)
        for p in (precisions if i % 2 == 0 else precisions[::-1]):  # alternate the order
            teacher = teachers[p]
            r = _timed(lambda: teacher.embed(x, batch_size=b), b, min_seconds, min_batches)
            rows.append({"kind": "teacher", "name": name, "precision": p,
                         "teacher_id": teacher.teacher_id,
                         "is_random": teacher.is_random, "sample_rate": spec.sample_rate,
                         "window_samples": spec.window_samples, "emb_dim": spec.emb_dim, **r})
            print(f"teacher {name:9s} {p} batch {b:3d}: {r['windows_per_s']:9.2f} windows/s",
                  flush=True)
    return rows


def bench_student(emb_dim: int, batches, min_seconds, min_batches, rng, teacher: str,
                  precisions) -> list[dict]:
    import tensorflow as tf

    from sea_core.models.students import build_student
    from sea_core.params import TEACHERS, student_spec
    from sea_core.precision import apply_precision

    spec = student_spec(emb_dim, TEACHERS[teacher])
    forward = {}
    for p in precisions:
        model = build_student(spec, with_frontend=True)
        apply_precision(model, p)
        forward[p] = tf.function(lambda a, m=model: tf.cast(m(a, training=False), tf.float32),
                                 reduce_retracing=True)
    rows = []
    for i, b in enumerate(batches):
        x = tf.constant((0.1 * rng.standard_normal((b, spec.window_samples))).astype(np.float32))
        for p in (precisions if i % 2 == 0 else precisions[::-1]):
            r = _timed(lambda: forward[p](x).numpy(), b, min_seconds, min_batches)
            rows.append({"kind": "student", "name": f"sea-{emb_dim}", "precision": p,
                         "emb_dim": emb_dim,
                         "head": spec.head, "with_frontend": True, "random_init": True,
                         "window_teacher": teacher, "sample_rate": spec.frontend.sample_rate,
                         "window_samples": spec.window_samples,
                         "params": int(model.count_params()), **r})
            print(f"student sea-{emb_dim:<4d} {p} batch {b:3d}: {r['windows_per_s']:9.2f} windows/s",
                  flush=True)
    return rows


def machine_info() -> dict:
    import tensorflow as tf

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "all",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "all"}
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except OSError:
        info["cpu_model"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,32,64")
    ap.add_argument("--teachers", default="aisfx,l3-random")
    ap.add_argument("--students", default="512,256,128,64")
    ap.add_argument("--student-window-teacher", default="aisfx",
                    help="students take this teacher's window length")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--min-batches", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    precisions = [p for p in args.precisions.split(",") if p]
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    for name in filter(None, args.teachers.split(",")):
        rows += bench_teacher(name, batches, args.min_seconds, args.min_batches, rng, precisions)
    for d in filter(None, args.students.split(",")):
        rows += bench_student(int(d), batches, args.min_seconds, args.min_batches, rng,
                              args.student_window_teacher, precisions)
    load_after = os.getloadavg()
    machine = machine_info()
    from sea_core.precision import cpu_bf16_flags
    machine.update(cpu_bf16_flags=list(cpu_bf16_flags()), load_avg_1min_before=round(load_before[0], 2),
                   load_avg_1min_after=round(load_after[0], 2),
                   note="shared machine: other jobs ran concurrently; rates are lower bounds "
                        "for a dedicated CPU")
    doc = {"benchmark": "models", "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "precisions": precisions, "device": "cpu", "batches": batches,
           "wall_seconds": round(time.perf_counter() - t0, 1), "machine": machine, "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"-> {out} ({doc['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
