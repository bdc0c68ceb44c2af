"""ComputeSpl alone on a TestPipeline: levels from a sidecar, computed, or a dead letter."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from pipelines.transforms.records import DeadLetter, Recording
from pipelines.transforms.spl import ComputeSpl, SplConfig
from sea_core.audio.spl import leq_dba
from tests.conftest import CLIP_SR, decoded_recordings


def _sidecar(spl_dir, rec: Recording, levels) -> None:
    rel = rec.uri.split("/")[-3:]
    q = spl_dir.joinpath(*rel).with_suffix(".csv")
    q.parent.mkdir(parents=True, exist_ok=True)
    q.write_text("offset_s,dba\n" + "".join(f"{i},{v:.1f}\n" for i, v in enumerate(levels)))


def _run(units, cfg: SplConfig, check) -> None:
    with test_pipeline.TestPipeline() as p:
        assert_that(p | beam.Create(units) | ComputeSpl(cfg), check)


def test_compute_spl_sidecar_computed_and_dead_letter(tmp_path):
    a, b, c = decoded_recordings(tmp_path / "up", sensors=("aa01", "bb02", "cc03"), per_sensor=1)
    spl = tmp_path / "spl"
    _sidecar(spl, a, [55.0, 55.0])          # constant level: every window gets 55 dBA
    _sidecar(spl, b, [50.0, 70.0])          # two seconds: windows overlap one or both
    expected_c = leq_dba(c.teacher_windows, CLIP_SR)
    cfg = SplConfig(teacher_sr=CLIP_SR, window_seconds=1.0, sidecar_dir=str(spl))

    def check(units):
        (unit,) = units
        got = {it.uri: it for it in unit}
        assert got[a.uri].spl_source == "sidecar"
        np.testing.assert_allclose(got[a.uri].spl_dba, [55.0, 55.0, 55.0], atol=1e-4)
        lv = got[b.uri].spl_dba
        assert got[b.uri].spl_source == "sidecar" and lv.shape == (3,) and lv.dtype == np.float32
        assert 50.0 <= lv.min() and lv.max() <= 70.0 and lv[1] > lv[0]  # centred windows: -0.5, 0.5, 1.5 s
        assert got[c.uri].spl_source == "computed"
        np.testing.assert_allclose(got[c.uri].spl_dba, expected_c, rtol=1e-6)

    _run([[a, b, c]], cfg, check)

    strict = SplConfig(teacher_sr=CLIP_SR, window_seconds=1.0, sidecar_dir=str(spl), require_sidecar=True)

    def check_strict(units):
        items = {it.uri: it for u in units for it in u}
        assert isinstance(items[a.uri], Recording) and isinstance(items[b.uri], Recording)
        d = items[c.uri]
        assert isinstance(d, DeadLetter)
        assert (d.stage, d.error_kind, d.error_class) == ("spl", "sidecar", "SidecarError")
        assert "no SPL sidecar" in d.message

    _run([[a, b], [c]], strict, check_strict)


def test_compute_spl_passes_dead_letters_and_uses_sensor_calibration(tmp_path):
    (rec,) = decoded_recordings(tmp_path, sensors=("dd04",), per_sensor=1)
    dead = DeadLetter("mem://x.wav", "decode", "unreadable", "AudioReadError", "bad bytes")
    cfg = SplConfig(teacher_sr=CLIP_SR, window_seconds=1.0, calibration_by_sensor=(("dd04", 110.0),))
    base = leq_dba(rec.teacher_windows, CLIP_SR)
    shifted = leq_dba(rec.teacher_windows, CLIP_SR, calibration_db=110.0)

    def check(units):
        (unit,) = units
        assert unit[0] == dead
        np.testing.assert_allclose(unit[1].spl_dba, shifted, rtol=1e-6)
        assert not np.allclose(unit[1].spl_dba, base)

    _run([[dead, rec]], cfg, check)
