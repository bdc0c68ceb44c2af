"""`sea synth`: determinism, layout, sidecars, annotations, signal models, CLI."""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import soundfile as sf

from sea_core import synth
from sea_core.audio.spl import leq_dba, read_spl_sidecar
from pipelines.job.cli import main as cli_main
from sea_core.errors import ParameterError
from sea_core.params import SONYC_COARSE_CLASSES, SYNTH
from sea_core.synth.sources import GENERATORS

TINY = dataclasses.replace(SYNTH, sensors=2, days=1, clips_per_day=2, labelled_clips=12, seed=7)
SR = TINY.sample_rate
N = int(TINY.clip_seconds * SR)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The tiny corpus twice with the same seed and once with another seed."""
    base = tmp_path_factory.mktemp("synth")
    a = synth.synthesize(base / "a", TINY)
    b = synth.synthesize(base / "b", TINY)
    c = synth.synthesize(base / "c", dataclasses.replace(TINY, seed=8))
    return {"a": (base / "a", a), "b": (base / "b", b), "c": (base / "c", c)}


def test_same_seed_is_byte_identical(corpora):
    ha, hb = _hashes(corpora["a"][0]), _hashes(corpora["b"][0])
    assert len(ha) == 4 + 4 + 12 + 1 + 1 + 1  # flac + csv + wav + annotations + card + sensors.csv
    assert ha == hb


def test_other_seed_differs(corpora):
    ha, hc = _hashes(corpora["a"][0]), _hashes(corpora["c"][0])
    audio_a = {h for p, h in ha.items() if p.endswith((".flac", ".wav"))}
    audio_c = {h for p, h in hc.items() if p.endswith((".flac", ".wav"))}
    assert audio_a and not audio_a & audio_c
    assert ha["downstream/annotations.csv"] != hc["downstream/annotations.csv"]


def test_clips_do_not_depend_on_generation_order(corpora, tmp_path):
    """Per-clip seeds: sensor 0 of a 1-sensor corpus equals sensor 0 of the 2-sensor one."""
    synth.synthesize(tmp_path / "one", dataclasses.replace(TINY, sensors=1, labelled_clips=0))
    one = _hashes(tmp_path / "one")
    two = _hashes(corpora["a"][0])
    sensor0 = "sensor_" + synth.upstream_sensor_ids(1)[0]
    upstream = {p: h for p, h in one.items() if sensor0 in p}
    assert len(upstream) == 4 and all(two[p] == h for p, h in upstream.items())


def test_upstream_layout_and_audio(corpora):
    root, summary = corpora["a"]
    tz = ZoneInfo(TINY.timezone)
    flacs = sorted((root / synth.UPSTREAM_DIR).rglob("*"))
    flacs = [p for p in flacs if p.is_file()]
    assert len(flacs) == TINY.sensors * TINY.days * TINY.clips_per_day
    pattern = re.compile(r"upstream/sensor_b827eb[0-9a-f]{6}/(\d{4}-\d{2}-\d{2})/(\d+)\.flac")
    hours = []
    for p in flacs:
        m = pattern.fullmatch(str(p.relative_to(root)))
        assert m, p
        local = dt.datetime.fromtimestamp(int(m.group(2)), tz)
        assert local.date().isoformat() == m.group(1) == TINY.start_date
        hours.append(local.hour)
        info = sf.info(str(p))
        assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == \
            ("FLAC", "PCM_16", SR, 1, N)
        pcm, _ = sf.read(str(p), dtype="int16")
        assert np.abs(pcm.astype(np.int32)).max() < 32767  # never clipped
        assert (root / "spl" / p.relative_to(root / "upstream")).with_suffix(".csv").is_file()
    # one clip in each half of the local day (clips_per_day = 2 slices)
    assert min(hours) < 12 <= max(hours)
    assert summary["counts"]["upstream_clips"] == len(flacs)


def test_sidecars_match_leq_of_decoded_audio(corpora):
    root, _ = corpora["a"]
    csvs = sorted((root / synth.SPL_DIR).rglob("*.csv"))
    assert len(csvs) == 4
    for p in csvs:
        assert p.read_text().splitlines()[0] == "offset_s,dba"
        seconds, dba = read_spl_sidecar(str(p))
        audio, sr = sf.read(str(root / "upstream" / p.relative_to(root / "spl").with_suffix(".flac")))
        expected = leq_dba(audio.reshape(10, sr), sr, calibration_db=TINY.calibration_db)
        np.testing.assert_array_equal(seconds, np.arange(10))
        np.testing.assert_allclose(dba, expected, atol=0.1)
        # city levels: background ~50-65 dBA (slowly varying), events up to ~90 dBA
        assert 40.0 < dba.min() and dba.max() < 95.0


def _read_annotations(root: Path) -> tuple[list[str], list[dict]]:
    with open(root / "downstream" / "annotations.csv", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def test_annotations_layout(corpora):
    root, summary = corpora["a"]
    header, rows = _read_annotations(root)
    presence = [f"{i + 1}_{c}_presence" for i, c in enumerate(SONYC_COARSE_CLASSES)]
    assert header == ["split", "sensor_id", "audio_filename", "annotator_id"] + presence
    assert presence[0] == "1_engine_presence" and presence[7] == "8_dog_presence"
    clips: dict[str, list[dict]] = {}
    for r in rows:
        clips.setdefault(r["audio_filename"], []).append(r)
        assert r["split"] in ("train", "validate", "test")
        assert all(r[c] in ("0", "1") for c in presence)
        assert re.fullmatch(r"\d{2}_\d{6}\.wav", r["audio_filename"])
        assert r["audio_filename"].startswith(f"{int(r['sensor_id']):02d}_")
    assert len(clips) == TINY.labelled_clips
    for name, clip_rows in clips.items():
        info = sf.info(str(root / "downstream" / "audio" / name))
        assert (info.format, info.subtype, info.samplerate, info.channels, info.frames) == \
            ("WAV", "PCM_16", SR, 1, N)
        assert len({r["split"] for r in clip_rows}) == 1
        ids = [int(r["annotator_id"]) for r in clip_rows]
        assert len(set(ids)) == len(ids)
        if clip_rows[0]["split"] != "train":
            assert 0 in ids  # scored splits are verified
    # split by sensor: no sensor spans splits; sizes follow split_fractions (0.6/0.2/0.2 of 12)
    sensor_splits: dict[str, set] = {}
    for r in rows:
        sensor_splits.setdefault(r["sensor_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sensor_splits.values())
    assert summary["counts"]["labelled_per_split"] == {"train": 7, "validate": 3, "test": 2}
    # crowd rows exist, so the evaluator must aggregate
    assert any(int(r["annotator_id"]) > 0 for r in rows)
    assert summary["counts"]["annotation_rows"] == len(rows)


def test_annotations_aggregate_with_evaluator(corpora):
    """The evaluator's reference §(g) aggregation reads our file; labels stay multi-label."""
    from sea_core.evaluate import read_annotations
    root, summary = corpora["a"]
    data = read_annotations(root / "downstream" / "annotations.csv")
    assert data.classes == list(SONYC_COARSE_CLASSES)
    assert sum(len(v) for v in data.files.values()) == TINY.labelled_clips
    labels = np.concatenate([data.labels[s] for s in ("train", "validate", "test")])
    assert labels.sum(axis=1).max() >= 2  # multi-label clips exist
    _, rows = _read_annotations(root)
    verified = {r["audio_filename"]: r for r in rows if r["annotator_id"] == "0"}
    for split in ("validate", "test"):
        for name, lab in zip(data.files[split], data.labels[split]):
            want = [int(verified[name][f"{i + 1}_{c}_presence"]) for i, c in enumerate(SONYC_COARSE_CLASSES)]
            assert lab.tolist() == want


