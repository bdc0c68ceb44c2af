"""`sea experiment data|convergence|specialisation` and the synth's held-out classes (issue 18)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.job import experiment_poster as ep
from sea_core.errors import DataError, ParameterError
from sea_core.params import EXPERIMENT, RUN, SONYC_COARSE_CLASSES, SYNTH
from sea_core.datasets.trainset import training_table, write_card, write_shard


def test_epochs_to_fraction():
    assert ep.epochs_to_fraction([1.0, 0.5, 0.2, 0.11, 0.1]) == 4      # needs <= 1 - 0.95 * 0.9 = 0.145
    assert ep.epochs_to_fraction([1.0, 0.1, 0.1]) == 2
    assert ep.epochs_to_fraction([0.5, 0.6, 0.7]) == 1                  # no improvement at all
    assert ep.epochs_to_fraction([]) is None
    # scale-free: the same curve x 100 gives the same epoch
    v = [3.0, 2.0, 1.5, 1.2, 1.1, 1.05]
    assert ep.epochs_to_fraction(v) == ep.epochs_to_fraction([100 * x for x in v])


def _trainset(root: Path, n: int = 50, dim: int = 8, samples: int = 80) -> Path:
    rng = np.random.default_rng(0)
    for split, m in (("train", n), ("validate", 10), ("test", 10)):
        ids = [f"{split}{i:04d}:0" for i in range(m)]
        write_shard(root / split / "part-00000.parquet", training_table(
            window_ids=ids, sensors=["s"] * m, days=["2019-03-04"] * m,
            audio_int16=rng.integers(-99, 99, (m, samples)).astype(np.int16),
            targets={dim: rng.standard_normal((m, dim))}))
    write_card(root, dims=(dim,), student_samples=samples, teacher_id="t")
    return root


def test_subset_trainset_is_seeded_and_sized(tmp_path):
    src = _trainset(tmp_path / "src")
    a = ep.subset_trainset(src, tmp_path / "a", fraction=0.3, seed=1)
    b = ep.subset_trainset(src, tmp_path / "b", fraction=0.3, seed=1)
    c = ep.subset_trainset(src, tmp_path / "c", fraction=0.3, seed=2)
    assert a["counts"] == {"train": 15, "validate": 10, "test": 10} and a["subset"]["of"] == 50
    ids = lambda d: pq.read_table(d / "train" / "part-00000.parquet").column("window_id").to_pylist()  # noqa: E731
    assert ids(tmp_path / "a") == ids(tmp_path / "b") != ids(tmp_path / "c")
    assert set(ids(tmp_path / "a")) <= set(ids(src))
    with pytest.raises(ParameterError, match="fraction must be in"):
        ep.subset_trainset(src, tmp_path / "d", fraction=0.0, seed=0)


def test_synth_holds_classes_back_from_upstream(tmp_path):
    from sea_core.synth import synthesize

    params = dataclasses.replace(SYNTH, sensors=2, days=1, clips_per_day=6, labelled_clips=24, seed=5,
                                 upstream_held_out=("music", "human-voice"))
    card = synthesize(tmp_path / "c", params)
    up = card["counts"]["upstream_class_prevalence"]
    assert up["music"] == 0 and up["human-voice"] == 0 and up["engine"] > 0
    down = card["counts"]["labelled_class_prevalence"]
    assert down["music"] > 0 and down["human-voice"] > 0
    with pytest.raises(ParameterError, match=r"upstream_held_out: unknown class\(es\) \['cats'\]"):
        synthesize(tmp_path / "d", dataclasses.replace(params, upstream_held_out=("cats",)))


def _fake_run(root: Path, held: list[str]) -> Path:
    (root / "embed" / "frames").mkdir(parents=True)
    (root / "corpus").mkdir()
    (root / "corpus" / "corpus_card.json").write_text(json.dumps({"params": {"upstream_held_out": held}}))
    (root / "report.json").write_text(json.dumps({"config": {"corpus": str(root / "corpus")}}))
    teacher = {c: 0.8 for c in SONYC_COARSE_CLASSES}
    student = {c: (0.4 if c in held else 0.8 * 0.9) for c in SONYC_COARSE_CLASSES}
    student["dog"] = None                                   # no positives: ignored
    ev = {"models": {"teacher:aisfx": {"mil": {"test": {"per_class_auprc": teacher}}},
                     "student": {"mil": {"test": {"per_class_auprc": student}}}}}
    (root / "evaluation").mkdir()
    (root / "evaluation" / "evaluation.json").write_text(json.dumps(ev))
    return root


def test_specialisation_ratio_in_and_out_of_domain(tmp_path):
    run = _fake_run(tmp_path / "run", ["music"])
    res = ep.specialisation_experiment(run)
    by = {r["method"]: r for r in res["table"]}
    assert by["in-domain"]["mean"] == pytest.approx(0.9)
    assert by["out-of-domain"]["mean"] == pytest.approx(0.5)
    report = json.loads((run / "report.json").read_text())
    assert report["specialisation_experiment"]["held_out_classes"] == ["music"]
    assert "Specialisation" in (run / "report.html").read_text()
    with pytest.raises(DataError, match="holds no class back"):
        ep.specialisation_experiment(_fake_run(tmp_path / "run2", []))


def test_cli_bad_fractions_exit_2(tmp_path, capsys):
    from pipelines.job.cli import main

    run = _fake_run(tmp_path / "run", ["music"])
    rc = main(["experiment", "data", "--run", str(run), "--fractions", "0.1,lots"])
    assert rc == 2 and "--fractions: expected comma-separated numbers" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end (slow)
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from pipelines.job.run import run
    from sea_core.synth import synthesize

    root = tmp_path_factory.mktemp("poster")
    corpus = root / "corpus"
    synthesize(corpus, replace(SYNTH, sensors=3, days=3, clips_per_day=6, labelled_clips=30,
                               labelled_sensors=6, seed=3, upstream_held_out=("music",)))
    out = root / "out"
    report = run(out, corpus=str(corpus), params=replace(RUN, emb_dim=64, epochs=1, fraction=0.1, seed=0,
                                                         sensors_select=2))
    return out, report


@pytest.mark.slow
def test_run_sensors_select_and_poster_experiments(small_run):
    out, report = small_run
    sel = report["selection"]["sensor_selection"]
    assert len(sel["chosen"]) == 2 and len(sel["candidates"]) == 3
    assert report["selection"]["counts"]["sensors_chosen"] == 2
    assert report["selection"]["counts"]["windows"] == report["embed"]["counts"]["windows"]
    params = replace(EXPERIMENT, epochs=1, downstream_epochs=20)
    data = ep.data_experiment(out, fractions=(0.5, 1.0), seeds=(0, 1), params=params)
    assert [r["n_seeds"] for r in data["table"]] == [2, 2]
    assert data["table"][0]["train_rows"] < data["table"][1]["train_rows"]
    assert all(0 < r["micro_auprc"] <= 1 for r in data["rows"])
    conv = ep.convergence_experiment(out, learning_rates=(1e-4,), epochs=2, params=params)
    assert {r["target"] for r in conv["rows"]} == {"SEA (PCA)", "raw teacher"}
    raw = next(r for r in conv["rows"] if r["target"] == "raw teacher")
    assert raw["emb_dim"] == 512 and len(raw["val_loss"]) == 2
    spec = ep.specialisation_experiment(out)
    assert spec["held_out_classes"] == ["music"] and len(spec["students"]) == 3   # run + 2 seeds at 100 %
    html = (out / "report.html").read_text()
    assert "Less training data" in html and "Faster convergence" in html and "Specialisation" in html
