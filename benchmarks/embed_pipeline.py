"""Embedding pipeline throughput vs bare teacher inference, and the cost of an incremental refresh.

Writes ``benchmarks/results/embed_pipeline.json``:

* ``pipeline.windows_per_s``: the whole ``sea pipeline embed`` run (list, decode,
  resample, frame, SPL, teacher, relevance, Parquet) on the default local
  runner (in-process FnApiRunner), windows / pipeline seconds;
* ``bare.windows_per_s``: ``teacher.embed`` alone, batched, on the *same*
  windows in the same process (decoded beforehand, not timed);
* ``ratio`` = pipeline / bare (goal >= 0.9), the median of ``--rounds`` alternating
  bare / pipeline rounds (the cores are shared with other jobs: neighbours compare fairly);
* ``refresh.ratio`` = wall time of ``--incremental`` after adding 10 % new
  files / wall time of the full run of the same round (goal <= 0.15), median of the rounds.

The teacher network is built once before timing (both sides then use the
process's cached network). Corpus: deterministic 10-s 48-kHz FLAC clips
(tones + noise), the SONYC upstream layout.

Run: ``.venv/bin/python benchmarks/embed_pipeline.py [--teacher l3-random] [--clips 40]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
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


def make_clip(root: Path, i: int, seconds: float) -> Path:
    import soundfile as sf

    tz = ZoneInfo("America/New_York")
    ts = int(datetime(2019, 3, 4, tzinfo=tz).timestamp()) + 1800 * i
    sensor = f"b827eb{i % 4:06x}"
    day = datetime.fromtimestamp(ts, tz).date().isoformat()
    p = root / f"sensor_{sensor}" / day / f"{ts}.flac"
    p.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(i)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t)
    sf.write(p, (x * rng.uniform(0.2, 1.0)).astype(np.float32), SR, subtype="PCM_16", format="FLAC")
    return p


def bare_inference(teacher, paths: list[Path], hop: float, batch: int) -> tuple[int, float]:
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import read_audio

    spec = teacher.spec
    windows = np.concatenate([
        frame_audio(read_audio(str(p), target_sr=spec.sample_rate)[0], sr=spec.sample_rate,
                    window_samples=spec.window_samples, hop_seconds=hop)[0] for p in paths])
    t0 = time.perf_counter()
    teacher.embed(windows, batch_size=batch)
    return int(windows.shape[0]), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="l3-random")
    ap.add_argument("--clips", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from pipelines.embed_corpus import run
    from sea_core.models.teachers import get_teacher

    teacher = get_teacher(args.teacher)
    hop = teacher.spec.corpus_hop_seconds
    teacher.embed(np.zeros((args.batch_size, teacher.spec.window_samples), np.float32),
                  batch_size=args.batch_size)  # build + trace once, outside the timings
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        up = Path(tmp) / "upstream"
        n_new = max(1, round(args.clips / 10))
        paths = [make_clip(up, i, args.seconds) for i in range(args.clips)]
        # alternate bare / pipeline rounds: other jobs share the cores, so compare neighbours
        for r in range(args.rounds):
            out = Path(tmp) / f"out{r}"
            common = ["--input", str(up), "--output", str(out), "--teacher", args.teacher,
                      "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size)]
            n_bare, t_bare = bare_inference(teacher, paths, hop, args.batch_size)
            t0 = time.perf_counter()
            full = run(common)
            t_full = time.perf_counter() - t0
            windows = full["counts"]["windows"]
            assert windows == n_bare, (windows, n_bare)
            rounds.append({"bare_s": round(t_bare, 3), "pipeline_s": full["timings_s"]["pipeline"],
                           "wall_s": round(t_full, 3),
                           "ratio": round((windows / full["timings_s"]["pipeline"])
                                          / (n_bare / t_bare), 3)})
            new_paths = [make_clip(up, i, args.seconds)
                         for i in range(args.clips, args.clips + n_new)]
            t0 = time.perf_counter()
            refresh = run(common + ["--incremental"])
            t_refresh = time.perf_counter() - t0
            assert refresh["counts"]["inputs"] == n_new
            for q in new_paths:  # the next round starts from the same corpus
                q.unlink()
            rounds[-1].update({"refresh_wall_s": round(t_refresh, 3),
                               "refresh_ratio": round(t_refresh / t_full, 3),
                               "refresh_teacher_ms": ((refresh.get("metrics") or {})
                                                      .get("teacher_ms") or {}).get("sum_ms")})
            print(json.dumps(rounds[-1]), flush=True)

    best = sorted(rounds, key=lambda x: x["ratio"])[len(rounds) // 2]  # median round
    median_refresh = sorted(rounds, key=lambda x: x["refresh_ratio"])[len(rounds) // 2]
    pipe_wps = windows / best["pipeline_s"]
    bare_wps = n_bare / best["bare_s"]
    result = {
        "benchmark": "embed_pipeline",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "teacher": args.teacher, "teacher_id": full["teacher_id"],
        "runner": full["runner"],
        "corpus": {"clips": args.clips, "clip_seconds": args.seconds, "sample_rate": SR,
                   "hop_seconds": hop, "windows": windows},
        "batch_size": args.batch_size, "shard_size": args.shard_size,
        "pipeline": {"windows_per_s": round(pipe_wps, 2),
                     "pipeline_s": best["pipeline_s"], "wall_s": best["wall_s"],
                     "timings_s_last_round": full["timings_s"],
                     "stage_ms": {k: v for k, v in (full.get("metrics") or {}).items()
                                  if isinstance(v, dict)}},
        "bare": {"windows_per_s": round(bare_wps, 2), "seconds": best["bare_s"]},
        "ratio": best["ratio"],
        "rounds": rounds,
        "ratio_goal": ">= 0.9",
        "refresh": {"new_files": n_new, "new_fraction": round(n_new / args.clips, 3),
                    "inputs": refresh["counts"]["inputs"],
                    "wall_s": median_refresh["refresh_wall_s"],
                    "full_wall_s": median_refresh["wall_s"],
                    "timings_s_last_round": refresh["timings_s"],
                    "ratio": median_refresh["refresh_ratio"], "ratio_goal": "<= 0.15"},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m_after": round(os.getloadavg()[0], 2)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("teacher_id", "ratio")} |
                     {"pipeline_wps": result["pipeline"]["windows_per_s"],
                      "bare_wps": result["bare"]["windows_per_s"],
                      "refresh_ratio": result["refresh"]["ratio"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
