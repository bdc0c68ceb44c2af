"""Per-sensor SPL calibration from sensors.csv through the embed pipeline (issue 18)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf

from pipelines.embed_corpus import parse_args as embed_args
from pipelines.embed_corpus import run as embed_job
from pipelines.transforms.records import Recording
from pipelines.transforms.spl import SplConfig, window_spl
from pipelines.job.cli import main as cli_main
from sea_core.errors import DataError
from tests.conftest import TINY_SR
from tests.test_embed_pipeline import BASE, SENSORS, SR, _clip_path, _tone


def run(argv: list[str]) -> dict:
    """The embed job on ``sea pipeline embed`` flags; returns the run summary."""
    return embed_job(*embed_args(argv))


def test_window_spl_uses_each_sensors_calibration():
    w = (0.1 * np.sin(2 * np.pi * 1000 * np.arange(SR) / SR)).astype(np.float32)[None, :]
    cfg = SplConfig(teacher_sr=SR, window_seconds=1.0, calibration_by_sensor=(("a", 120.0), ("b", 104.5)))

    def rec(sensor):
        return Recording(uri=f"x/sensor_{sensor}/2019-03-04/1.flac", recording_id="r", sensor=sensor,
                         day="2019-03-04", start_ms=0, window_start_s=np.zeros(1, np.float32),
                         student_audio=np.zeros((1, 8), np.int16), teacher_windows=w)

    (la, _), (lb, _), (lc, _) = window_spl(rec("a"), cfg), window_spl(rec("b"), cfg), window_spl(rec("c"), cfg)
    assert la[0] - lb[0] == pytest.approx(15.5, abs=1e-3)
    assert lc[0] == pytest.approx(la[0], abs=1e-4)          # not listed: the default 120 dB


@pytest.fixture(scope="module")
def two_sensor_corpus(tmp_path_factory):
    """The same clips at the same times on two sensors; sensors.csv gives them 120 and 100 dB."""
    root = tmp_path_factory.mktemp("cal")
    for i in range(3):
        for s in SENSORS:
            sf.write(_clip_path(root / "upstream", s, BASE + 600 * i), _tone(i), SR, subtype="PCM_16",
                     format="FLAC")
    (root / "sensors.csv").write_text(f"sensor,lat,lon,calibration_db\n{SENSORS[0]},40.73,-73.99,120\n"
                                      f"sensor_{SENSORS[1]},40.74,-73.98,100\n")
    return root


def _args(root: Path, teacher: Path, out: Path) -> list[str]:
    return ["--input", str(root / "upstream"), "--output", str(out), "--teacher", str(teacher),
            "--teacher-opt", "frontend=none", "--teacher-opt", f"sample_rate={TINY_SR}",
            "--hop-seconds", "1.0", "--batch-size", "8"]


def test_embed_two_calibrations(two_sensor_corpus, tiny_teacher, tmp_path):
    out = tmp_path / "emb"
    s = run(_args(two_sensor_corpus, tiny_teacher, out))
    assert s["settings"]["calibration_db_by_sensor"] == {SENSORS[0]: 120.0, SENSORS[1]: 100.0}
    t = ds.dataset(out / "frames", format="parquet").to_table(
        columns=["sensor", "start_time", "window_index", "spl_dba", "relevance", "spl_source"])
    rows = {}
    for r in t.to_pylist():
        rows.setdefault((r["start_time"], r["window_index"]), {})[r["sensor"]] = r
    assert len(rows) > 3 and all(len(v) == 2 for v in rows.values())
    for pair in rows.values():
        a, b = pair[SENSORS[0]], pair[SENSORS[1]]
        assert a["spl_source"] == "computed"
        assert a["spl_dba"] - b["spl_dba"] == pytest.approx(20.0, abs=1e-3)
        # relevance is a rank within each sensor's bins: a constant offset leaves it unchanged
        assert a["relevance"] == b["relevance"]
    manifest_settings = json.loads((out / "run_summary.json").read_text())["settings"]
    assert manifest_settings["calibration_db_by_sensor"][SENSORS[1]] == 100.0


def test_bad_calibration_names_file_line_column(two_sensor_corpus, tiny_teacher, tmp_path, capsys):
    bad = tmp_path / "sensors.csv"
    bad.write_text("sensor,lat,lon,calibration_db\nx,40,-73,very loud\n")
    with pytest.raises(DataError, match=r"sensors.csv: line 2: column 'calibration_db' is not a number"):
        run(_args(two_sensor_corpus, tiny_teacher, tmp_path / "o") + ["--sensors-csv", str(bad)])
    rc = cli_main(["pipeline", "embed"] + _args(two_sensor_corpus, tiny_teacher, tmp_path / "o2")
                  + ["--sensors-csv", str(tmp_path / "missing.csv")])
    assert rc == 2 and "missing.csv: sensors file not found" in capsys.readouterr().err
