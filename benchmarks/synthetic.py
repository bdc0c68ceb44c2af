"""Synthetic inputs shared by the benchmarks and the tests.

* :func:`frames_table` / :func:`write_frames_partition`: one (sensor, day) partition of a
  frames dataset in the embed pipeline's layout and schema, from arrays the caller draws;
* :func:`chain_argv` / :func:`run_chain`: the ``sea pipeline`` select -> fit-pca ->
  build-training-set chain on a frames dataset (one set of arguments for every caller).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

CHAIN_STAGES = ("select", "fit-pca", "build-training-set")
CHAIN_DIRS = {"select": "selection", "fit-pca": "pca", "build-training-set": "trainset"}
"""Output folder of each chain stage under the chain's output directory."""


def frames_table(*, sensor: str, day: str, recording_ids, window_index, start_ms, window_start_s,
                 spl_dba, relevance, emb: np.ndarray, audio: np.ndarray, teacher_id: str):
    """Frames rows of one (sensor, day) with ``frames_schema(emb.shape[1], audio.shape[1])``."""
    import pyarrow as pa

    from sea_core.datasets.schema import frames_schema

    n, (dim, samples) = len(recording_ids), (emb.shape[1], audio.shape[1])
    rec = list(recording_ids)
    return pa.table({
        "recording_id": rec, "uri": [f"mem://{r}.flac" for r in rec],
        "sensor": [sensor] * n, "day": [day] * n,
        "start_time": pa.array(np.broadcast_to(np.asarray(start_ms, np.int64), (n,)),
                               pa.timestamp("ms", tz="UTC")),
        "window_index": pa.array(window_index, pa.int32()),
        "window_start_s": pa.array(window_start_s, pa.float32()),
        "spl_dba": pa.array(spl_dba, pa.float32()),
        "spl_source": ["computed"] * n,
        "relevance": pa.array(relevance, pa.float32()),
        "teacher_id": [teacher_id] * n,
        "teacher_emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.astype(np.float32).ravel()), dim),
        "student_audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.astype(np.int16).ravel()),
                                                           samples),
    }, schema=frames_schema(dim, samples))


def write_frames_partition(root: Path, table, **parquet_options) -> Path:
    """Write ``table`` (one sensor-day) as ``root/frames/<partition dir>/part-00000.parquet``."""
    import pyarrow.parquet as pq

    from sea_core.datasets.layout import frames_partition_dir

    sensor, day = table.column("sensor")[0].as_py(), table.column("day")[0].as_py()
    folder = Path(root) / "frames" / frames_partition_dir(sensor, day)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    pq.write_table(table, path, **parquet_options)
    return path


def chain_argv(frames: str, out: str, *, fraction: float, dims, method: str = "diversity+relevance",
               beam_args=(), local_fit_pca: bool = False) -> dict[str, list[str]]:
    """``sea pipeline <stage>`` arguments of the chain; outputs in ``out/<CHAIN_DIRS[stage]>``.

    ``local_fit_pca``: fit-pca on the default in-process runner (its float64 merge order,
    hence its bytes, fixed), the other stages on ``beam_args``.
    """
    d = {k: f"{out}/{v}" for k, v in CHAIN_DIRS.items()}
    dims = ",".join(str(int(x)) for x in dims)
    beam = list(beam_args)
    return {
        "select": ["--frames", str(frames), "--output", d["select"], "--method", method,
                   "--fraction", str(fraction), *beam],
        "fit-pca": ["--frames", str(frames), "--selection", d["select"], "--output", d["fit-pca"],
                    "--dims", dims, *([] if local_fit_pca else beam)],
        "build-training-set": ["--frames", str(frames), "--pca", d["fit-pca"],
                               "--output", d["build-training-set"], "--dims", dims, *beam],
    }


def run_chain(frames: str, out: str, **kwargs) -> dict[str, float]:
    """Run the chain through ``sea pipeline ...`` (:func:`chain_argv` arguments); wall seconds per stage."""
    from pipelines.job.cli import main

    seconds = {}
    for stage, argv in chain_argv(frames, out, **kwargs).items():
        t0 = time.perf_counter()
        rc = main(["pipeline", stage, *argv])
        if rc != 0:
            raise RuntimeError(f"sea pipeline {stage} {' '.join(argv)} exited {rc}")
        seconds[stage] = round(time.perf_counter() - t0, 2)
    return seconds
