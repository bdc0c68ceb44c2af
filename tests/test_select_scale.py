"""select at scale: groups above the cap are split into time blocks; ids written as shards by workers."""
from __future__ import annotations

import logging

import numpy as np
import pyarrow.parquet as pq

from pipelines.select import parse_args as select_args
from pipelines.select import run as select_job
from sea_core.sampling import sample_group, sample_group_bounded, split_blocks
from tests.test_training_set_pipeline import make_frames


def run_select(argv: list[str]) -> dict:
    """The select job on ``sea pipeline select`` flags; returns ``selection.json``'s content."""
    return select_job(*select_args(argv))


def test_split_blocks_whole_hours_and_cap():
    rng = np.random.default_rng(0)
    hours = np.repeat(np.arange(10), [50, 400, 30, 30, 30, 200, 10, 10, 10, 10])
    times = hours * 3600.0 + rng.uniform(0, 3599, hours.size)
    perm = rng.permutation(hours.size)
    blocks = split_blocks(times[perm], 120)
    allrows = np.concatenate(blocks)
    assert sorted(allrows.tolist()) == list(range(hours.size))  # a partition of the rows
    assert all(len(b) <= 120 for b in blocks)
    for b in blocks:  # blocks are contiguous in time
        t = np.sort(times[perm][b])
        others = np.setdiff1d(np.arange(hours.size), b)
        inside = (times[perm][others] > t[0]) & (times[perm][others] < t[-1])
        assert not inside.any()
    assert [b.tolist() for b in split_blocks(times, 120)] == [b.tolist() for b in split_blocks(times, 120)]


def test_bounded_group_budget_and_determinism(caplog):
    rng = np.random.default_rng(1)
    n, d = 900, 16
    emb = np.abs(rng.standard_normal((n, d))).astype(np.float32)
    rel = rng.uniform(0.1, 1, n)
    times = np.sort(rng.uniform(0, 86400, n))
    with caplog.at_level(logging.WARNING, logger="sea_core.sampling"):
        r = sample_group_bounded(emb, rel, times, k=90, method="diversity+relevance", key=("s", "d"),
                                 max_windows=200)
    assert "max_group_windows" in caplog.text
    assert r.indices.size == 90 == len(np.unique(r.indices)) and r.k == 90 and r.size == n
    assert len(r.info["blocks"]) >= 5 and all(b["size"] <= 200 for b in r.info["blocks"])
    assert sum(b["k"] for b in r.info["blocks"]) == 90
    again = sample_group_bounded(emb, rel, times, k=90, method="diversity+relevance", key=("s", "d"),
                                 max_windows=200)
    np.testing.assert_array_equal(r.indices, again.indices)
    whole = sample_group_bounded(emb, rel, times, k=90, method="diversity+relevance", key=("s", "d"),
                                 max_windows=n)  # under the cap: exactly sample_group
    np.testing.assert_array_equal(whole.indices, sample_group(emb, rel, k=90, method="diversity+relevance",
                                                              key=("s", "d")).indices)


def test_select_pipeline_splits_large_groups_and_writes_shards(tmp_path):
    frames = make_frames(tmp_path / "run", rows_per_part=40)
    s = run_select(["--frames", str(frames), "--method", "diversity", "--fraction", "0.3",
                    "--period", "month", "--max-group-windows", "25", "--output", str(tmp_path / "sel")])
    assert s["max_group_windows"] == 25
    assert all("blocks" in g["info"] for g in s["groups_detail"])  # every month group was split
    shards = sorted((tmp_path / "sel" / "selection.parquet").glob("part-*.parquet"))
    assert len(shards) == s["groups"] == s["shards"]
    ids = pq.read_table(tmp_path / "sel" / "selection.parquet").column("window_id").to_pylist()
    assert len(ids) == len(set(ids)) == s["n_selected"] == sum(g["k"] for g in s["groups_detail"])
    assert (tmp_path / "sel" / "_SUCCESS").is_file()


def test_comparison_works_on_a_bounded_sample(tmp_path):
    from pipelines.job.comparison import sampling_comparison

    frames = make_frames(tmp_path / "run", rows_per_part=40)
    full = sampling_comparison(frames, k=120, dim=8, seeds=(0,), methods=("random",), max_windows=None)
    part = sampling_comparison(frames, k=120, dim=8, seeds=(0,), methods=("random",), max_windows=150)
    assert not full["sampled"] and full["windows"] == full["total_windows"] > 300
    assert part["sampled"] and abs(part["windows"] - 150) <= 9  # per-partition rounding
    assert part["total_windows"] == full["total_windows"]
    assert part["k"] == int(np.ceil(120 * part["windows"] / part["total_windows"])) and part["k_requested"] == 120
    assert "uniform sample" in part["metric"]
    again = sampling_comparison(frames, k=120, dim=8, seeds=(0,), methods=("random",), max_windows=150)
    assert again["rows"] == part["rows"]  # seeded sample


def test_epoch_definition_shared_by_train_and_plan():
    from sea_core.params import TRAIN, TRAINING_SET
    from sea_core.plan import Scenario, plan as capacity_plan
    from sea_core.train import epoch_steps

    assert epoch_steps(1000, 64) == 15                      # small set: one pass
    assert epoch_steps(113_000_000, 64) == TRAIN.steps_per_epoch  # corpus scale: fixed steps
    assert epoch_steps(113_000_000, 64, 10) == 10
    plan = capacity_plan(Scenario())
    windows = plan["corpus"]["windows"]
    steps = epoch_steps(round(windows * TRAINING_SET.split_fractions[0]), TRAIN.batch_size)
    assert plan["compute"]["train_steps_per_epoch"] == steps == TRAIN.steps_per_epoch
    assert plan["compute"]["train_samples"] == TRAIN.epochs * steps * TRAIN.batch_size
