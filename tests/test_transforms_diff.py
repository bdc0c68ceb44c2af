"""PlanRefresh alone on a TestPipeline: real WAV clips + a real previous manifest -> the staged plan.

The corpus has new, changed, unchanged (ok and dead) and removed recordings, a frames partition
on disk that the manifest does not know and one it knows (and nothing touches). The transform
ends in its sink (nothing comes out); what it decided is read back from the staging with
pyarrow: counts.json, the files to process, the partitions to rebuild with the URIs each keeps,
and the manifest rows carried over.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.diff import COUNTS_NAME, KEEP_DIR, UNITS_DIR, PlanRefresh
from pipelines.transforms.manifest import ManifestRow, write_manifest
from pipelines.transforms.records import DEAD_LETTER_KEY, InputFile, frames_key
from pipelines.transforms.write import OutputLayout
from tests.conftest import CLIP_BASE, write_clip

DAY = "2019-03-04"
SETTINGS = {"teacher_id": "clip"}
SHARD = 2


def _file(p) -> InputFile:
    st = p.stat()
    return InputFile(uri=str(p), size=st.st_size, version=f"mtime:{st.st_mtime}")


def _row(f: InputFile, sensor: str, *, dead=False, size=None) -> ManifestRow:
    return ManifestRow(uri=f.uri, size=f.size if size is None else size, version=f.version,
                       content_hash=None if dead else "ab" * 32, run_id="r0",
                       status="dead" if dead else "ok", sensor=None if dead else sensor,
                       day=None if dead else DAY, windows=0 if dead else 2)


@pytest.fixture()
def corpus(tmp_path):
    up = tmp_path / "upstream"
    f = {(s, i): _file(write_clip(up, s, CLIP_BASE + 60 * i, seconds=0.2, seed=n))
         for n, (s, i) in enumerate([("aa01", 0), ("aa01", 1), ("aa01", 2), ("aa01", 3),
                                     ("bb02", 0), ("bb02", 1), ("ee05", 0)])}
    gone = InputFile(uri=str(up / "sensor_cc03" / DAY / f"{CLIP_BASE}.wav"), size=6444, version="mtime:1")
    previous = [_row(f["aa01", 0], "aa01"),
                _row(f["aa01", 1], "aa01", size=f["aa01", 1].size + 1),  # changed since
                _row(f["aa01", 2], "aa01", dead=True),
                _row(f["bb02", 0], "bb02"), _row(f["ee05", 0], "ee05"), _row(gone, "cc03")]
    out = tmp_path / "out"
    manifest = out / "manifest.parquet"
    write_manifest(str(manifest), {r.uri: r for r in previous}, SETTINGS, n_shards=2)
    layout = OutputLayout(root=str(out), emb_dim=4, student_samples=8)
    for key in (frames_key("dd04", DAY), frames_key("ee05", DAY)):  # unknown / known to the manifest
        p = Path(layout.path(key))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"not read by the plan")
    return up, out, manifest, f, gone, previous


def _staged(staging):
    """(files to process, {partition: keep uris}, units, kept manifest rows, keep-file settings)
    read from the staging with pyarrow."""
    files, touches, units = [], {}, defaultdict(list)
    for part in sorted((staging / UNITS_DIR).glob("part-*.parquet")):
        for r in pq.read_table(part).to_pylist():
            units[(part.name, r["unit"])].append(r["kind"])
            if r["kind"] == "touch":
                assert tuple(r["key"]) not in touches
                touches[tuple(r["key"])] = set(r["keep_uris"])
            else:
                files.append(InputFile(uri=r["uri"], size=r["size"], version=r["version"]))
    kept, settings = [], set()
    for part in sorted((staging / KEEP_DIR).glob("part-*.parquet")):
        t = pq.read_table(part)
        settings.add(t.schema.metadata[b"sea.settings"])
        kept += [ManifestRow(**r) for r in t.to_pylist()]
    return files, touches, list(units.values()), kept, settings


@pytest.mark.parametrize("incremental", [True, False])
def test_plan_refresh_classifies_and_stages_the_plan(corpus, tmp_path, incremental):
    up, out, manifest, f, gone, previous = corpus
    staging = tmp_path / "staging"

    with test_pipeline.TestPipeline() as p:
        got = p | PlanRefresh(str(up), str(manifest), str(out), str(staging), incremental=incremental,
                              shard_size=SHARD, settings=SETTINGS)
        assert_that(got, equal_to([]))  # nothing past the sink

    counts = json.loads((staging / COUNTS_NAME).read_text())
    files, touches, units, kept, settings = _staged(staging)
    aa, bb, cc, dd, ee = (frames_key(s, DAY) for s in ("aa01", "bb02", "cc03", "dd04", "ee05"))
    if incremental:
        assert counts == {"listed": 7, "previous": 6, "new": 2, "changed": 1, "unchanged": 4,
                          "removed": 1, "process": 3, "touches": 5, "removed_uris": [gone.uri]}
        assert sorted(files, key=lambda x: x.uri) == [f["aa01", 1], f["aa01", 3], f["bb02", 1]]
        # aa01 gets new rows (keeps its unchanged recording), bb02 too, cc03 lost its recording,
        # dd04 is on disk but unknown; ee05 (on disk, known, unchanged) is left alone
        assert touches == {aa: {f["aa01", 0].uri}, bb: {f["bb02", 0].uri}, cc: set(), dd: set(),
                           DEAD_LETTER_KEY: {f["aa01", 2].uri}}
        assert sorted(kept, key=lambda r: r.uri) == sorted(
            [previous[0], previous[2], previous[3], previous[4]], key=lambda r: r.uri)
        assert settings == {json.dumps(SETTINGS, sort_keys=True).encode()}
    else:
        assert counts == {"listed": 7, "previous": 6, "new": 7, "changed": 0, "unchanged": 0,
                          "removed": 1, "process": 7, "touches": 5, "removed_uris": [gone.uri]}
        assert sorted(files, key=lambda x: x.uri) == sorted(f.values(), key=lambda x: x.uri)
        assert touches == {aa: set(), bb: set(), dd: set(), ee: set(), DEAD_LETTER_KEY: set()}
        assert kept == [] and not (staging / KEEP_DIR).exists()
    for unit in units:  # file units of at most shard_size files; touches in units of their own
        assert set(unit) == {"touch"} or (set(unit) == {"file"} and len(unit) <= SHARD)
