"""Every Beam stage against a real S3-protocol object store (moto's server) on a Dask LocalCluster.

embed -> select -> fit-pca -> build-training-set run with ``s3://`` inputs and
outputs on ``--runner=DaskRunner`` (2 worker processes), and must equal the same
stages run on local paths: frames, selection, PCA (1e-6) and training set.
Nothing may be written to local disk outside temp dirs (the test runs from an
empty working directory and checks it stays empty).

The second test runs the whole ``sea run --corpus s3://... --out s3://...
--runner=DaskRunner`` and checks the bucket holds every stage's output and the
report, that nothing local changed outside temp dirs, and that its data stages
equal a local-path run.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (pip install -e .[test])")
s3fs = pytest.importorskip("s3fs", reason="needs s3fs (pip install -e .[test])")
distributed = pytest.importorskip("distributed", reason="needs the dask extra")

from pipelines.build_training_set import build_training_set  # noqa: E402
from pipelines.embed_corpus import parse_args as embed_args  # noqa: E402
from pipelines.embed_corpus import run as run_embed  # noqa: E402
from pipelines.fit_pca import fit_pca  # noqa: E402
from pipelines.select import parse_args as select_args  # noqa: E402
from pipelines.select import run as run_select  # noqa: E402
from sea_core.reduction import ReductionArtifact  # noqa: E402
from tests.conftest import TINY_SR  # noqa: E402
from tests.test_embed_pipeline import make_corpus  # noqa: E402

BUCKET = "sea-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(s3fs filesystem, endpoint) of an in-process moto S3 server; env set for workers."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": endpoint}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before the LocalCluster starts: its workers inherit it
    import fsspec
    fsspec.config.conf.setdefault("s3", {})
    s3fs.S3FileSystem.clear_instance_cache()  # cached instances hold an earlier server's endpoint
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    if fs.exists(BUCKET):  # moto's backend is per process: another module's server left it
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    try:
        yield fs, endpoint
    finally:
        fs.rm(BUCKET, recursive=True)
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _frames(url_or_path) -> pa.Table:
    """Every frames row, without the uri column (s3:// vs local), in a fixed order."""
    import fsspec
    fs, root = fsspec.core.url_to_fs(str(url_or_path))
    tables = []
    for f in sorted(fs.glob(f"{root}/frames/*/*/*.parquet")):
        with fs.open(f, "rb") as fh:
            tables.append(pq.read_table(fh))
    t = pa.concat_tables(tables).drop_columns(["uri"])
    return t.sort_by([("recording_id", "ascending"), ("window_index", "ascending")])


def _parquet_dir(fs, pattern: str) -> dict[str, pa.Table]:
    out = {}
    for f in sorted(fs.glob(pattern)):
        with fs.open(f, "rb") as fh:
            out[f.rsplit("/", 1)[-1]] = pq.read_table(fh)
    return out


def assert_same_selection(fs, s3_root: str, local_root: Path) -> None:
    """The selection shards under ``s3_root`` equal the local run's."""
    s_sel = _parquet_dir(fs, f"{s3_root}/selection/selection.parquet/*.parquet")
    l_sel = {p.name: pq.read_table(p) for p in sorted((local_root / "selection" / "selection.parquet")
                                                       .glob("*.parquet"))}
    assert s_sel.keys() == l_sel.keys() and all(s_sel[k].equals(l_sel[k]) for k in s_sel)


def assert_same_pca(a_art: ReductionArtifact, b_art: ReductionArtifact) -> None:
    """PCA arrays equal to 1e-6 relative (float64 moments merged in another order)."""
    for name in ("mean", "scale", "components", "explained_variance", "explained_variance_ratio"):
        a, b = getattr(a_art, name), getattr(b_art, name)
        assert np.max(np.abs(a - b)) <= 1e-6 * np.max(np.abs(b)), name


def assert_same_trainset(fs, s3_root: str, local_root: Path, dims) -> None:
    """The same training shards: window ids and audio exactly, targets to 1e-5."""
    for split in ("train", "validate", "test"):
        s_ts = _parquet_dir(fs, f"{s3_root}/trainset/{split}/*.parquet")
        l_ts = {p.name: pq.read_table(p) for p in sorted((local_root / "trainset" / split).glob("*.parquet"))}
        assert s_ts.keys() == l_ts.keys()
        for k in s_ts:
            a, b = s_ts[k], l_ts[k]
            assert a.column("window_id").equals(b.column("window_id"))
            assert a.column("student_audio").equals(b.column("student_audio"))
            for d in dims:
                np.testing.assert_allclose(np.asarray(a.column(f"target_{d}").to_pylist()),
                                           np.asarray(b.column(f"target_{d}").to_pylist()),
                                           rtol=1e-5, atol=1e-5)


def _stages(corpus: str, out: str, teacher, beam_args: list[str]):
    embed_argv = ["--input", f"{corpus}/upstream", "--output", f"{out}/embed",
                  "--teacher", str(teacher), "--teacher-opt", "frontend=none",
                  "--teacher-opt", f"sample_rate={TINY_SR}", "--hop-seconds", "1.0",
                  "--batch-size", "8", "--shard-size", "3"]
    summary = run_embed(*embed_args(embed_argv + beam_args))
    sel = run_select(*select_args(["--frames", f"{out}/embed", "--output", f"{out}/selection", "--method",
                      "diversity+relevance", "--fraction", "0.5", "--seed", "3"] + beam_args))
    art = fit_pca(frames=f"{out}/embed", selection=f"{out}/selection", output=f"{out}/pca",
                  dims=(8, 4), beam_args=beam_args)
    card = build_training_set(frames=f"{out}/embed", pca=f"{out}/pca", output=f"{out}/trainset",
                              dims=(8, 4), beam_args=beam_args)
    return summary, sel, art, card


@pytest.mark.dask
@pytest.mark.slow
def test_stages_on_s3_with_dask_equal_a_local_run(s3, tiny_teacher, tmp_path_factory,
                                                  monkeypatch):
    fs, _ = s3
    local_root = tmp_path_factory.mktemp("corpus")
    make_corpus(local_root, n_good=16)
    fs.put(str(local_root / "upstream"), f"{BUCKET}/corpus/upstream", recursive=True)
    assert len(fs.glob(f"{BUCKET}/corpus/upstream/**")) > 16

    local_out = tmp_path_factory.mktemp("local_run")
    lsum, lsel, lart, lcard = _stages(str(local_root), str(local_out), tiny_teacher, [])

    cwd = tmp_path_factory.mktemp("empty_cwd")
    monkeypatch.chdir(cwd)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask_args = ["--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]
        ssum, ssel, sart, scard = _stages(f"s3://{BUCKET}/corpus", f"s3://{BUCKET}/run",
                                          tiny_teacher, dask_args)
    assert list(cwd.iterdir()) == []  # nothing written to local disk by the s3 run

    # embed: same counts and the same frames (uri aside)
    assert ssum["counts"]["ok"] == lsum["counts"]["ok"] > 0
    assert ssum["counts"]["dead_lettered"] == lsum["counts"]["dead_lettered"]
    assert ssum["counts"]["windows"] == lsum["counts"]["windows"]
    assert _frames(f"s3://{BUCKET}/run/embed").equals(_frames(local_out / "embed"))
    assert fs.exists(f"{BUCKET}/run/embed/_SUCCESS") and fs.exists(f"{BUCKET}/run/embed/manifest.parquet")
    assert not fs.exists(f"{BUCKET}/run/embed/_staging")

    # select: the same shards
    assert ssel["n_selected"] == lsel["n_selected"] > 8
    assert_same_selection(fs, f"{BUCKET}/run", local_out)
    assert fs.exists(f"{BUCKET}/run/selection/_SUCCESS")

    # PCA: to 1e-6 relative, read back from the object store
    loaded = ReductionArtifact.load(f"s3://{BUCKET}/run/pca")
    assert_same_pca(loaded, lart)
    assert loaded.n_fit == lart.n_fit and loaded.fingerprint == lart.fingerprint

    # training set: the same shards, rows and card counts
    assert scard["counts"] == lcard["counts"] and scard["shards"] == lcard["shards"]
    assert_same_trainset(fs, f"{BUCKET}/run", local_out, (8, 4))
    assert fs.exists(f"{BUCKET}/run/trainset/_SUCCESS")

    # the trainer's input reads the training set from the object store
    from sea_core.train import TrainingSet
    ts = TrainingSet(f"s3://{BUCKET}/run/trainset")
    files, rows = ts.check_files("train", 8)
    assert rows == scard["counts"]["train"] and all(f.startswith("s3://") for f in files)
    from sea_core.train import _read_batches
    got = sum(len(a) for a, _ in _read_batches(files[0], "target_8", 64))
    assert got == pq.ParquetFile(io.BytesIO(fs.cat(files[0]))).metadata.num_rows


# --- `sea run` end to end with --corpus and --out on s3:// and --runner=DaskRunner -------------

RUN_SYNTH = dict(sensors=2, days=3, clips_per_day=7, labelled_clips=24, labelled_sensors=4, seed=3)


def _tree(root) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under ``root`` (caches and .git aside)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__", ".pytest_cache")]
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.dask
@pytest.mark.slow
def test_sea_run_on_s3_with_dask_equals_a_local_run(s3, tmp_path_factory, monkeypatch):
    """`sea run --corpus s3://... --out s3://... --runner=DaskRunner` (2 worker processes):
    every output lands in the bucket, nothing is written locally outside temp dirs, and
    frames, selection, PCA and training set equal a local-path run of the same corpus."""
    import glob
    import tempfile
    from dataclasses import replace

    from sea_core.params import RUN, SYNTH
    from pipelines.job.run import check_report, main as sea_run_main
    from sea_core.synth import synthesize

    fs, _ = s3
    corpus = tmp_path_factory.mktemp("run_corpus") / "corpus"
    synthesize(corpus, replace(SYNTH, **RUN_SYNTH))
    fs.put(str(corpus), f"{BUCKET}/runcorpus", recursive=True)
    assert fs.isdir(f"{BUCKET}/runcorpus/upstream") and fs.isfile(f"{BUCKET}/runcorpus/downstream/annotations.csv")
    params = replace(RUN, emb_dim=64, epochs=1, fraction=0.2, seed=0)

    from sea_core.paths import cache_dir
    weights = cache_dir()   # the teacher weights cache (read only once populated)
    sea_home = tmp_path_factory.mktemp("sea_home")
    monkeypatch.setenv("SEA_HOME", str(sea_home))
    monkeypatch.setenv("SEA_CACHE_DIR", str(weights))
    # the local-path reference: sea run's own stage functions for the data stages (the full
    # local `sea run` is tests/test_run.py; train/quantize/evaluate would double this test's time)
    from pipelines.job import run as sea_run
    local_out = tmp_path_factory.mktemp("local_sea_run") / "out"
    lembed = sea_run._embed_stage(corpus, local_out / "embed", params, [])
    lsel = sea_run._select_stage(local_out / "embed", local_out / "selection", params, [])
    sea_run._pca_stage(local_out / "embed", local_out / "selection", local_out / "pca", params, [])
    lcard = sea_run._trainset_stage(local_out / "embed", local_out / "pca", local_out / "trainset", params, [])

    cwd = tmp_path_factory.mktemp("empty_cwd_run")
    monkeypatch.chdir(cwd)
    repo = Path(__file__).resolve().parents[1]
    before_repo, before_home = _tree(repo), _tree(sea_home)
    # a private temp dir: other processes' `sea run`s on this machine share /tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmp")))
    before_tmp = set(glob.glob(os.path.join(tempfile.gettempdir(), "sea-run-*")))
    out = f"s3://{BUCKET}/searun"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        argv = ["--corpus", f"s3://{BUCKET}/runcorpus", "--out", out,
                "--emb-dim", "64", "--epochs", "1", "--fraction", "0.2", "--seed", "0",
                "--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]
        assert sea_run_main(argv) == 0
    # nothing written locally outside temp dirs: cwd empty, repo and SEA_HOME unchanged,
    # the run's own temp dir removed
    assert list(cwd.iterdir()) == []
    assert _tree(repo) == before_repo
    assert _tree(sea_home) == before_home
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "sea-run-*"))) == before_tmp

    # the bucket holds every stage record, the stage outputs and the report
    root = out[len("s3://"):]
    for name in ("corpus", "embed", "select", "pca", "compare", "trainset", "train", "quantize", "evaluate"):
        if name != "corpus":
            assert fs.isfile(f"{root}/stages/{name}.json"), name
    assert fs.isfile(f"{root}/stages/config.json")
    for key in ("embed/_SUCCESS", "embed/run_summary.json", "selection/_SUCCESS", "pca/reduction.npz",
                "trainset/_SUCCESS", "train/model.keras", "train/summary.json", "deploy/model.tflite",
                "deploy/deploy_report.json", "deploy/model_data.cc", "evaluation/evaluation.json",
                "report.json", "report.html"):
        assert fs.isfile(f"{root}/{key}"), key
    assert not [k for k in fs.find(root) if ".tmp-" in k]   # every publish completed
    import json
    srep = json.loads(fs.cat(f"{root}/report.json"))
    assert not check_report(srep) and not srep["consistency_problems"]
    assert srep["deploy"]["tflite_path"].startswith(out)   # published locations, not temp ones
    assert "sea-run-" not in json.dumps(srep)
    assert srep["model_sizes"]["student_keras_bytes"] == fs.size(f"{root}/train/model.keras")
    assert fs.cat(f"{root}/report.html").startswith(b"<!")

    # same data as the local run
    assert srep["embed"]["counts"] == lembed["counts"]
    assert srep["selection"]["counts"] == lsel["counts"]
    assert _frames(out + "/embed").equals(_frames(local_out / "embed"))
    assert_same_selection(fs, root, local_out)
    assert_same_pca(ReductionArtifact.load(out + "/pca"), ReductionArtifact.load(local_out / "pca"))
    assert srep["dataset_card"]["counts"] == lcard["counts"]
    assert_same_trainset(fs, root, local_out, (64,))
