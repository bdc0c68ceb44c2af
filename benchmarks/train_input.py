"""Trainer input pipeline vs training step, and memory as the dataset grows 10x.

Writes ``benchmarks/results/train_input.json``:

* ``input_examples_per_s``: the streaming ``tf.data`` pipeline alone (Parquet ->
  batches of float audio + targets), drained without training;
* ``train_examples_per_s``: full training steps (student with front-end, Adam);
* ``ratio`` = input / train (goal >= 3: input never bottlenecks);
* peak RSS of streaming one epoch over a 1x and a 10x dataset, each in its own
  subprocess (goal: flat, ratio <= 1.25).

Run: ``.venv/bin/python benchmarks/train_input.py [--rows 2048] [--emb-dim 128]``
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "train_input.json"


def make_set(root: Path, rows: int, emb_dim: int, samples: int = 8000, shard_rows: int = 4096) -> Path:
    from sea_core.trainset import training_table, write_card, write_shard

    rng = np.random.default_rng(0)
    for split, n in (("train", rows), ("validate", max(64, rows // 10))):
        for s, start in enumerate(range(0, n, shard_rows)):
            m = min(shard_rows, n - start)
            audio = rng.integers(-3000, 3000, size=(m, samples), dtype=np.int16)
            table = training_table(window_ids=[f"{split}:{start + i}" for i in range(m)],
                                   sensors=["s"] * m, days=["d"] * m, audio_int16=audio,
                                   targets={emb_dim: rng.standard_normal((m, emb_dim), dtype=np.float32)})
            write_shard(root / split / f"part-{s:05d}.parquet", table)
    write_card(root, dims=[emb_dim], student_samples=samples, teacher_id="benchmark")
    return root


def drain(root: str, emb_dim: int, batch: int) -> dict:
    """Stream the train split once; report examples/s and peak RSS (run in a subprocess)."""
    from sea_core.train import TrainingSet, make_dataset

    data = TrainingSet(root)
    files, rows = data.check_files("train", emb_dim)
    ds = make_dataset(files, emb_dim=emb_dim, student_samples=data.student_samples, batch_size=batch,
                      shuffle=True, seed=0, shuffle_buffer=4096)
    start = time.perf_counter()
    seen = 0
    for x, _ in ds:
        seen += int(x.shape[0])
    seconds = time.perf_counter() - start
    return {"rows": rows, "seen": seen, "seconds": seconds, "examples_per_s": seen / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def train_speed(root: str, emb_dim: int, batch: int, steps: int) -> dict:
    from sea_core.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        train(TrainConfig(data=root, out=out, emb_dim=emb_dim, batch_size=batch, epochs=1,
                          steps_per_epoch=2, validation_steps=1, register=False, progress=False))
    with tempfile.TemporaryDirectory() as out:  # timed run (graph already traced once above)
        start = time.perf_counter()
        summary = train(TrainConfig(data=root, out=out, emb_dim=emb_dim, batch_size=batch, epochs=1,
                                    steps_per_epoch=steps, validation_steps=1, register=False,
                                    progress=False, checkpoint_every=10**9))
        seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "examples_per_s": steps * batch / seconds,
            "train_seconds_in_loop": summary["train_seconds"]}


def _subprocess(func: str, *args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from benchmarks.train_input import {func}; print(json.dumps({func}(*{args!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--emb-dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = make_set(Path(tmp) / "x1", args.rows, args.emb_dim)
        big = make_set(Path(tmp) / "x10", args.rows * 10, args.emb_dim)
        mem_small = _subprocess("drain", str(small), args.emb_dim, args.batch)
        mem_big = _subprocess("drain", str(big), args.emb_dim, args.batch)
        speed = _subprocess("train_speed", str(small), args.emb_dim, args.batch, args.steps)
    ratio = mem_small["examples_per_s"] / speed["examples_per_s"]
    rss_ratio = mem_big["peak_rss_mb"] / mem_small["peak_rss_mb"]
    result = {
        "benchmark": "train_input", "date": datetime.now(timezone.utc).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "emb_dim": args.emb_dim, "batch": args.batch,
        "input_pipeline": mem_small, "input_pipeline_10x": mem_big, "training": speed,
        "input_over_train_ratio": ratio, "goal_ratio": 3.0, "ratio_met": ratio >= 3.0,
        "peak_rss_ratio_10x": rss_ratio, "goal_rss_ratio": 1.25, "memory_flat": rss_ratio <= 1.25,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("input_over_train_ratio", "ratio_met",
                                             "peak_rss_ratio_10x", "memory_flat")}, indent=2))


if __name__ == "__main__":
    main()
