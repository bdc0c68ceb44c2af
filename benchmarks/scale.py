"""Scale benchmark: select -> fit-pca -> build-training-set on DaskRunner at growing corpus sizes.

For each N (windows) a synthetic frames dataset of realistic row size is written
(512-d float32 teacher embedding + 8,000 int16 student samples per window: the
1-s, 8-kHz student window that issue 16 makes the default; grouped sensors x days,
~2,600 windows per sensor-day like a SONYC sensor at one 10-s clip per 5 min),
then a fresh ``dask.distributed`` LocalCluster (2 worker processes, 1 thread
each) runs the three Beam stages, driven from a separate driver process.

Recorded per N: wall time per stage, driver peak RSS (the driver process'
``ru_maxrss``), worker peak RSS (each worker's ``ru_maxrss``), bytes written
(selection, PCA artifact, training set) and the growth exponent of each figure
(least-squares slope of log(figure) vs log(N)). Goals (issue 15): driver peak RSS
at the largest N <= 1.2 x that at the smallest; wall time growing <= linearly.
Also one 80,000-window group sampled in a separate process (peak RSS < 2 GB goal).

    PYTHONPATH=$PWD python -m benchmarks.scale --sizes 10000,100000,1000000 --work /tmp/sea-scale
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
EMB_DIM = 512
AUDIO_SAMPLES = 8_000
WINDOWS_PER_SENSOR_DAY = 2_600
SENSORS = 5


def peak_rss_bytes() -> int:
    """This process' peak resident set (``VmHWM`` of /proc/self/status).

    Not ``getrusage().ru_maxrss``: on Linux that high-water mark survives fork + exec,
    so a child started by a big parent reports the parent's RSS (seen: three different
    processes all reporting the benchmark parent's 556 MB).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def make_frames(root: Path, n: int, seed: int = 0) -> dict:
    """Synthetic frames dataset of ``n`` windows in the embed layout; returns its description."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sea_core.datasets.layout import frames_partition_dir
    from sea_core.datasets.schema import frames_schema

    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, size=(32, EMB_DIM)).astype(np.float32)
    parts = max(1, round(n / WINDOWS_PER_SENSOR_DAY))
    sizes = np.full(parts, n // parts)
    sizes[: n - sizes.sum()] += 1
    schema = frames_schema(EMB_DIM, AUDIO_SAMPLES)
    t0 = time.perf_counter()
    for i, rows in enumerate(sizes):
        sensor = f"s{i % SENSORS:02d}"
        day_i = i // SENSORS
        day = (np.datetime64("2019-01-01") + day_i).astype(str)
        start = 1546300800000 + day_i * 86_400_000 + (np.arange(rows) // 9) * 300_000
        emb = np.abs(centres[rng.integers(0, 32, rows)] + 0.3 * rng.standard_normal((rows, EMB_DIM),
                                                                                      dtype=np.float32))
        audio = rng.integers(-300, 300, rows * AUDIO_SAMPLES, dtype=np.int16)
        rec = [f"{sensor}{day}{j // 9:05d}" for j in range(rows)]
        table = pa.table({
            "recording_id": rec, "uri": [f"mem://{r}.flac" for r in rec],
            "sensor": [sensor] * rows, "day": [day] * rows,
            "start_time": pa.array(start, pa.timestamp("ms", tz="UTC")),
            "window_index": pa.array(np.arange(rows) % 9, pa.int32()),
            "window_start_s": pa.array(np.arange(rows) % 9 * 1.0, pa.float32()),
            "spl_dba": pa.array(rng.uniform(50, 80, rows), pa.float32()),
            "spl_source": ["computed"] * rows,
            "relevance": pa.array(rng.uniform(0.05, 1.0, rows), pa.float32()),
            "teacher_id": ["bench-teacher"] * rows,
            "teacher_emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), EMB_DIM),
            "student_audio": pa.FixedSizeListArray.from_arrays(pa.array(audio), AUDIO_SAMPLES),
        }, schema=schema)
        folder = root / "frames" / frames_partition_dir(sensor, day)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-00000.parquet", compression="zstd", row_group_size=4096)
        del table, emb, audio
    return {"windows": int(n), "partitions": int(parts), "bytes": _dir_bytes(root / "frames"),
            "seconds": round(time.perf_counter() - t0, 2)}


def driver(frames: str, out: str, address: str, fraction: float) -> dict:
    """The three stages on DaskRunner (run in its own process: its ru_maxrss is the driver's peak)."""
    from pipelines.build_training_set import build_training_set
    from pipelines.fit_pca import fit_pca
    from pipelines.select import run as run_select

    beam = ["--runner=DaskRunner", f"--dask_client_address={address}"]
    times = {}
    t0 = time.perf_counter()
    sel = run_select(["--frames", frames, "--output", f"{out}/selection", "--method",
                      "diversity+relevance", "--fraction", str(fraction)] + beam)
    times["select"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    art = fit_pca(frames=frames, selection=f"{out}/selection", output=f"{out}/pca", dims=(128, 64),
                  beam_args=beam)
    times["fit_pca"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    card = build_training_set(frames=frames, pca=f"{out}/pca", output=f"{out}/trainset",
                              dims=(128, 64), beam_args=beam)
    times["build_training_set"] = time.perf_counter() - t0
    return {"seconds": {k: round(v, 2) for k, v in times.items()},
            "driver_peak_rss_bytes": peak_rss_bytes(),
            "selected": sel["n_selected"], "n_fit": art.n_fit, "train_rows": card["counts"]}


def group_memory(n: int, fraction: float) -> dict:
    """Sample one ``n``-window group (in its own process: ru_maxrss is the group's peak)."""
    from sea_core.sampling import sample_group_bounded

    rng = np.random.default_rng(1)
    emb = np.abs(rng.standard_normal((n, EMB_DIM), dtype=np.float32))
    rel = rng.uniform(0.05, 1, n)
    times = np.sort(rng.uniform(0, 30 * 86400, n))  # a month group
    k = int(np.ceil(fraction * n))
    t0 = time.perf_counter()
    r = sample_group_bounded(emb, rel, times, k=k, method="diversity+relevance", key=("s", "2019-01"))
    return {"windows": n, "k": k, "blocks": len(r.info.get("blocks", [])) or 1,
            "n_selected": int(r.indices.size), "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_bytes": peak_rss_bytes()}


def _subprocess(args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1])))
    res = subprocess.run([sys.executable, "-m", "benchmarks.scale", *args], capture_output=True, text=True,
                         env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"benchmarks.scale {args[0]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _exponent(ns, values) -> float | None:
    pairs = [(n, v) for n, v in zip(ns, values) if v and v > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def run_size(n: int, work: Path, fraction: float) -> dict:
    import distributed

    root = work / f"n{n}"
    shutil.rmtree(root, ignore_errors=True)
    frames = make_frames(root / "frames_run", n)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, memory_limit=0) as cluster, \
            distributed.Client(cluster) as client:
        t0 = time.perf_counter()
        res = _subprocess(["driver", str(root / "frames_run"), str(root / "out"),
                           cluster.scheduler_address, str(fraction)])
        wall = time.perf_counter() - t0
        worker_rss = client.run(peak_rss_bytes)
    written = {name: _dir_bytes(root / "out" / name) for name in ("selection", "pca", "trainset")}
    shutil.rmtree(root, ignore_errors=True)  # disk: one size at a time
    return {"windows": n, "frames": frames, "wall_seconds": round(wall, 2), **res,
            "worker_peak_rss_bytes": max(worker_rss.values()), "workers": len(worker_rss),
            "bytes_written": {**written, "total": sum(written.values())}}


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "driver":
        print(json.dumps(driver(argv[1], argv[2], argv[3], float(argv[4]))))
        return 0
    if argv and argv[0] == "group":
        print(json.dumps(group_memory(int(argv[1]), float(argv[2]))))
        return 0
    ap = argparse.ArgumentParser(prog="benchmarks.scale")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--work", default="/tmp/sea-scale-bench")
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--group-windows", type=int, default=80_000)
    ap.add_argument("--group-fraction", type=float, default=0.05)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()[0]
    runs = []
    doc = {"created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                       "load_avg_1min_before": load},
           "settings": {"emb_dim": EMB_DIM, "student_samples": AUDIO_SAMPLES,
                        "windows_per_sensor_day": WINDOWS_PER_SENSOR_DAY, "sensors": SENSORS,
                        "fraction": args.fraction, "method": "diversity+relevance/scalable",
                        "runner": "DaskRunner, LocalCluster 2 worker processes x 1 thread",
                        "dims": [128, 64]},
           "runs": runs}
    if args.group_windows:
        doc["group"] = _subprocess(["group", str(args.group_windows), str(args.group_fraction)])
        doc["group"]["goal_peak_rss_bytes"] = 2 * 1024 ** 3
        doc["group"]["meets_goal"] = doc["group"]["peak_rss_bytes"] < 2 * 1024 ** 3
        print(json.dumps(doc["group"]), flush=True)
    for n in sizes:
        print(f"scale: N={n} ...", flush=True)
        runs.append(run_size(n, work, args.fraction))
        print(json.dumps(runs[-1]), flush=True)
        _summarise(doc)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    _summarise(doc)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=2))
    return 0


def _summarise(doc: dict) -> None:
    runs = doc["runs"]
    ns = [r["windows"] for r in runs]
    doc["growth_exponents"] = {
        "wall_seconds": _exponent(ns, [r["wall_seconds"] for r in runs]),
        **{f"seconds_{k}": _exponent(ns, [r["seconds"][k] for r in runs])
           for k in ("select", "fit_pca", "build_training_set")},
        "driver_peak_rss_bytes": _exponent(ns, [r["driver_peak_rss_bytes"] for r in runs]),
        "worker_peak_rss_bytes": _exponent(ns, [r["worker_peak_rss_bytes"] for r in runs]),
        "bytes_written": _exponent(ns, [r["bytes_written"]["total"] for r in runs]),
    }
    if len(runs) >= 2:
        ratio = runs[-1]["driver_peak_rss_bytes"] / runs[0]["driver_peak_rss_bytes"]
        doc["goals"] = {"driver_rss_ratio_largest_vs_smallest": round(ratio, 3),
                        "driver_rss_goal_met": ratio <= 1.2,
                        "wall_time_at_most_linear": (doc["growth_exponents"]["wall_seconds"] or 0) <= 1.0,
                        "sizes": ns}


if __name__ == "__main__":
    raise SystemExit(main())
