"""DecodeAndFrame alone on a TestPipeline: real WAV bytes in, framed Recordings / dead letters out."""
from __future__ import annotations

import hashlib

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from pipelines.transforms.decode import DecodeAndFrame, FramingConfig
from pipelines.transforms.records import DIRECTORY_VERSION, DeadLetter, InputFile, Recording
from tests.conftest import CLIP_BASE, CLIP_SR, CLIP_TEACHER, write_clip

CFG = FramingConfig(teacher=CLIP_TEACHER, hop_seconds=1.0)


def test_decode_and_frame_recordings_and_dead_letters(tmp_path):
    good = [write_clip(tmp_path, "aa01", CLIP_BASE + 600 * i, seconds=2.0 + i, seed=i) for i in range(2)]
    corrupt = tmp_path / "sensor_aa01" / "2019-03-04" / f"{CLIP_BASE + 9}.wav"
    corrupt.write_bytes(np.random.default_rng(7).bytes(3000))
    bad_name = write_clip(tmp_path, "aa01", "not-a-time")
    folder = tmp_path / "sensor_aa01" / "2019-03-04" / f"{CLIP_BASE + 10}.wav"
    unit = [InputFile(str(p), p.stat().st_size, "v") for p in good + [corrupt, bad_name]]
    unit.append(InputFile(str(folder), 0, DIRECTORY_VERSION))
    digests = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in good}

    def check(units):
        assert len(units) == 1 and len(units[0]) == 5
        items = {it.uri: it for it in units[0]}
        for i, p in enumerate(good):
            r = items[str(p)]
            assert isinstance(r, Recording)
            assert (r.recording_id, r.sensor, r.day) == (digests[str(p)], "aa01", "2019-03-04")
            assert r.start_ms == (CLIP_BASE + 600 * i) * 1000
            n = 3 + i  # centred 1-s windows at a 1-s hop over a (2 + i)-s clip
            assert r.teacher_windows.shape == (n, CLIP_SR) and r.teacher_windows.dtype == np.float32
            assert r.student_audio.shape == (n, 8000) and r.student_audio.dtype == np.int16
            np.testing.assert_allclose(r.window_start_s, np.arange(n) - 0.5)
            assert np.abs(r.student_audio).max() > 1000  # real audio, not zeros
        dead = {u: (d.stage, d.error_kind) for u, d in items.items() if isinstance(d, DeadLetter)}
        assert dead == {str(corrupt): ("decode", "unreadable"), str(bad_name): ("list", "bad_name"),
                        str(folder): ("list", "not_a_file")}

    with test_pipeline.TestPipeline() as p:
        out = p | beam.Create([unit]) | DecodeAndFrame(CFG)
        assert_that(out, check)


def test_decode_and_frame_keeps_units_apart(tmp_path):
    """Each unit maps to one unit, in the same item order (no shuffling of raw audio)."""
    paths = [write_clip(tmp_path, f"bb0{i}", CLIP_BASE + i, seconds=1.0, seed=i) for i in range(3)]
    units = [[InputFile(str(paths[0])), InputFile(str(paths[1]))], [InputFile(str(paths[2]))]]

    def check(got):
        shapes = sorted([(it.sensor, it.n_windows) for it in u] for u in got)
        assert shapes == [[("bb00", 2), ("bb01", 2)], [("bb02", 2)]]

    with test_pipeline.TestPipeline() as p:
        assert_that(p | beam.Create(units) | DecodeAndFrame(CFG), check)