def test_labels_are_what_was_synthesized(corpora):
    """Labelled clips without events are background only: no second louder than 66 dBA."""
    root, _ = corpora["a"]
    _, rows = _read_annotations(root)
    verified = {r["audio_filename"]: r for r in rows if r["annotator_id"] == "0"}
    quiet, loud = [], []
    for name, r in verified.items():
        audio, sr = sf.read(str(root / "downstream" / "audio" / name))
        level = leq_dba(audio.reshape(10, sr), sr, calibration_db=TINY.calibration_db).max()
        has_event = any(r[f"{i + 1}_{c}_presence"] == "1" for i, c in enumerate(SONYC_COARSE_CLASSES))
        (loud if has_event else quiet).append(level)
    assert loud
    assert all(v < TINY.background_dba[1] + 2.5 for v in quiet)
    assert max(loud) > TINY.background_dba[1]


def test_card(corpora):
    root, summary = corpora["a"]
    card = json.loads((root / "corpus_card.json").read_text())
    assert card["generator"] == synth.GENERATOR_VERSION
    assert card["seed"] == TINY.seed and card["params"]["sensors"] == TINY.sensors
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "corpus_card.json")
    assert card["bytes"]["total"] == total
    per = card["counts"]["clips_per_sensor_day"]
    assert sorted(per) == sorted(f"sensor_{s}" for s in synth.upstream_sensor_ids(2))
    assert all(v == {TINY.start_date: 2} for v in per.values())
    assert set(card["counts"]["labelled_class_prevalence"]) == set(SONYC_COARSE_CLASSES)
    assert "elapsed_s" in summary and "elapsed_s" not in card


