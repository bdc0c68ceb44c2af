"""ReadManifest alone on a TestPipeline: real Parquet manifests (a directory of shards, a single
file with several row groups) read back row by row; no URL / an incomplete directory -> no rows."""
from __future__ import annotations

import pyarrow.parquet as pq
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.manifest import (ManifestRow, ReadManifest, manifest_table, shard_name,
                                           shard_of, write_manifest)
from tests.conftest import CLIP_BASE, write_clip

DAY = "2019-03-04"
SETTINGS = {"teacher_id": "clip", "hop_seconds": 1.0}


def _rows(root) -> dict[str, ManifestRow]:
    """Manifest rows of real WAV clips: ok rows in their partition, every third one dead."""
    rows = {}
    for n, (sensor, i) in enumerate((s, i) for s in ("aa01", "bb02") for i in range(4)):
        p = write_clip(root, sensor, CLIP_BASE + 60 * i, seconds=0.2, seed=n)
        st = p.stat()
        dead = n % 3 == 0
        rows[str(p)] = ManifestRow(uri=str(p), size=st.st_size, version=f"mtime:{st.st_mtime}",
                                   content_hash=None if dead else f"{n:064x}", run_id="r0",
                                   status="dead" if dead else "ok",
                                   sensor=None if dead else sensor, day=None if dead else DAY,
                                   windows=0 if dead else 1 + n)
    return rows


def test_read_manifest_reads_every_row_of_shards_and_of_a_single_file(tmp_path):
    rows = _rows(tmp_path / "up")
    sharded = tmp_path / "out" / "manifest.parquet"
    write_manifest(str(sharded), rows, SETTINGS, n_shards=3)
    shards = sorted(f.name for f in sharded.iterdir())
    assert shards == [shard_name(b, 3) for b in range(3)]
    by_shard = {b: sorted(u for u in rows if shard_of(u, 3) == b) for b in range(3)}
    assert [pq.read_table(sharded / shard_name(b, 3)).column("uri").to_pylist()
            for b in range(3)] == [by_shard[b] for b in range(3)]
    single = tmp_path / "legacy" / "manifest.parquet"  # the single-file form, 4 row groups
    single.parent.mkdir()
    pq.write_table(manifest_table(sorted(rows.values(), key=lambda r: r.uri), SETTINGS), single,
                   row_group_size=2)
    assert pq.ParquetFile(single).num_row_groups == 4
    incomplete = tmp_path / "cut" / "manifest.parquet"  # a publish cut short: a shard missing
    write_manifest(str(incomplete), rows, SETTINGS, n_shards=3)
    (incomplete / shard_name(1, 3)).unlink()
    expected = list(rows.values())

    with test_pipeline.TestPipeline() as p:
        assert_that(p | "Sharded" >> ReadManifest(str(sharded)), equal_to(expected),
                    label="CheckSharded")
        assert_that(p | "Single" >> ReadManifest(str(single)), equal_to(expected),
                    label="CheckSingle")
        assert_that(p | "NoUrl" >> ReadManifest(None), equal_to([]), label="CheckNoUrl")
        assert_that(p | "Incomplete" >> ReadManifest(str(incomplete)), equal_to([]),
                    label="CheckIncomplete")
    assert len(expected) == 8 and sum(r.status == "dead" for r in expected) == 3
