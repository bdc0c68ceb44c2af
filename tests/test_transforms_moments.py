"""fit-pca's GroupMoments and CombineStats alone on a TestPipeline (real frames + selection Parquet).

They live in pipelines/fit_pca.py today (moving to pipelines/transforms/moments.py).
"""
from __future__ import annotations

import io

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.moments import CombineStats, GroupMoments, GroupStats
from sea_core.datasets.frames import fixed_list_to_numpy, list_partitions, read_partition, window_ids
from sea_core.reduction import Moments
from tests.test_training_set_pipeline import make_frames

COLS = ["recording_id", "window_index", "sensor", "day", "teacher_emb"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return make_frames(tmp_path_factory.mktemp("moments"), rows_per_part=10)


def _centred(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    return z.T @ z


def test_group_moments_of_the_selected_rows(frames, tmp_path):
    parts = list_partitions(frames)
    rng = np.random.default_rng(0)
    shards, chosen = [], []
    for i, part in enumerate(parts[:4]):
        t = read_partition(part, COLS)
        rows = np.sort(rng.choice(t.num_rows, 4, replace=False))
        ids = list(window_ids(t.take(pa.array(rows))))
        chosen.append(fixed_list_to_numpy(t.column("teacher_emb"))[rows])
        if i == 3:
            ids.append("no-such-recording:0")  # a selected id the frames do not hold
        shard = tmp_path / f"part-{part.sensor}-{part.day}.parquet"
        pq.write_table(pa.table({"window_id": ids, "sensor": [part.sensor] * len(ids),
                                 "day": [part.day] * len(ids)}), shard)
        shards.append(str(shard))
    url = str(tmp_path / "out" / ".moments.npz")

    with test_pipeline.TestPipeline() as p:
        assert_that(p | beam.Create(shards) | GroupMoments(str(frames / "frames"), url), equal_to([url]))

    with np.load(io.BytesIO(open(url, "rb").read())) as z:
        got = {k: z[k] for k in z.files}
    x = np.concatenate(chosen)
    assert (int(got["n"]), int(got["wanted"]), int(got["found"])) == (16, 17, 16)
    np.testing.assert_allclose(got["mean"], x.astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got["m2"], _centred(x), rtol=1e-9, atol=1e-9)
    assert got["teachers"].tolist() == ["test-teacher"]
    assert len(got["digests"]) == 4 and got["missing"].tolist() == [f"{shards[3].rsplit('/', 1)[-1]}:1"]


def test_combine_stats_merges_moments_and_bookkeeping():
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((n, 5)) * (i + 1) + i for i, n in enumerate((3, 7, 11))]
    stats = [GroupStats(Moments.of(x), wanted=len(x) + 1, found=len(x), teachers={f"t{i % 2}"},
                        digests=[(f"s{i}", "d")], missing=[(f"s{i}", 1)]) for i, x in enumerate(xs)]
    x = np.concatenate(xs)

    def check(got):
        (acc,) = got
        assert (acc.moments.n, acc.wanted, acc.found) == (21, 24, 21)
        np.testing.assert_allclose(acc.moments.mean, x.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(acc.moments.m2, _centred(x), rtol=1e-10)
        assert acc.teachers == {"t0", "t1"}
        assert sorted(acc.digests) == [("s0", "d"), ("s1", "d"), ("s2", "d")]
        assert sorted(acc.missing) == [("s0", 1), ("s1", 1), ("s2", 1)]

    with test_pipeline.TestPipeline() as p:
        merged = p | beam.Create(stats) | beam.CombineGlobally(CombineStats()).without_defaults()
        assert_that(merged, check)
