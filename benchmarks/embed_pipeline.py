"""Embedding pipeline throughput vs bare teacher inference, fp32 and bf16, and the refresh cost.

Writes ``benchmarks/results/embed_pipeline.json``. Default: the real aisfx
teacher (weights of the aisfx==0.1.2 wheel), the demo hop (0.5 s), both
teacher precisions in the same run, rounds alternated (the cores are shared
with other jobs, so only figures of neighbouring runs are compared):

* ``precisions.<p>.pipeline.windows_per_s``: the whole ``sea pipeline embed`` run
  (list, decode, resample, frame, SPL, teacher, relevance, Parquet) on the
  default local runner, windows / pipeline seconds;
* ``precisions.<p>.bare.windows_per_s``: ``teacher.embed`` alone, batched, on the
  *same* windows in the same process (decoded beforehand, not timed);
* ``precisions.<p>.ratio`` = pipeline / bare (goal >= 0.9), median of the rounds;
  ``run_ratio`` the same with the whole run's wall time (plan + embed + finalize);
* ``precisions.<p>.noop_refresh_wall_s``: an ``--incremental`` run with nothing new -
  the fixed cost every run pays whatever its size (median of the rounds);
* ``precisions.<p>.refresh.ratio`` = wall time of ``--incremental`` after adding
  10 % new files / wall time of the full run of the same round (goal <= 0.15);
* ``bf16_vs_fp32``: per-round speed-ups (pipeline and bare; goal >= 2x), medians;
* ``runner_modes``: the same full run on FnApiRunner ``in_memory``,
  ``multi_threading`` and ``multi_processing`` (``--direct_num_workers`` = CPUs),
  alternated, per precision (picks the default local runner);
* ``batch_sweep``: bare inference at batch 32 / 64 / 128 per precision, alternated.
* ``thread_sweep``: bare inference in a fresh child process per setting (TF's thread
  pools are fixed at start-up): TF intra-op / inter-op threads x batch 32 / 64 / 128 per
  precision, plus oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``). Batches and precisions are
  alternated inside a child; the children run one after the other, so the load can drift
  between settings (the first and last settings are both ``default`` to show the drift).
* ``refresh_new_day``: like ``refresh``, but the 10 % new clips are the *next day's*
  recordings (a daily refresh: new sensor-day partitions, none of the old ones rewritten);
  ``refresh`` adds them to the existing days (3 of the 4 partitions are rewritten: the
  worst case). Both report the split of the refresh's wall time (list / pipeline / finalize,
  teacher ms) so the fixed cost is visible.

The teacher network is built once per precision before timing (the in-process
pipeline then uses the process's cached network; multi_processing workers
build their own, which is part of their cost). Corpus: deterministic 10-s
48-kHz FLAC clips (tones + noise), the SONYC upstream layout.

Run: ``.venv/bin/python benchmarks/embed_pipeline.py [--teacher aisfx] [--clips 192]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "embed_pipeline.json"
SR = 48_000


def make_clip(root: Path, i: int, seconds: float, day: int = 0) -> Path:
    """Clip ``i``: sensor ``i % 4``, half-hourly from 2019-03-04 00:00 (+ ``day`` days)."""
    import soundfile as sf

    tz = ZoneInfo("America/New_York")
    ts = int(datetime(2019, 3, 4 + day, tzinfo=tz).timestamp()) + 1800 * i
    sensor = f"b827eb{i % 4:06x}"
    folder = datetime.fromtimestamp(ts, tz).date().isoformat()
    p = root / f"sensor_{sensor}" / folder / f"{ts}.flac"
    p.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(i + 1000 * day)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t)
    sf.write(p, (x * rng.uniform(0.2, 1.0)).astype(np.float32), SR, subtype="PCM_16", format="FLAC")
    return p


def decode_windows(teacher, paths: list[Path], hop: float) -> np.ndarray:
    """The teacher windows the pipeline computes for ``paths`` (its own decode, resample and
    framing: same count, same samples)."""
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import decode_bytes, resample

    spec = teacher.spec
    out = []
    for p in paths:
        audio, sr = decode_bytes(Path(p).read_bytes(), str(p))
        out.append(frame_audio(resample(audio, sr, spec.sample_rate), sr=spec.sample_rate,
                               window_samples=spec.window_samples, hop_seconds=hop)[0])
    return np.concatenate(out)


def bare_inference(teacher, windows: np.ndarray, batch: int) -> float:
    """Seconds for ``teacher.embed`` of all windows, batched (warm network)."""
    t0 = time.perf_counter()
    teacher.embed(windows, batch_size=batch)
    return time.perf_counter() - t0


_THREAD_CHILD = """
import json, os, sys, time
setting, teacher_name, windows_path, batches, precisions = sys.argv[1:6]
cfg = dict(kv.split("=") for kv in setting.split(",") if "=" in kv)
if "onednn" in cfg:
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = cfg["onednn"]
import numpy as np
import tensorflow as tf
if "intra" in cfg:
    tf.config.threading.set_intra_op_parallelism_threads(int(cfg["intra"]))
