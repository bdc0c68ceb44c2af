"""`sea run` end to end on a tiny corpus, and the two experiments on its output.

One module-scoped run (real Beam, real aisfx teacher, real TFLite/TFLM) shared by
the tests below; it takes a few minutes on 2 cores.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sea_core.params import EXPERIMENT, RUN, SYNTH

pytestmark = pytest.mark.slow

TINY = replace(RUN, emb_dim=64, epochs=1, fraction=0.1, seed=0)
BAD_FILE = "sensor_b827ebffffff/2019-03-04/1551700000.flac"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from pipelines.job.run import run
    from sea_core.synth import synthesize

    root = tmp_path_factory.mktemp("run")
    corpus = root / "corpus"
    synthesize(corpus, replace(SYNTH, sensors=3, days=3, clips_per_day=6, labelled_clips=30,
                               labelled_sensors=6, seed=3))
    bad = corpus / "upstream" / BAD_FILE
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"fLaC this is not a flac stream")
    out = root / "out"
    report = run(out, corpus=str(corpus), params=TINY)
    return out, report


def test_report_schema_and_cross_stage_counts(tiny_run):
    from pipelines.job.run import REPORT_KEYS, REPORT_SCHEMA_VERSION, STAGES, check_report

    out, report = tiny_run
    assert check_report(report) == []
    on_disk = json.loads((out / "report.json").read_text())
    assert set(REPORT_KEYS) <= set(on_disk) and on_disk["schema_version"] == REPORT_SCHEMA_VERSION
    assert set(on_disk["stages"]) == set(STAGES) - {"corpus"}  # a given corpus is not synthesised
    emb = on_disk["embed"]["counts"]
    assert (emb["inputs"], emb["ok"], emb["dead_lettered"]) == (55, 54, 1)
    [dead] = on_disk["embed"]["dead_letters"]
    assert dead["uri"].endswith(BAD_FILE) and dead["error_class"]
    assert on_disk["dataset_card"]["counts"]["train"] >= 500  # the int8 representative set
    frames_rows = pq.read_table(out / "embed" / "frames").num_rows
    assert frames_rows == emb["windows"] == on_disk["selection"]["counts"]["windows"]
    assert sum(on_disk["dataset_card"]["counts"].values()) == emb["windows"]
    train_rows = sum(pq.read_metadata(f).num_rows for f in (out / "trainset").rglob("*.parquet"))
    assert train_rows == emb["windows"]
    assert on_disk["pca"]["counts"]["fit_windows"] == on_disk["selection"]["counts"]["selected"] >= 128
    # every model evaluated, every AUPRC a probability
    models = on_disk["evaluation"]["models"]
    assert [m.split(":")[0] for m in models] == ["teacher", "student", "int8"]
    for entry in models.values():
        for split in ("validate", "test"):
            assert 0.0 < entry["mil"][split]["micro_auprc"] <= 1.0
    dep = on_disk["deploy"]
    assert dep["flash_bytes"] > 0 and dep["ram_bytes"] > 0 and dep["board"]["name"]
    assert on_disk["model_sizes"]["int8_tflite_bytes"] > 0
    # the 1-s teacher window (default) reaches the students and the report
    assert on_disk["embed"]["teacher_id"] == "aisfx-0.1.2/45f"
    assert on_disk["config"]["teacher_window"] == "1s"
    assert on_disk["config"]["teacher_spec"]["window_samples"] == 44_100
    assert on_disk["dataset_card"]["student_samples"] == 8_000
    for key in ("dataset_card", "train", "deploy"):
        assert on_disk[key]["window_seconds"] == 1.0
    assert dep["input"]["shape"] == [1, 64, 50, 1]
    assert dep["paper"]["flash_bytes"] == 585_000 and dep["goals"]["ram_goal_bytes"] == 102_500
    assert dep["latency"]["chosen"]["macs_per_window"] == dep["macs"]
    comp = on_disk["sampling_comparison"]
    assert {r["method"] for r in comp["table"]} == set(EXPERIMENT.methods)
    assert all(0.0 < r["mean"] <= 1.0 for r in comp["table"])
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # AUPRC, sampling, budget, training plots


def test_rerun_skips_finished_stages(tiny_run, caplog):
    import logging

    from pipelines.job.run import run

    out, report = tiny_run
    with caplog.at_level(logging.INFO, logger="pipelines.job.stages"):
        again = run(out, corpus=report["config"]["corpus"], params=TINY)
    assert caplog.text.count("done earlier") == len(report["stages"])
    assert again["evaluation"] == report["evaluation"]
    assert again["dataset_card"] == report["dataset_card"]
    from sea_core.errors import ParameterError

    with pytest.raises(ParameterError, match="other settings \\(epochs\\)"):
        run(out, corpus=report["config"]["corpus"], params=replace(TINY, epochs=2))


def test_check_report_catches_disagreeing_counts(tiny_run):
    from pipelines.job.run import check_report

    _, report = tiny_run
    broken = json.loads(json.dumps(report))
    broken["dataset_card"]["counts"]["train"] += 1
    broken["embed"]["dead_letters"] = []
    problems = check_report(broken)
    assert any("training rows out" in p for p in problems)
    assert any("dead-lettered" in p for p in problems)
    del broken["deploy"]
    assert check_report(broken) == ["missing key 'deploy'"]


def test_sampling_experiment_table(tiny_run):
    from pipelines.job.experiment import sampling_experiment

    out, _ = tiny_run
    params = replace(EXPERIMENT, methods=("random", "diversity+relevance"), seeds=(0, 1), epochs=1,
                     downstream_epochs=20)
    result = sampling_experiment(out, params=params)
    assert [r["method"] for r in result["table"]] == ["random", "diversity+relevance"]
    assert len(result["rows"]) == 4 and all(r["n_seeds"] == 2 for r in result["table"])
    for row in result["rows"]:
        assert 0.0 < row["micro_auprc_test"] <= 1.0
    # diversity+relevance really is more diverse than random on the same corpus
    logdet = {m: [r["logdet"]["diversity+relevance"] for r in result["rows"] if r["method"] == m]
              for m in ("random", "diversity+relevance")}
    assert min(logdet["diversity+relevance"]) > max(logdet["random"])
    report = json.loads((out / "report.json").read_text())
    assert report["sampling_experiment"]["table"] == result["table"]
    assert "Sampling experiment table" in (out / "report.html").read_text()


def test_students_experiment_table(tiny_run):
    from pipelines.job.experiment import students_experiment

    out, _ = tiny_run
    params = replace(EXPERIMENT, student_dims=(128, 64), epochs=1, downstream_epochs=20)
    result = students_experiment(out, params=params)
    names = [r["model"] for r in result["rows"]]
    assert names == ["aisfx (teacher)", "Student 2", "Student 3"]
    teacher, s2, s3 = result["rows"]
    assert teacher["emb_dim"] == 512 and s2["emb_dim"] == 128 and s3["emb_dim"] == 64
    assert teacher["size_mb"] > s2["size_mb"] > s3["size_mb"] > 0
    assert all(0.0 < r["micro_auprc_test"] <= 1.0 for r in result["rows"])
    assert all(r["act_mem_mb"] > 0 for r in result["rows"])


def test_report_page_in_a_browser(tiny_run):
    """The run's report.html (with both experiments added above) as a reader sees it."""
    from report_browser import assert_reader_sees_a_report, browser_or_skip, open_page

    browser_or_skip()
    out, _ = tiny_run
    shot = out / "report_screenshot.png"
    seen = open_page(out / "report.html", shot)
    assert_reader_sees_a_report(seen)
    from sea_core.report import headline

    verdict = headline(json.loads((out / "report.json").read_text()))["verdict"]
    assert len(seen["images"]) == 6 and verdict in seen["headline_text"]
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_experiment_needs_a_finished_run(tmp_path):
    from sea_core.errors import DataError
    from pipelines.job.experiment import sampling_experiment

    with pytest.raises(DataError, match="sea run --out"):
        sampling_experiment(tmp_path)


def test_activation_memory_matches_the_poster_definition():
    """Student 0's largest activation is its first conv output, 0.8 MB as in the poster."""
    from pipelines.job.experiment import activation_bytes, network_params
    from sea_core.models.students import build_student
    from sea_core.params import StudentSpec

    model = build_student(StudentSpec(emb_dim=512, window_seconds=1.0), with_frontend=True)
    act = activation_bytes(model)
    assert 0.75e6 < act["largest_tensor"] < 0.9e6  # poster: 0.82 MB
    assert act["peak_in_out"] > act["largest_tensor"]
    assert network_params(model) == 4_691_908  # reference table; DFT/mel constants excluded
    assert 4 * network_params(model) / 1e6 == pytest.approx(18.8, abs=0.05)  # poster: 18.80 MB
