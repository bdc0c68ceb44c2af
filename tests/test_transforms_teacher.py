"""TeacherInference alone on a TestPipeline, with the tiny seeded Keras teacher (tests/conftest.py)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from pipelines.transforms.records import DeadLetter
from pipelines.transforms.teacher import TeacherConfig, TeacherInference
from tests.conftest import CLIP_SR, decoded_recordings


def test_teacher_inference_fills_embeddings_and_drops_windows(tmp_path, tiny_teacher):
    from sea_core.models.teachers import get_teacher

    recs = decoded_recordings(tmp_path, sensors=("aa01", "bb02"), per_sensor=2, seconds=3.0)
    opts = (("frontend", "none"), ("sample_rate", CLIP_SR))
    teacher = get_teacher(str(tiny_teacher), **dict(opts))
    expected = {r.uri: teacher.embed(r.teacher_windows) for r in recs}
    dead = DeadLetter("mem://bad.wav", "decode", "empty", "AudioReadError", "no samples")
    units = [[recs[0], dead, recs[1]], [recs[2], recs[3]]]

    def check(got):
        assert sorted(len(u) for u in got) == [2, 3]
        items = [it for u in got for it in u]
        assert dead in items
        for r in (it for it in items if not isinstance(it, DeadLetter)):
            assert r.teacher_windows is None  # raw windows do not travel further
            assert r.embeddings.shape == (4, 16) and r.embeddings.dtype == np.float32
            np.testing.assert_allclose(r.embeddings, expected[r.uri], rtol=1e-4, atol=1e-5)
        assert len({it.uri for it in items}) == 5

    cfg = TeacherConfig(name=str(tiny_teacher), options=opts, batch_size=8)
    with test_pipeline.TestPipeline() as p:
        assert_that(p | beam.Create(units) | TeacherInference(cfg), check)
