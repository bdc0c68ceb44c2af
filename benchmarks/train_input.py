"""Trainer input pipeline vs training step, and memory as the dataset grows 10x.

Writes ``benchmarks/results/train_input.json``. The machine may be shared with
other heavy jobs, so every verdict is a RATIO of two figures measured in the
same run (the speed figures in the same process, in alternating rounds):

* ``speed``: in one subprocess, the student with front-end + Adam exactly as
  ``sea train`` builds it (``sea_core.train.make_train_step``, op determinism):

  - ``input_examples_per_s``: the streaming ``tf.data`` pipeline alone
    (``sea_core.train.make_dataset`` as in training: shuffled, batched, float
    audio), one whole epoch drained per round, start-up (shuffle-buffer fill)
    included;
  - ``train_examples_per_s``: training steps alone, fed from batches already
    in memory (graph traced beforehand; each step synchronised as in the loop);
  - ``input_over_train_ratio`` = median over rounds of input / train
    (goal >= 3: the input pipeline never bottlenecks);
  - ``streaming_over_memory_ratio``: median over rounds of steps fed straight
    from the pipeline vs from memory (~1.0 when the input never stalls a step;
    informational: on 2 cores the pipeline's reading shares the CPU).

* ``memory``: peak RSS (``ru_maxrss`` of a fresh subprocess per set) of
  streaming one whole shuffled epoch over a training set and over one 10x as
  big; ``peak_rss_ratio_10x`` = big / small (goal <= 1.2: flat). The small set
  already has more shards than the interleave's cycle length and more rows
  than the shuffle buffer, so the comparison is between two steady states and
  isolates the dataset size.

Sets are written in the training-set format (``sea_core.datasets.trainset``, schema
``training``, 1-s 8-kHz int16 windows, row groups of
``TRAINING_SET.row_group_rows``).

Run: ``.venv/bin/python benchmarks/train_input.py`` (about 3-5 min on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
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
GOAL_RATIO = 3.0
GOAL_RSS_RATIO = 1.2


def make_set(root: Path, rows: int, emb_dim: int, samples: int = 8000, shard_rows: int = 2048,
             seed: int = 0) -> Path:
    """Write a training set (train + validate splits) of random audio/targets, shard by shard."""
    from sea_core.datasets.trainset import training_table, write_card, write_shard

    rng = np.random.default_rng(seed)
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


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def drain(root: str, emb_dim: int, batch: int) -> dict:
    """Stream one shuffled epoch of the train split as ``sea train`` does (run in a fresh subprocess)."""
    import tensorflow as tf  # noqa: F401  (imported before the baseline)

    from sea_core.params import TRAIN
    from sea_core.train import TrainingSet, make_dataset

    data = TrainingSet(root)
    files, rows = data.check_files("train", emb_dim)
    baseline = _maxrss_mb()
    ds = make_dataset(files, emb_dim=emb_dim, student_samples=data.student_samples, batch_size=batch,
                      shuffle=True, seed=TRAIN.seed, shuffle_buffer=TRAIN.shuffle_buffer)
    start = time.perf_counter()
    seen = 0
    for x, _ in ds:
        seen += int(x.shape[0])
    seconds = time.perf_counter() - start
    peak = _maxrss_mb()
    return {"rows": rows, "shards": len(files), "seen": seen, "seconds": seconds,
            "examples_per_s": seen / seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak,
            "growth_mb": peak - baseline, "shuffle_buffer": TRAIN.shuffle_buffer}


def speed(root: str, emb_dim: int, batch: int, steps: int, rounds: int) -> dict:
    """Input pipeline vs training step in one process, alternating rounds (run in a subprocess)."""
    import keras
    import tensorflow as tf

    from sea_core.models.students import build_student
    from sea_core.params import STUDENT_MEL64, TRAIN, StudentSpec
    from sea_core.train import TrainingSet, make_dataset, make_train_step

    data = TrainingSet(root)
    files, rows = data.check_files("train", emb_dim)
    keras.utils.set_random_seed(TRAIN.seed)
    tf.config.experimental.enable_op_determinism()  # as in train()
    spec = StudentSpec(emb_dim=emb_dim, head="relu",
                       window_seconds=data.student_samples / STUDENT_MEL64.sample_rate)
    model = build_student(spec, with_frontend=True)
    optimizer = keras.optimizers.Adam(learning_rate=TRAIN.learning_rate)
    optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer)

    def dataset(seed: int):
        return make_dataset(files, emb_dim=emb_dim, student_samples=data.student_samples,
                            batch_size=batch, shuffle=True, seed=seed, shuffle_buffer=TRAIN.shuffle_buffer)

    batches = list(dataset(TRAIN.seed).take(steps))
    for x, y in batches[:3]:  # trace + warm up
        float(train_step(x, y)[0])

    def steps_from(batches_iter) -> float:
        start = time.perf_counter()
        n = 0
        for x, y in batches_iter:
            float(train_step(x, y)[0])  # the loop reads the loss each step
            n += 1
        return n * batch / (time.perf_counter() - start)

    per_round = []
    for r in range(rounds):
        start = time.perf_counter()
        seen = 0
        for x, _ in dataset(TRAIN.seed + r):
            seen += int(x.shape[0])
        input_eps = seen / (time.perf_counter() - start)
        train_eps = steps_from(batches)
        # the same steps fed straight from the pipeline; first step untimed (start-up)
        stream = iter(dataset(TRAIN.seed + rounds + r).take(steps + 1))
        x, y = next(stream)
        float(train_step(x, y)[0])
        streaming_eps = steps_from(stream)
        per_round.append({"input_examples": seen, "input_examples_per_s": input_eps,
                          "train_steps": len(batches), "train_examples_per_s": train_eps,
                          "ratio": input_eps / train_eps, "streaming_train_examples_per_s": streaming_eps,
                          "streaming_over_memory": streaming_eps / train_eps})
    memory_eps = statistics.median(r["train_examples_per_s"] for r in per_round)
    return {"rows": rows, "shards": len(files), "rounds": per_round,
            "input_examples_per_s": statistics.median(r["input_examples_per_s"] for r in per_round),
            "train_examples_per_s": memory_eps,
            "train_steps_per_s": memory_eps / batch,
            "input_over_train_ratio": statistics.median(r["ratio"] for r in per_round),
            "input_over_train_ratio_min": min(r["ratio"] for r in per_round),
            "streaming_train_examples_per_s": statistics.median(
                r["streaming_train_examples_per_s"] for r in per_round),
            "streaming_over_memory_ratio": statistics.median(r["streaming_over_memory"] for r in per_round),
            "model_params": int(model.count_params())}


def _subprocess(func: str, *args) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from benchmarks.train_input import {func}; print(json.dumps({func}(*{args!r})))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        raise RuntimeError(f"benchmark subprocess {func}{args!r} failed ({out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8192, help="train rows of the 1x set")
    parser.add_argument("--shard-rows", type=int, default=2048)
    parser.add_argument("--emb-dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tmp", default=None, help="directory for the generated sets (default: system temp)")
    args = parser.parse_args()

    from sea_core.params import TRAIN, TRAINING_SET

    started = time.perf_counter()
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="sea-train-bench-", dir=args.tmp)
    try:
        t = time.perf_counter()
        small = make_set(Path(tmp) / "x1", args.rows, args.emb_dim, shard_rows=args.shard_rows)
        big = make_set(Path(tmp) / "x10", args.rows * 10, args.emb_dim, shard_rows=args.shard_rows, seed=1)
        generate_s = time.perf_counter() - t
        disk = {name: sum(f.stat().st_size for f in (Path(tmp) / name / "train").glob("*.parquet"))
                for name in ("x1", "x10")}
        speed_result = _subprocess("speed", str(small), args.emb_dim, args.batch, args.steps, args.rounds)
        mem_small = _subprocess("drain", str(small), args.emb_dim, args.batch)
        mem_big = _subprocess("drain", str(big), args.emb_dim, args.batch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratio = speed_result["input_over_train_ratio"]
    rss_ratio = mem_big["peak_rss_mb"] / mem_small["peak_rss_mb"]
    result = {
        "benchmark": "train_input", "date": datetime.now(timezone.utc).isoformat(),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(), "loadavg_start": load_before,
                    "loadavg_end": os.getloadavg(),
                    "note": "shared machine: compare the ratios, not absolute rates"},
        "config": {"emb_dim": args.emb_dim, "head": "relu", "batch": args.batch,
                   "window_samples": 8000, "shard_rows": args.shard_rows,
                   "row_group_rows": TRAINING_SET.row_group_rows,
                   "shuffle_buffer": TRAIN.shuffle_buffer, "rows_1x": args.rows, "rows_10x": args.rows * 10,
                   "train_bytes_on_disk": disk, "steps_per_round": args.steps, "rounds": args.rounds,
                   "data": "uniform random int16 audio in [-3000, 3000), N(0, 1) targets"},
        "speed": speed_result,
        "input_examples_per_s": speed_result["input_examples_per_s"],
        "train_examples_per_s": speed_result["train_examples_per_s"],
        "input_over_train_ratio": ratio, "goal_ratio": GOAL_RATIO, "ratio_met": ratio >= GOAL_RATIO,
        "memory": {"x1": mem_small, "x10": mem_big},
        "peak_rss_mb_1x": mem_small["peak_rss_mb"], "peak_rss_mb_10x": mem_big["peak_rss_mb"],
        "peak_rss_ratio_10x": rss_ratio, "goal_rss_ratio": GOAL_RSS_RATIO,
        "memory_flat": rss_ratio <= GOAL_RSS_RATIO,
        "rss_growth_over_baseline_mb": {"x1": mem_small["growth_mb"], "x10": mem_big["growth_mb"]},
        "generate_seconds": generate_s, "total_seconds": time.perf_counter() - started,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in (
        "input_examples_per_s", "train_examples_per_s", "input_over_train_ratio", "ratio_met",
        "peak_rss_mb_1x", "peak_rss_mb_10x", "peak_rss_ratio_10x", "memory_flat", "total_seconds")}, indent=2))


if __name__ == "__main__":
    main()