if "inter" in cfg:
    tf.config.threading.set_inter_op_parallelism_threads(int(cfg["inter"]))
from sea_core.models.teachers import get_teacher
w = np.load(windows_path)
out = {}
topts = json.loads(sys.argv[6])
teachers = {p: get_teacher(teacher_name, precision=p, **topts) for p in precisions.split(",")}
for rep in range(2):
    for b in (batches.split(",") if rep == 0 else batches.split(",")[::-1]):
        for p, t in (teachers.items() if rep == 0 else list(teachers.items())[::-1]):
            t.embed(w[:int(b)], batch_size=int(b))  # build + trace this size
            t0 = time.perf_counter()
            t.embed(w, batch_size=int(b))
            out.setdefault(p, {}).setdefault(b, []).append(round(len(w) / (time.perf_counter() - t0), 2))
print("RESULT " + json.dumps(out))
"""


def thread_sweep(teacher: str, windows: np.ndarray, settings: list[str], batches: str,
                 precisions: list[str], tmp: str, teacher_options: dict) -> dict:
    """Bare windows/s per setting (a fresh process each: TF fixes its thread pools at start),
    batch and precision; two repetitions in each child, order reversed in the second."""
    import subprocess

    path = Path(tmp) / "sweep_windows.npy"
    np.save(path, windows)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = {}
    for setting in settings:
        proc = subprocess.run([sys.executable, "-c", _THREAD_CHILD, setting, teacher, str(path),
                               batches, ",".join(precisions), json.dumps(teacher_options)], env=env, capture_output=True,
                              text=True, timeout=1800)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            raise RuntimeError(f"thread sweep {setting!r} failed:\n{proc.stderr[-3000:]}")
        res = json.loads(line[-1][len("RESULT "):])
        key = setting if setting not in out else f"{setting} (again, last)"
        out[key] = {"windows_per_s": res, "median": {
            p: {b: statistics.median(v) for b, v in d.items()} for p, d in res.items()},
            "load_1m": round(os.getloadavg()[0], 2)}
        print("threads", key, json.dumps(out[key]["median"]), flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="aisfx")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--clips", type=int, default=192,
                    help="10-s clips (192 = 3,840 windows: the fixed cost of a run, ~0.5 s of "
                         "Beam job start, is then a few %% of it, as at corpus scale)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--hop-seconds", type=float, default=0.5, help="the demo's corpus hop")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--modes", default="in_memory,multi_threading,multi_processing",
                    help="FnApiRunner running modes to compare ('' to skip)")
    ap.add_argument("--sweep-batches", default="32,64,128", help="'' to skip")
    ap.add_argument("--thread-settings",
                    default="default;intra=1,inter=1;intra=1,inter=2;intra=2,inter=1;onednn=0;"
                            "default",
                    help="';'-separated child-process settings for the thread sweep "
                         "(intra=, inter= TF threads, onednn=0|1); '' to skip")
    ap.add_argument("--sweep-windows", type=int, default=256,
                    help="windows per timed pass of the thread sweep")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from pipelines.embed_corpus import parse_args, run
    from sea_core.models.teachers import get_teacher
    from sea_core.precision import cpu_bf16_flags

    precisions = [p for p in args.precisions.split(",") if p]
    # the network the pipeline builds (its teacher options, e.g. aisfx's 1-s window)
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.embed_config import _resolve, config_from_options
    topts = dict(_resolve(config_from_options(PipelineOptions(
        ["--input", "-", "--output", "-", "--teacher", args.teacher]))).teacher.options)
    teachers = {p: get_teacher(args.teacher, precision=p, **topts) for p in precisions}
    spec = teachers[precisions[0]].spec
    hop = args.hop_seconds or spec.corpus_hop_seconds
    for t in teachers.values():  # build + trace once, outside the timings
        t.embed(np.zeros((args.batch_size, spec.window_samples), np.float32),
                batch_size=args.batch_size)
    rounds = {p: [] for p in precisions}
    modes_out: dict = {}
    sweep: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        up = Path(tmp) / "upstream"
        n_new = max(1, round(args.clips / 10))
        paths = [make_clip(up, i, args.seconds) for i in range(args.clips)]
        windows = decode_windows(teachers[precisions[0]], paths, hop)
        n_bare = int(windows.shape[0])

        def common(p, out):
            return ["--input", str(up), "--output", str(out), "--teacher", args.teacher,
                    "--teacher-precision", p, "--hop-seconds", str(hop),
                    "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)]

        # alternate precisions and bare / pipeline: compare neighbours only
        for r in range(args.rounds):
            order = precisions if r % 2 == 0 else precisions[::-1]
            for p in order:
                out = Path(tmp) / f"out-{p}-{r}"
                t_bare = bare_inference(teachers[p], windows, args.batch_size)
                t0 = time.perf_counter()
                full = run(*parse_args(common(p, out)))
                t_full = time.perf_counter() - t0
                n = full["counts"]["windows"]
                assert n == n_bare, (n, n_bare)
                assert full["teacher_precision"] == p
                refreshes = {}
                next_day = 1 + (1800 * (args.clips - 1)) // 86400  # after the corpus' last day
                for variant, day, first in (("same_days", 0, args.clips), ("new_day", next_day, 0)):
                    # same_days: the next half-hours of the same day (3 of 4 partitions rewritten);
                    # new_day: the next day's first recordings (new partitions only)
                    new_paths = [make_clip(up, i, args.seconds, day)
                                 for i in range(first, first + n_new)]
                    t0 = time.perf_counter()
                    ref = run(*parse_args(common(p, out) + ["--incremental"]))
                    refreshes[variant] = (time.perf_counter() - t0, ref)
                    assert ref["counts"]["inputs"] == n_new
                    for q in new_paths:  # the next refresh starts from the full run's corpus
                        q.unlink()
                    # and output (not timed)
                    run(*parse_args(common(p, out) + ["--incremental", "--allow-removals"]))
                t0 = time.perf_counter()  # nothing new: the fixed cost of a run
                noop = run(*parse_args(common(p, out) + ["--incremental"]))
                t_noop = time.perf_counter() - t0
                assert noop["counts"]["inputs"] == 0
                t_refresh, refresh = refreshes["same_days"]
                t_newday, newday = refreshes["new_day"]
                rec = {"round": r, "bare_s": round(t_bare, 3),
                       "pipeline_s": full["timings_s"]["pipeline"], "wall_s": round(t_full, 3),
                       "bare_wps": round(n_bare / t_bare, 2),
                       "pipeline_wps": round(n / full["timings_s"]["pipeline"], 2),
                       "ratio": round((n / full["timings_s"]["pipeline"]) / (n_bare / t_bare), 3),
                       "run_ratio": round((n / t_full) / (n_bare / t_bare), 3),
                       "full_timings_s": full["timings_s"],
                       "noop_refresh_wall_s": round(t_noop, 3),
                       "refresh_wall_s": round(t_refresh, 3),
                       "refresh_ratio": round(t_refresh / t_full, 3),
                       "teacher_ms": ((full.get("metrics") or {}).get("teacher_ms") or {})
                       .get("sum_ms"),
                       "refresh_teacher_ms": ((refresh.get("metrics") or {}).get("teacher_ms")
                                              or {}).get("sum_ms"),
                       "refresh_timings_s": refresh["timings_s"],
                       "refresh_new_day_wall_s": round(t_newday, 3),
                       "refresh_new_day_ratio": round(t_newday / t_full, 3),
                       "refresh_new_day_timings_s": newday["timings_s"],
                       "refresh_new_day_teacher_ms": ((newday.get("metrics") or {})
                                                      .get("teacher_ms") or {}).get("sum_ms"),
                       "runner": full["runner"], "load_1m": round(os.getloadavg()[0], 2)}
                rounds[p].append(rec)
                print(p, json.dumps(rec), flush=True)

        modes = [m for m in args.modes.split(",") if m]
        workers = os.cpu_count() or 1
        for i, m in enumerate(modes * 1):
            for p in (precisions if i % 2 == 0 else precisions[::-1]):
                out = Path(tmp) / f"mode-{m}-{p}"
                flags = [f"--direct_running_mode={m}"] + (
                    [f"--direct_num_workers={workers}"] if m != "in_memory" else [])
                t0 = time.perf_counter()
                s = run(*parse_args(common(p, out) + flags))
                wall = time.perf_counter() - t0
                modes_out.setdefault(m, {})[p] = {
                    "runner": s["runner"], "pipeline_s": s["timings_s"]["pipeline"],
                    "wall_s": round(wall, 3),
                    "windows_per_s": round(s["counts"]["windows"] / s["timings_s"]["pipeline"], 2),
                    "load_1m": round(os.getloadavg()[0], 2)}
                print("mode", m, p, json.dumps(modes_out[m][p]), flush=True)

        batches = [int(b) for b in args.sweep_batches.split(",") if b]
        for rep in range(2 if batches else 0):
            for b in (batches if rep % 2 == 0 else batches[::-1]):
                for p in precisions:
                    teachers[p].embed(windows[:b], batch_size=b)  # trace this batch size
                    t = bare_inference(teachers[p], windows, b)
                    sweep.setdefault(p, {}).setdefault(str(b), []).append(round(n_bare / t, 2))
        print("batch sweep (windows/s per repetition)", json.dumps(sweep), flush=True)
        settings = [x for x in args.thread_settings.split(";") if x]
        threads = thread_sweep(args.teacher, windows[:args.sweep_windows], settings,
                               args.sweep_batches or str(args.batch_size), precisions,
                               tmp, topts) if settings else {}

    per = {}
    for p, rs in rounds.items():
        med = sorted(rs, key=lambda x: x["ratio"])[len(rs) // 2]
        per[p] = {
            "pipeline": {"windows_per_s": round(statistics.median([x["pipeline_wps"] for x in rs]), 2),
                         "median_round": med},
            "bare": {"windows_per_s": round(statistics.median([x["bare_wps"] for x in rs]), 2)},
            "ratio": round(statistics.median([x["ratio"] for x in rs]), 3), "ratio_goal": ">= 0.9",
            "run_ratio": round(statistics.median([x["run_ratio"] for x in rs]), 3),
            "noop_refresh_wall_s": round(statistics.median([x["noop_refresh_wall_s"] for x in rs]), 3),
            "refresh": {"new_files": n_new, "new_fraction": round(n_new / args.clips, 3),
                        "ratio": round(statistics.median([x["refresh_ratio"] for x in rs]), 3),
                        "ratio_goal": "<= 0.15",
                        "note": "new clips in the existing days: 3 of 4 partitions rewritten"},
            "refresh_new_day": {
                "new_files": n_new,
                "ratio": round(statistics.median([x["refresh_new_day_ratio"] for x in rs]), 3),
                "ratio_goal": "<= 0.15",
                "note": "new clips are the next day's: new partitions only (a daily refresh)"},
            "rounds": rs}
    versus = None
    if {"fp32", "bf16"} <= set(per):
        pairs = list(zip(rounds["fp32"], rounds["bf16"]))
        versus = {"pipeline_speedup": round(statistics.median([b["pipeline_wps"] / a["pipeline_wps"]
                                                     for a, b in pairs]), 3),
                  "bare_speedup": round(statistics.median([b["bare_wps"] / a["bare_wps"]
                                                 for a, b in pairs]), 3),
                  "per_round_pipeline": [round(b["pipeline_wps"] / a["pipeline_wps"], 3)
                                         for a, b in pairs],
                  "per_round_bare": [round(b["bare_wps"] / a["bare_wps"], 3) for a, b in pairs],
                  "goal": ">= 2.0 (pipeline, bf16 / fp32)"}
    best_mode = None
    if modes_out:
        score = {m: statistics.median([v["windows_per_s"] for v in d.values()]) for m, d in modes_out.items()}
        best_mode = max(score, key=score.get)
    sweep_med = {p: {b: statistics.median(v) for b, v in d.items()} for p, d in sweep.items()}
    result = {
        "benchmark": "embed_pipeline",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "teacher": args.teacher, "teacher_id": teachers[precisions[0]].teacher_id,
        "teacher_options": topts,
        "corpus": {"clips": args.clips, "clip_seconds": args.seconds, "sample_rate": SR,
                   "hop_seconds": hop, "windows": n_bare},
        "batch_size": args.batch_size, "shard_size": args.shard_size,
        "precisions": per, "bf16_vs_fp32": versus,
        "runner_modes": {"workers": workers, "results": modes_out, "fastest": best_mode},
        "batch_sweep": {"windows_per_s_median": sweep_med, "repetitions": sweep},
        "thread_sweep": {"windows": min(args.sweep_windows, n_bare),
                         "default": "TF's own (intra = inter = CPUs), oneDNN on",
                         "results": threads},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "cpu_bf16_flags": list(cpu_bf16_flags()),
                    "load_avg_1m_after": round(os.getloadavg()[0], 2),
                    "note": "shared machine: compare ratios of neighbouring runs of the same run "
                            "(load_1m per round)"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({p: {"ratio": v["ratio"], "pipeline_wps": v["pipeline"]["windows_per_s"],
                          "bare_wps": v["bare"]["windows_per_s"],
                          "refresh_ratio": v["refresh"]["ratio"]} for p, v in per.items()}
                     | {"bf16_vs_fp32": versus and {k: versus[k] for k in
                                                    ("pipeline_speedup", "bare_speedup")},
                        "fastest_mode": best_mode}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