def _peak_hz(x: np.ndarray, lo: float = 20.0) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    f = np.fft.rfftfreq(x.size, 1 / SR)
    spec[f < lo] = 0
    return float(f[np.argmax(spec)])


def _centroid_hz(x: np.ndarray) -> float:
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float((p * f).sum() / p.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_signatures(seed):
    """Each event model has its documented spectral signature."""
    g = {c: GENERATORS[c].generate(np.random.default_rng(seed), SR, N)
         for c in SONYC_COARSE_CLASSES}
    assert all(0 < x.size <= N and np.isfinite(x).all() for x in g.values())
    assert _centroid_hz(g["engine"]) < 600
    assert 1600 < _peak_hz(g["powered-saw"]) < 5000
    assert 80 < _peak_hz(g["human-voice"]) < 3500
    assert 300 < _peak_hz(g["dog"]) < 4000
    peak = _peak_hz(g["alert-signal"])
    assert 340 < peak < 1600 or 2 * 340 < peak < 2 * 1600
    assert _centroid_hz(g["machinery-impact"]) > 1000
    # jackhammer: periodic impacts 12-25 Hz in the envelope
    x = np.abs(g["machinery-impact"])
    env = x[:x.size // 48 * 48].reshape(-1, 48).mean(1)  # 1-ms envelope
    rate = _peak_hz_env(env, 1000.0)
    assert 11 < rate < 26


def _peak_hz_env(env: np.ndarray, rate: float) -> float:
    spec = np.abs(np.fft.rfft(env - env.mean()))
    f = np.fft.rfftfreq(env.size, 1 / rate)
    spec[(f < 5) | (f > 40)] = 0
    return float(f[np.argmax(spec)])


def test_invalid_params(tmp_path):
    with pytest.raises(ParameterError, match="split_fractions"):
        synth.synthesize(tmp_path / "x", dataclasses.replace(TINY, split_fractions=(0.5, 0.2, 0.2)))
    with pytest.raises(ParameterError, match="classes"):
        synth.synthesize(tmp_path / "x", dataclasses.replace(TINY, classes=("engine", "cat"),
                                                              class_prevalence=(0.5, 0.5)))
    with pytest.raises(ParameterError, match="start_date"):
        synth.synthesize(tmp_path / "x", dataclasses.replace(TINY, start_date="04/03/2019"))
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "corpus"
    argv = ["synth", "--out", str(out), "--sensors", "1", "--days", "1", "--clips-per-day", "1",
            "--labelled-clips", "3", "--seed", "3"]
    assert cli_main(argv) == 0
    card = json.loads((out / "corpus_card.json").read_text())
    assert card["counts"]["upstream_clips"] == 1 and card["counts"]["labelled_clips"] == 3
    assert card["seed"] == 3
    assert str(out) in capsys.readouterr().out
    # an existing corpus is kept unless --overwrite; a foreign directory is never replaced
    assert cli_main(argv) == 2
    assert cli_main(argv + ["--overwrite"]) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    assert cli_main(["synth", "--out", str(foreign), "--overwrite", "--sensors", "0",
                     "--labelled-clips", "0"]) == 2
    assert (foreign / "keep.txt").exists()
