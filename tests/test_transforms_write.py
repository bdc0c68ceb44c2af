"""WritePartitions alone on a TestPipeline: one Parquet file per key, read back; empty frames remove."""
from __future__ import annotations

from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that

from pipelines.transforms.records import DEAD_LETTER_KEY, DeadLetter, frames_key
from pipelines.transforms.relevance import dead_letter_table, recordings_table
from pipelines.transforms.write import OutputLayout, WritePartitions, write_table_atomic
from sea_core.datasets.schema import dead_letter_schema
from tests.conftest import decoded_recordings

DAY = "2019-03-04"


def test_write_partitions_writes_reads_back_and_removes(tmp_path):
    recs = decoded_recordings(tmp_path / "up", sensors=("aa01",), per_sensor=2)
    rng = np.random.default_rng(2)
    for r in recs:
        r.spl_dba, r.spl_source = np.full(r.n_windows, 60.0, np.float32), "computed"
        r.embeddings = rng.standard_normal((r.n_windows, 8)).astype(np.float32)
    layout = OutputLayout(str(tmp_path / "out"), 8, 8000)
    frames = recordings_table(recs, layout, "tiny")
    dead = dead_letter_table([DeadLetter("mem://b.wav", "decode", "empty", "AudioReadError", "m")],
                             dead_letter_schema())
    stale = frames_key("zz09", DAY)  # an existing partition whose rows all went away
    write_table_atomic(frames.slice(0, 2), layout.path(stale))
    gone = frames_key("yy08", DAY)  # empty and never written
    jobs = [(frames_key("aa01", DAY), frames), (DEAD_LETTER_KEY, dead),
            (stale, frames.schema.empty_table()), (gone, frames.schema.empty_table())]

    def check(got):
        by = {tuple(r["key"]): r for r in got}
        assert {k: (r["action"], r["rows"]) for k, r in by.items()} == {
            frames_key("aa01", DAY): ("written", 6), DEAD_LETTER_KEY: ("written", 1),
            stale: ("removed", 0), gone: ("empty", 0)}
        for k, r in by.items():
            assert r["path"] == layout.path(k) and r["kind"] == k[0]
            assert (r["bytes"] > 0) == (r["action"] == "written")

    with test_pipeline.TestPipeline() as p:
        assert_that(p | beam.Create(jobs) | WritePartitions(layout), check)
    back = pq.read_table(layout.path(frames_key("aa01", DAY)))
    assert back.equals(frames.cast(back.schema))
    assert pq.read_table(layout.path(DEAD_LETTER_KEY)).to_pylist() == dead.to_pylist()
    assert not Path(layout.path(stale)).exists()
    assert not list((tmp_path / "out").rglob(".*tmp-*"))  # no temp files left
    assert (tmp_path / "out" / "frames" / "sensor_key=aa01").is_dir()
