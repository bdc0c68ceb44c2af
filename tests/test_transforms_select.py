"""select's SampleGroups alone on a TestPipeline, on a real frames dataset in tmp_path.

SampleGroups lives in pipelines/select.py today (moving to pipelines/transforms/select.py).
"""
from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from sea_core.datasets.frames import list_partitions, read_partition, window_ids
from pipelines.select import SelectConfig, plan_groups
from pipelines.transforms.select import SampleGroups, WriteSelection
from sea_core.datasets.layout import SELECTION_FILE
from sea_core.datasets.layout import SELECTION_SUMMARY_FILE as SUMMARY_FILE
from sea_core.datasets.layout import selection_shard_name as shard_name
from tests.test_training_set_pipeline import DAYS, SENSORS, make_frames


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return make_frames(tmp_path_factory.mktemp("select"), rows_per_part=12)


def _sample(frames, out, method: str, k: int):
    cfg = SelectConfig(frames=str(frames), output=str(out), method=method, k=k, seed=3)
    plan, budget = plan_groups(list_partitions(frames), cfg)
    got = []
    with test_pipeline.TestPipeline() as p:
        results = p | beam.Create(plan) | SampleGroups(cfg)
        summary = results | beam.Map(lambda r: ((r["group"]["sensor"], r["group"]["period"]),
                                                r["group"]["k"], r["n_selected"], r["group"]["size"]))
        assert_that(summary, equal_to([(key, kk, kk, sum(p.rows for p in parts))
                                       for key, parts, kk in plan]))
    for key, parts, kk in plan:
        shard = pq.read_table(out / SELECTION_FILE / shard_name(key))
        ids = shard.column("window_id").to_pylist()
        universe = set(window_ids(read_partition(parts[0], ["recording_id", "window_index"])))
        assert len(ids) == len(set(ids)) == kk and set(ids) <= universe
        assert ids == sorted(ids)
        assert set(shard.column("sensor").to_pylist()) == {key[0]}
        assert set(shard.column("day").to_pylist()) == {parts[0].day}
        got.append(ids)
    return plan, budget, got


def test_sample_groups_writes_one_shard_of_k_ids_per_group_deterministically(frames, tmp_path):
    plan, budget, ids = _sample(frames, tmp_path / "a", "diversity+relevance", k=27)
    assert [key for key, _, _ in plan] == [(s, d) for s in SENSORS for d in DAYS]  # period 'day'
    assert budget["total_requested"] == 27 and [k for *_, k in plan] == [3] * 9
    _, _, again = _sample(frames, tmp_path / "b", "diversity+relevance", k=27)
    assert again == ids  # seeded: the same ids on a second run


def test_sample_groups_diversity_differs_from_random(frames, tmp_path):
    _, _, rnd = _sample(frames, tmp_path / "r", "random", k=45)
    _, _, div = _sample(frames, tmp_path / "d", "diversity", k=45)
    assert rnd != div and [len(x) for x in rnd] == [len(x) for x in div] == [5] * 9
    assert np.mean([len(set(a) & set(b)) for a, b in zip(rnd, div)]) < 5


def test_write_selection_gathers_group_results_into_the_summary(tmp_path):
    cfg = SelectConfig(frames=str(tmp_path / "frames"), output=str(tmp_path / "sel"),
                       method="diversity", k=7, seed=3)
    budget = {"windows": 40, "total_requested": 7, "groups": 3, "sensor_budget": {"a1": 4, "b2": 3}}

    def result(sensor, period, size, k, logdet, traps=()):
        return {"group": {"sensor": sensor, "period": period, "size": size, "k": k,
                          "n_selected": min(size, k), "logdet": {"diversity": logdet},
                          "algorithm": "exact", "traps": list(traps), "info": {}, "seconds": 0.1},
                "n_selected": min(size, k)}

    results = [result("b2", "2019-03-05", 20, 3, -1.5), result("a1", "2019-03-04", 2, 3, 0.25),
               result("a1", "2019-03-05", 18, 2, -0.75, [{"kind": "duplicates", "n": 2}])]

    def check(got):
        (summary,) = got
        assert (summary["n_selected"], summary["shards"], summary["method"], summary["k"]) == (7, 3, "diversity", 7)
        assert summary["logdet"] == {"diversity": -2.0}
        assert [(g["sensor"], g["period"]) for g in summary["groups_detail"]] == [
            ("a1", "2019-03-04"), ("a1", "2019-03-05"), ("b2", "2019-03-05")]
        assert [s[1:] for s in summary["small_groups"]] == [(2, 3)]
        assert [t["kind"] for t in summary["traps"]] == ["duplicates"]
        assert summary["sensor_budget"] == {"a1": 4, "b2": 3}

    with test_pipeline.TestPipeline() as p:
        assert_that(p | beam.Create(results) | WriteSelection(cfg, budget), check)
    written = json.loads((tmp_path / "sel" / SUMMARY_FILE).read_text())
    assert written["n_selected"] == 7 and written["logdet"] == {"diversity": -2.0}
    assert (tmp_path / "sel" / "_SUCCESS").exists()
