"""GroupByPartition and ScoreRelevance alone on a TestPipeline (real recordings, real Parquet)."""
from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.records import DEAD_LETTER_KEY, DeadLetter, Touch, frames_key
from pipelines.transforms.relevance import (GroupByPartition, ScoreConfig, ScoreRelevance,
                                            recordings_table)
from pipelines.transforms.write import OutputLayout, sorted_table, write_table_atomic
from sea_core.audio.spl import relevance_scores
from tests.conftest import CLIP_SR, decoded_recordings

DAY = "2019-03-04"
DIM = 16


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    """Recordings of two sensors with SPL and (seeded) embeddings filled, as after TeacherInference."""
    from sea_core.audio.spl import leq_dba

    out = decoded_recordings(tmp_path_factory.mktemp("rel"), sensors=("aa01", "bb02"), per_sensor=3)
    rng = np.random.default_rng(5)
    for r in out:
        r.spl_dba, r.spl_source = leq_dba(r.teacher_windows, CLIP_SR).astype(np.float32), "computed"
        r.embeddings = rng.standard_normal((r.n_windows, DIM)).astype(np.float32)
        r.teacher_windows = None
    return out


def test_group_by_partition_keys_every_item(recs):
    dead = DeadLetter("mem://x.wav", "decode", "empty", "AudioReadError", "no samples")
    touch = Touch(frames_key("cc03", DAY), frozenset({"mem://old.wav"}))
    units = [[recs[0], dead], [recs[1], recs[3], touch], [recs[2], recs[4], recs[5]]]
    a, b = [r.uri for r in recs[:3]], [r.uri for r in recs[3:]]

    with test_pipeline.TestPipeline() as p:
        grouped = p | beam.Create(units) | GroupByPartition()
        summary = grouped | beam.MapTuple(lambda k, items: (tuple(k), sorted(
            (type(it).__name__, it.uri if hasattr(it, "uri") else sorted(it.keep_uris)[0])
            for it in items)))
        assert_that(summary, equal_to([
            (frames_key("aa01", DAY), [("Recording", u) for u in sorted(a)]),
            (frames_key("bb02", DAY), [("Recording", u) for u in sorted(b)]),
            (frames_key("cc03", DAY), [("Touch", "mem://old.wav")]),
            (DEAD_LETTER_KEY, [("DeadLetter", "mem://x.wav")]),
        ]))


def test_score_relevance_new_partition_and_dead_letters(recs, tmp_path):
    layout = OutputLayout(str(tmp_path), DIM, 8000)
    cfg = ScoreConfig(layout=layout, teacher_id="tiny", teacher_precision="fp32")
    key = frames_key("aa01", DAY)
    dead = [DeadLetter(f"mem://{i}.wav", "decode", "empty", "AudioReadError", "x") for i in (2, 1)]
    mine = recs[:3]
    t = recordings_table(sorted(mine, key=lambda r: r.uri), layout, "tiny")
    spl = t.column("spl_dba").to_numpy().astype(np.float64)
    when = t.column("start_time").cast(pa.int64()).to_numpy() / 1000.0
    expected = dict(zip(zip(t.column("uri").to_pylist(), t.column("window_index").to_pylist()),
                        relevance_scores(spl, when, np.array(["aa01"] * t.num_rows, dtype=object))
                        .astype(np.float32)))

    def check(got):
        tables = {tuple(k): tab for k, tab in got}
        assert sorted(tables) == sorted([key, DEAD_LETTER_KEY])
        f = tables[key]
        assert f.schema.names == layout.frames_schema().names and f.num_rows == 9
        assert f.schema.metadata[b"sea.teacher_precision"] == b"fp32"
        rows = list(zip(f.column("uri").to_pylist(), f.column("window_index").to_pylist()))
        assert len(set(rows)) == 9 and f.equals(sorted_table(f, "frames"))
        got_rel = dict(zip(rows, f.column("relevance").to_numpy()))
        assert got_rel == pytest.approx(expected)
        assert not np.allclose(f.column("relevance").to_numpy(), 1.0)  # recomputed, not the 1.0 placeholder
        d = tables[DEAD_LETTER_KEY]
        assert d.column("uri").to_pylist() == ["mem://1.wav", "mem://2.wav"]  # sorted

    with test_pipeline.TestPipeline() as p:
        grouped = p | beam.Create([(key, mine), (DEAD_LETTER_KEY, dead)])
        assert_that(grouped | ScoreRelevance(cfg), check)


def test_score_relevance_merges_kept_rows_of_an_existing_partition(recs, tmp_path):
    """A Touch keeps the listed URIs' existing rows; other old rows go; new rows replace same-URI rows."""
    layout = OutputLayout(str(tmp_path), DIM, 8000)
    key = frames_key("bb02", DAY)
    old, new = recs[3:5], recs[5]
    write_table_atomic(recordings_table(old, layout, "tiny"), layout.path(key))
    touch = Touch(key, frozenset({old[0].uri, new.uri}))

    def check(got):
        ((k, table),) = got
        assert tuple(k) == key
        count = {u: table.column("uri").to_pylist().count(u) for u in (old[0].uri, old[1].uri, new.uri)}
        assert count == {old[0].uri: old[0].n_windows, old[1].uri: 0, new.uri: new.n_windows}
        assert set(table.column("teacher_id").to_pylist()) == {"tiny"}

    with test_pipeline.TestPipeline() as p:
        grouped = p | beam.Create([(key, [touch, new])])
        assert_that(grouped | ScoreRelevance(ScoreConfig(layout=layout, teacher_id="tiny")), check)
