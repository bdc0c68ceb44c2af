"""select -> fit-pca -> build-training-set on a frames dataset written in the embed layout."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.synthetic import frames_table, write_frames_partition
from pipelines.build_training_set import assign_splits, build_training_set
from pipelines.fit_pca import fit_pca
from pipelines.select import parse_args as select_args
from pipelines.select import run as select_job
from sea_core.datasets.frames import list_partitions
from sea_core.errors import DataError, ParameterError, SchemaError
from sea_core.reduction import ReductionArtifact


def run_select(argv: list[str]) -> dict:
    """The select job on ``sea pipeline select`` flags; returns ``selection.json``'s content."""
    return select_job(*select_args(argv))


EMB = 48
SAMPLES = 800  # short student windows keep the files small
SENSORS = ("a1", "b2", "c3")
DAYS = ("2019-03-04", "2019-03-05", "2019-03-06")


def make_frames(root: Path, *, rows_per_part: int = 30, seed: int = 0) -> Path:
    """A frames dataset in the embed pipeline's layout with clustered embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, size=(6, EMB))
    for s_i, sensor in enumerate(SENSORS):
        for d_i, day in enumerate(DAYS):
            n = rows_per_part + s_i + d_i  # unequal group sizes
            emb = np.abs(centres[rng.integers(0, 6, n)] + 0.3 * rng.standard_normal((n, EMB)))
            spl, relevance = rng.uniform(50, 80, n), rng.uniform(0.05, 1.0, n)
            audio = rng.integers(-2000, 2000, n * SAMPLES).astype(np.int16).reshape(n, SAMPLES)
            write_frames_partition(root, frames_table(
                sensor=sensor, day=day, recording_ids=[f"{sensor}{day}{i // 5:03d}" for i in range(n)],
                window_index=np.arange(n) % 5, start_ms=1551700000000 + d_i * 86400000,
                window_start_s=np.arange(n) % 5 * 0.5, spl_dba=spl, relevance=relevance, emb=emb,
                audio=audio, teacher_id="test-teacher"))
    return root


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return make_frames(tmp_path_factory.mktemp("run"))


def _selected(out: Path) -> list[str]:
    return pq.read_table(out / "selection.parquet").column("window_id").to_pylist()


@pytest.mark.parametrize("method", ["random", "relevance", "diversity", "diversity+relevance"])
def test_select_budgets_and_determinism(frames, tmp_path, method):
    args = ["--frames", str(frames), "--method", method, "--fraction", "0.25", "--seed", "3"]
    s1 = run_select(args + ["--output", str(tmp_path / "s1")])
    s2 = run_select(args + ["--output", str(tmp_path / "s2")])
    assert _selected(tmp_path / "s1") == _selected(tmp_path / "s2")
    total_windows = sum(p.rows for p in list_partitions(frames))
    assert s1["windows"] == total_windows
    assert s1["total_requested"] == int(np.ceil(0.25 * total_windows))
    # reference budgets: ceil(total / sensors) per sensor, ceil(budget / groups) per group
    per_sensor = int(np.ceil(s1["total_requested"] / len(SENSORS)))
    k = int(np.ceil(per_sensor / len(DAYS)))
    assert all(g["k"] == k and g["n_selected"] == k for g in s1["groups_detail"])
    assert s1["n_selected"] == len(set(_selected(tmp_path / "s1"))) == k * len(SENSORS) * len(DAYS)
    assert "diversity" in s1["logdet"]


def test_dpp_beats_random_on_logdet(frames, tmp_path):
    rnd = run_select(["--frames", str(frames), "--method", "random", "--fraction", "0.2",
                      "--output", str(tmp_path / "r")])
    div = run_select(["--frames", str(frames), "--method", "diversity", "--fraction", "0.2",
                      "--output", str(tmp_path / "d")])
    assert div["logdet"]["diversity"] > rnd["logdet"]["diversity"]


def test_fit_pca_and_build_training_set(frames, tmp_path):
    run_select(["--frames", str(frames), "--method", "diversity+relevance", "--fraction", "0.5",
                "--output", str(tmp_path / "sel")])
    artifact = fit_pca(frames=str(frames), selection=str(tmp_path / "sel"), output=str(tmp_path / "pca"),
                       dims=(16, 8))
    loaded = ReductionArtifact.load(tmp_path / "pca")
    assert loaded.dims == (16, 8) and loaded.teacher_id == "test-teacher"
    assert loaded.n_fit == len(_selected(tmp_path / "sel"))
    assert loaded.sampling_method == "diversity+relevance/scalable"
    np.testing.assert_allclose(loaded.components, artifact.components)

    card = build_training_set(frames=str(frames), pca=str(tmp_path / "pca"), output=str(tmp_path / "ts"),
                              dims=(16, 8))
    ts = tmp_path / "ts"
    assert json.loads((ts / "dataset_card.json").read_text()) == card
    # card numbers equal the Parquet contents; every window exactly once
    seen, split_of_partition = [], {}
    for split in ("train", "validate", "test"):
        tables = [pq.read_table(f) for f in sorted((ts / split).glob("*.parquet"))]
        rows = sum(t.num_rows for t in tables)
        assert card["counts"][split] == rows > 0
        for t in tables:
            seen += t.column("window_id").to_pylist()
            for sensor, day in set(zip(t.column("sensor").to_pylist(), t.column("day").to_pylist())):
                assert split_of_partition.setdefault((sensor, day), split) == split  # no leakage
    assert len(seen) == len(set(seen)) == sum(p.rows for p in list_partitions(frames))
    # targets are the artifact's projection of the teacher embeddings
    part = list_partitions(frames)[0]
    src = pq.read_table(part.files[0])
    split = split_of_partition[(part.sensor, part.day)]
    shard = pq.read_table(next((ts / split).glob(f"part-{part.sensor}-{part.day}-*.parquet")))
    emb = np.asarray(src.column("teacher_emb").to_pylist(), np.float32)
    got = np.asarray(shard.column("target_8").to_pylist(), np.float32)
    np.testing.assert_allclose(got, loaded.transform(emb, 8), rtol=1e-5, atol=1e-5)
    assert card["sampling_method"] == "diversity+relevance/scalable"
    assert set(card["explained_variance_ratio"]) == {"16", "8"}
    with pytest.raises(DataError, match="already holds"):
        build_training_set(frames=str(frames), pca=str(tmp_path / "pca"), output=str(ts), dims=(8,))


def test_split_assignment_is_deterministic_and_nonempty(frames):
    parts = list_partitions(frames)
    a = assign_splits(parts, seed=1)
    assert a == assign_splits(parts, seed=1)
    assert set(a.values()) == {"train", "validate", "test"}
    with pytest.raises(ParameterError, match="fractions"):
        assign_splits(parts, fractions=(0.5, 0.5, 0.5))


def test_bad_inputs_name_the_file(frames, tmp_path):
    with pytest.raises(DataError, match="no frames dataset"):
        run_select(["--frames", str(tmp_path / "nope"), "--method", "random", "--fraction", "0.1",
                    "--output", str(tmp_path / "o")])
    with pytest.raises(DataError, match="selection.parquet"):
        fit_pca(frames=str(frames), selection=str(tmp_path / "missing"), output=str(tmp_path / "p"))
    bad = make_frames(tmp_path / "drift", rows_per_part=5)
    victim = next((bad / "frames").rglob("*.parquet"))
    table = pq.read_table(victim)
    meta = dict(table.schema.metadata)
    meta[b"sea.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), victim)
    with pytest.raises(SchemaError, match=str(victim.name)):
        run_select(["--frames", str(bad), "--method", "random", "--fraction", "0.1",
                    "--output", str(tmp_path / "o2")])


@pytest.mark.dask
def test_same_result_on_dask(frames, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask_args = ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                     f"--dask_client_address={cluster.scheduler_address}"]
        common = ["--frames", str(frames), "--method", "diversity+relevance", "--fraction", "0.3"]
        run_select(common + ["--output", str(tmp_path / "local")])
        run_select(common + ["--output", str(tmp_path / "dask")] + dask_args)
        assert _selected(tmp_path / "local") == _selected(tmp_path / "dask")
        fit_pca(frames=str(frames), selection=str(tmp_path / "local"), output=str(tmp_path / "pca"),
                dims=(8,))
        a = build_training_set(frames=str(frames), pca=str(tmp_path / "pca"),
                               output=str(tmp_path / "ts_local"), dims=(8,))
        b = build_training_set(frames=str(frames), pca=str(tmp_path / "pca"),
                               output=str(tmp_path / "ts_dask"), dims=(8,), beam_args=dask_args)
    assert a["counts"] == b["counts"]
    for split in ("train", "validate", "test"):
        for fa in sorted((tmp_path / "ts_local" / split).glob("*.parquet")):
            fb = tmp_path / "ts_dask" / split / fa.name
            assert pq.read_table(fa).equals(pq.read_table(fb))
