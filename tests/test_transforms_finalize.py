"""FinalizeManifest alone on a TestPipeline: staged units + kept rows + the written output (a real
frames partition of decoded WAV clips, a real dead-letter file) -> manifest shards and stats.json.

Processed: two recordings now in the frames partition (one also dead-lettered by a later stage),
a corrupt file in the dead letters and one in no output at all ('missing'). Carried over: an
unchanged recording whose rows stay in the rebuilt partition, one of another partition and an
unchanged dead letter. The transform ends in its sink (nothing comes out); the shards and the
stats are read back with pyarrow / json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.finalize import MANIFEST_STAGING, STATS_NAME, FinalizeManifest
from pipelines.transforms.list_inputs import stage_units
from pipelines.transforms.manifest import ManifestRow, manifest_table, shard_name, shard_of
from pipelines.transforms.records import DEAD_LETTER_KEY, DeadLetter, InputFile, Touch, frames_key
from pipelines.transforms.relevance import dead_letter_table, recordings_table
from pipelines.transforms.write import OutputLayout, write_table_atomic
from sea_core.datasets.schema import dead_letter_schema
from tests.conftest import CLIP_BASE, decoded_recordings, write_clip

DAY = "2019-03-04"
SETTINGS = {"teacher_id": "tiny", "hop_seconds": 1.0}
N_SHARDS = 2


def _file(path) -> InputFile:
    st = path.stat()
    return InputFile(uri=str(path), size=st.st_size, version=f"mtime:{st.st_mtime}")


def test_finalize_manifest_writes_the_new_manifest_and_the_stats(tmp_path):
    up = tmp_path / "up"
    recs = decoded_recordings(up, sensors=("aa01",), per_sensor=3)
    rng = np.random.default_rng(4)
    for r in recs:
        r.spl_dba, r.spl_source = np.full(r.n_windows, 55.0, np.float32), "computed"
        r.embeddings = rng.standard_normal((r.n_windows, 8)).astype(np.float32)
    layout = OutputLayout(str(tmp_path / "out"), 8, 8000)
    aa = frames_key("aa01", DAY)
    write_table_atomic(recordings_table(recs, layout, "tiny"), layout.path(aa))
    missing = _file(write_clip(up, "aa01", CLIP_BASE + 600 * 3, seconds=1.0, seed=9))
    corrupt_path = up / "sensor_aa01" / DAY / f"{CLIP_BASE + 600 * 4}.wav"
    corrupt_path.write_bytes(b"not audio at all")
    corrupt = _file(corrupt_path)
    ok0, ok1 = (_file(Path(r.uri)) for r in recs[:2])
    f2 = _file(Path(recs[2].uri))
    kept = [ManifestRow(uri=f2.uri, size=f2.size, version=f2.version,
                        content_hash=recs[2].recording_id, run_id="r0", status="ok", sensor="aa01",
                        day=DAY, windows=recs[2].n_windows),
            ManifestRow(uri=str(up / "sensor_bb02" / DAY / f"{CLIP_BASE}.wav"), size=64_044,
                        version="mtime:1", content_hash="cd" * 32, run_id="r0", status="ok",
                        sensor="bb02", day=DAY, windows=5),
            ManifestRow(uri=str(up / "sensor_bb02" / DAY / f"{CLIP_BASE + 60}.wav"), size=10,
                        version="mtime:2", content_hash=None, run_id="r0", status="dead",
                        sensor=None, day=None, windows=0)]
    dead = sorted([DeadLetter(corrupt.uri, "decode", "unreadable", "AudioReadError", "bad header"),
                   DeadLetter(ok1.uri, "spl", "bad_spl", "MetadataError", "spl out of range"),
                   DeadLetter(kept[2].uri, "decode", "empty", "AudioReadError", "no frames")],
                  key=lambda d: (d.uri, d.stage))
    write_table_atomic(dead_letter_table(dead, dead_letter_schema()), layout.path(DEAD_LETTER_KEY))
    units = tmp_path / "plan" / "units"
    stage_units([[ok0, ok1], [missing, corrupt],
                 [Touch(aa, frozenset({f2.uri})), Touch(DEAD_LETTER_KEY, frozenset({kept[2].uri}))]],
                str(units / "part-0.parquet"))
    keep = tmp_path / "plan" / "keep"
    keep.mkdir()
    pq.write_table(manifest_table(kept, SETTINGS), keep / "part-0.parquet")
    staging = tmp_path / "staging"

    with test_pipeline.TestPipeline() as p:
        got = p | FinalizeManifest(str(units), str(keep), layout, str(staging), run_id="r1",
                                   settings=SETTINGS, n_shards=N_SHARDS)
        assert_that(got, equal_to([]))  # nothing past the sink

    n0, n1, n2 = (r.n_windows for r in recs)
    assert (n0, n1, n2) == (3, 3, 3)  # 2-s clips, 1-s windows centred
    new = [ManifestRow(uri=f.uri, size=f.size, version=f.version, content_hash=r.recording_id,
                       run_id="r1", status="ok", sensor="aa01", day=DAY, windows=r.n_windows)
           for f, r in ((ok0, recs[0]), (ok1, recs[1]))]
    new.append(ManifestRow(uri=corrupt.uri, size=corrupt.size, version=corrupt.version,
                           content_hash=None, run_id="r1", status="dead", sensor=None, day=None,
                           windows=0))
    expected = sorted(new + kept, key=lambda r: r.uri)
    shards = staging / MANIFEST_STAGING
    assert sorted(x.name for x in shards.iterdir()) == [shard_name(b, N_SHARDS) for b in range(N_SHARDS)]
    rows = []
    for b in range(N_SHARDS):
        t = pq.read_table(shards / shard_name(b, N_SHARDS))
        assert json.loads(t.schema.metadata[b"sea.settings"]) == SETTINGS
        got_rows = [ManifestRow(**r) for r in t.to_pylist()]
        assert [r.uri for r in got_rows] == sorted(r.uri for r in expected if shard_of(r.uri, N_SHARDS) == b)
        rows += got_rows
    assert sorted(rows, key=lambda r: r.uri) == expected  # 'missing' is in no shard

    stats = json.loads((staging / STATS_NAME).read_text())
    assert stats == {
        "counts": {"inputs": 4, "ok": 2, "dead_lettered": 1, "windows": n0 + n1, "missing": 1,
                   "in_both_outputs": 1},
        "by_failure_kind": {"bad_spl": 1, "unreadable": 1},
        "by_stage": {"decode": 1, "spl": 1},
        "missing": [missing.uri],
        "in_both_outputs": [ok1.uri],
        "totals": {"recordings_ok": 4, "recordings_dead": 2, "windows": n0 + n1 + n2 + 5,
                   "partitions": 2}}
