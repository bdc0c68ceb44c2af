"""The default local runner (FnApiRunner ``multi_threading``, one worker per CPU) is safe to use.

* No worker thread sizes values for Beam's state cache (``statecache.get_deep_size`` ->
  objsize walks every loaded module's globals): such a walk was on the stack of a SIGABRT seen
  once with threads (``pipelines/runners.py``, ``LocalFnApiRunner``). Checked with a counter;
  the in-process worker (which keeps the cache) shows the counter is live.
* Soak: the training-set job (the one with a side input) and the embed job (a real Keras
  teacher in every worker thread) run many times under the default runner in a child process
  (a crash there fails this test with its faulthandler dump instead of killing the suite); every
  output is byte-identical to the single in-process worker's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_thread_workers_never_size_state_cache(tmp_path, monkeypatch):
    from apache_beam.runners.worker import statecache

    from pipelines.build_training_set import build_training_set
    from pipelines.fit_pca import fit_pca
    from pipelines.runners import DEFAULT_LOCAL_MODE
    from pipelines.select import parse_args as select_args
    from pipelines.select import run as run_select
    from test_training_set_pipeline import make_frames

    calls = []
    real = statecache.get_deep_size
    monkeypatch.setattr(statecache, "get_deep_size", lambda *objs: calls.append(1) or real(*objs))
    frames = make_frames(tmp_path / "run")
    run_select(*select_args(["--frames", str(frames), "--method", "random", "--fraction", "0.5",
                "--output", str(tmp_path / "sel")]))
    fit_pca(frames=str(frames), selection=str(tmp_path / "sel"), output=str(tmp_path / "pca"),
            dims=(8,))
    common = dict(frames=str(frames), pca=str(tmp_path / "pca"), dims=(8,))
    assert DEFAULT_LOCAL_MODE == "multi_threading"
    calls.clear()
    build_training_set(output=str(tmp_path / "threads"), **common)  # default runner
    assert calls == []
    build_training_set(output=str(tmp_path / "one"), beam_args=["--direct_running_mode=in_memory"],
                       **common)
    assert calls, "the in-process worker keeps Beam's cache: the counter must see its side input"


SOAK = textwrap.dedent("""
    import faulthandler, sys, time
    from pathlib import Path
    faulthandler.enable()
    import keras
    from pipelines.build_training_set import build_training_set
    from pipelines.embed_corpus import parse_args, run
    from pipelines.fit_pca import fit_pca
    from pipelines.select import parse_args as select_args
    from pipelines.select import run as run_select
    from test_embed_pipeline import TINY_DIM, TINY_SR, app_args, make_corpus, part_files
    from test_training_set_pipeline import make_frames

    tmp, n_ts, n_embed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    t0 = time.perf_counter()
    frames = make_frames(tmp / "run")
    run_select(*select_args(["--frames", str(frames), "--method", "random", "--fraction", "0.5",
                "--output", str(tmp / "sel")]))
    fit_pca(frames=str(frames), selection=str(tmp / "sel"), output=str(tmp / "pca"), dims=(16, 8))

    def shards(out):
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.parquet"))}

    def ts(name, args=None):
        build_training_set(frames=str(frames), pca=str(tmp / "pca"), output=str(tmp / name),
                           dims=(16, 8), beam_args=args)
        return shards(tmp / name)

    ref = ts("ts-ref", ["--direct_running_mode=in_memory"])
    assert ref
    for i in range(n_ts):
        assert ts(f"ts-{i}") == ref, f"training set run {i} differs from the in-process run"

    keras.utils.set_random_seed(0)
    inp = keras.Input((TINY_SR,))
    x = keras.layers.Reshape((100, TINY_SR // 100))(inp)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Dense(32, activation="tanh")(x))
    keras.Model(inp, keras.layers.Dense(TINY_DIM)(x)).save(tmp / "tiny.keras")
    corpus = (tmp / "corpus",) + make_corpus(tmp / "corpus")
    run(*parse_args(app_args(corpus, tmp / "tiny.keras", tmp / "e-ref") + ["--direct_running_mode=in_memory"]))
    ref = part_files(tmp / "e-ref")
    assert ref
    for i in range(n_embed):
        s = run(*parse_args(app_args(corpus, tmp / "tiny.keras", tmp / f"e-{i}")))
        assert s["runner"].startswith("FnApiRunner(multi_threading"), s["runner"]
        assert part_files(tmp / f"e-{i}") == ref, f"embed run {i} differs from the in-process run"
    print(f"SOAK OK {n_ts} training-set + {n_embed} embed runs in {time.perf_counter() - t0:.1f} s")
""")


def _soak(tmp_path, n_ts: int, n_embed: int, timeout: int) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", SOAK, str(tmp_path), str(n_ts), str(n_embed)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and "SOAK OK" in proc.stdout, (
        f"soak child exited {proc.returncode} (-6 = SIGABRT)\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-6000:]}")
    return proc.stdout


@pytest.mark.slow
def test_soak_default_runner_training_set_and_embed(tmp_path):
    print(_soak(tmp_path, n_ts=40, n_embed=8, timeout=1800))
