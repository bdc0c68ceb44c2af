"""Informed sampling: DPP maths against brute force, methods, modes, budgets, traps, errors."""
from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pyarrow as pa
import pytest

from sea_core import dpp
from sea_core.errors import ParameterError, SeaWarning
from sea_core.params import SAMPLING, SamplingParams
from sea_core.sampling import (METHODS, group_rng, period_labels, plan_budget, sample_group,
                               select)

C = SAMPLING.dpp_diag


def brute_k_dpp(b: np.ndarray, k: int) -> dict:
    ell = dpp.dense_kernel(b, C)
    subsets = list(itertools.combinations(range(b.shape[0]), k))
    p = np.array([np.linalg.det(ell[np.ix_(s, s)]) for s in subsets])
    return dict(zip(subsets, p / p.sum()))


def total_variation(b: np.ndarray, k: int, draws: int, seed: int) -> tuple[float, float]:
    exact = brute_k_dpp(b, k)
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(exact, 0)
    for _ in range(draws):
        idx, _ = dpp.sample_k_dpp(b, C, k, rng)
        counts[tuple(int(i) for i in idx)] += 1
    p = np.array(list(exact.values()))
    emp = np.array([counts[s] for s in exact]) / draws
    return 0.5 * np.abs(emp - p).sum(), 0.5 * np.abs(p - 1 / p.size).sum()


# --------------------------------------------------------------------------- maths
def test_k_dpp_dual_matches_brute_force_with_complement():
    # N > D: the dual route; rank 3 < N = 7 so the c-only eigenspace (dim 4) is used.
    rng = np.random.default_rng(0)
    b = rng.random((7, 3))
    b = b / b.sum(1, keepdims=True) * rng.uniform(0.5, 3.0, (7, 1))
    assert dpp.sample_k_dpp(b, C, 3, rng)[1]["route"] == "dual"
    tv, tv_uniform = total_variation(b, 3, draws=6000, seed=1)
    assert tv_uniform > 0.25          # the target is far from uniform, so the test can fail
    assert tv < 0.045, tv             # sampling noise at 6000 draws over 35 subsets is ~0.025


def test_k_dpp_dense_route_matches_brute_force():
    rng = np.random.default_rng(2)
    b = rng.random((5, 6)) * rng.uniform(0.2, 2.0, (5, 1))
    assert dpp.sample_k_dpp(b, C, 2, rng)[1]["route"] == "dense"
    tv, tv_uniform = total_variation(b, 2, draws=4000, seed=3)
    assert tv_uniform > 0.1
    assert tv < 0.04, tv


def test_log_elementary_symmetric_against_enumeration():
    mu = np.array([0.3, 2.0, 0.1, 5.0, 1.2])
    e = dpp.log_elementary_symmetric(np.log(mu), 4)
    for k in range(5):
        want = sum(np.prod(mu[list(s)]) for s in itertools.combinations(range(5), k))
        assert np.exp(e[k, 5]) == pytest.approx(want, rel=1e-12)


def test_greedy_map_equals_naive_greedy_and_reports_logdet():
    rng = np.random.default_rng(4)
    b = rng.random((40, 5))
    ell = dpp.dense_kernel(b, C)
    sel, ld = dpp.greedy_map(b, C, 7)
    naive = []
    for _ in range(7):
        naive.append(max((i for i in range(40) if i not in naive),
                         key=lambda i: np.linalg.slogdet(ell[np.ix_(naive + [i], naive + [i])])[1]))
    assert sorted(naive) == sel.tolist()
    assert ld == pytest.approx(np.linalg.slogdet(ell[np.ix_(sel, sel)])[1], abs=1e-9)
    assert dpp.logdet_subset(b, sel, C) == pytest.approx(ld, abs=1e-9)


def test_greedy_float32_features_select_the_same_set():
    rng = np.random.default_rng(9)
    emb = np.maximum(rng.standard_normal((3000, 64)) + rng.choice(3, 3000)[:, None], 0)
    q = rng.uniform(0.01, 1, 3000)
    sel64, ld64 = dpp.greedy_map(dpp.dpp_features(emb, q), C, 40)
    sel32, ld32 = dpp.greedy_map(dpp.dpp_features(emb, q, dtype=np.float32), C, 40)
    assert np.array_equal(sel64, sel32)
    assert ld32 == pytest.approx(ld64, abs=1e-5)


def test_features_l1_rows_and_zero_rows():
    emb = np.array([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]])
    f = dpp.dpp_features(emb, np.array([0.5, 1.0, 1.0]))
    np.testing.assert_allclose(f, [[0.125, 0.375], [0, 0], [0.5, 0.5]])


def test_logdet_is_finite_where_det_underflows():
    b = np.full((500, 4), 1e-4)
    idx = np.arange(400)
    assert np.linalg.det(dpp.dense_kernel(b, C)[np.ix_(idx, idx)]) == 0.0
    assert dpp.logdet_subset(b, idx, C) == pytest.approx(400 * np.log(C), rel=1e-3)


# --------------------------------------------------------------------------- corpus fixtures
def clustered_frames(n: int = 1200, d: int = 8, *, sensors: int = 2, days: int = 2, seed: int = 0) -> dict:
    """Imbalanced clusters along orthogonal directions (non-negative, post-ReLU-like)."""
    rng = np.random.default_rng(seed)
    lab = rng.choice(d, n, p=[0.93] + [0.07 / (d - 1)] * (d - 1))
    emb = np.abs(np.eye(d)[lab] * 2.0 + 0.05 * rng.standard_normal((n, d))).astype(np.float32)
    day = np.array([f"2019-03-{4 + i:02d}" for i in range(days)])
    return {"window_id": np.array([f"w{i}" for i in range(n)]),
            "sensor": np.array([f"s{i % sensors}" for i in range(n)]),
            "day": day[rng.integers(0, days, n)],
            "relevance": rng.uniform(0.05, 1.0, n),
            "teacher_emb": emb}


DPP_CASES = [("diversity", "exact"), ("diversity", "scalable"), ("diversity", "reference"),
             ("diversity+relevance", "exact"), ("diversity+relevance", "scalable"),
             ("diversity+relevance", "reference")]


@pytest.mark.parametrize("method", ["diversity", "diversity+relevance"])
def test_exact_and_greedy_beat_random_on_logdet(method):
    frames = clustered_frames()
    kernel = method
    rnd = [select(frames, k=80, method="random", seed=s).logdet[kernel] for s in range(3)]
    exact = [select(frames, k=80, method=method, mode="exact", seed=s).logdet[kernel] for s in range(3)]
    greedy = select(frames, k=80, method=method, mode="scalable").logdet[kernel]
    assert min(exact) > max(rnd) + 3, (exact, rnd)
    assert greedy > max(exact), (greedy, exact)


@pytest.mark.parametrize("method,mode", DPP_CASES + [("random", "scalable"), ("relevance", "scalable")])
def test_every_mode_is_deterministic_under_a_seed(method, mode):
    frames = clustered_frames(n=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeaWarning)
        a = select(frames, k=40, method=method, mode=mode, seed=7)
        b = select(frames, k=40, method=method, mode=mode, seed=7)
    assert np.array_equal(a.indices, b.indices)
    assert a.logdet == b.logdet
    assert np.array_equal(a.window_ids, frames["window_id"][a.indices])
    if (method, mode) in [("random", "scalable"), ("relevance", "scalable"), ("diversity", "exact")]:
        c = select(frames, k=40, method=method, mode=mode, seed=8)
        assert not np.array_equal(a.indices, c.indices)


def test_group_seed_is_independent_of_other_groups():
    frames = clustered_frames(n=600, sensors=3)
    full = select(frames, k=90, method="diversity", mode="exact", per_sensor_budget=True)
    keep = frames["sensor"] != "s2"
    part = select({c: v[keep] for c, v in frames.items()}, k=90, method="diversity", mode="exact",
                  per_sensor_budget=True)
    sel_full = set(full.window_ids[np.isin(full.window_ids, frames["window_id"][keep])])
    assert sel_full == set(part.window_ids)
    assert not np.array_equal(group_rng(1, ("a", "x")).random(4), group_rng(1, ("a", "y")).random(4))


def test_relevance_method_prefers_relevant_windows():
    frames = clustered_frames(n=2000)
    rel = select(frames, fraction=0.1, method="relevance", seed=3)
    rnd = select(frames, fraction=0.1, method="random", seed=3)
    assert frames["relevance"][rel.indices].mean() > frames["relevance"][rnd.indices].mean() + 0.1
    assert np.unique(rel.indices).size == rel.indices.size


# --------------------------------------------------------------------------- budgets
def test_plan_budget_reference_ceilings():
    sizes = {("a", "d1"): 50, ("a", "d2"): 50, ("a", "d3"): 50, ("a", "d4"): 50,
             ("b", "d1"): 10, ("c", "d1"): 30, ("c", "d2"): 30}
    k, budget = plan_budget(sizes, total=100)
    assert budget == {"a": 34, "b": 34, "c": 34}                       # ceil(100 / 3)
    assert k[("a", "d1")] == 9 and k[("b", "d1")] == 34 and k[("c", "d2")] == 17
    k, budget = plan_budget(sizes, total=100, per_sensor_budget=True)
    assert budget["a"] == 100 and k[("a", "d3")] == 25 and k[("c", "d1")] == 50


def test_select_budgets_per_group():
    frames = clustered_frames(n=900, sensors=3, days=3)
    sel = select(frames, fraction=0.05, method="diversity", mode="scalable")
    assert sel.total == 45 and sel.sensor_budget == {"s0": 15, "s1": 15, "s2": 15}
    for g in sel.groups:
        assert g.k == 5 and g.indices.size == 5
    assert set(sel.group_k) == {f"sensor=s{s}/day=2019-03-0{4 + d}" for s in range(3) for d in range(3)}
    assert sel.indices.size == 45


@pytest.mark.parametrize("policy", ["whole", "skip"])
def test_small_groups_are_reported(policy):
    frames = clustered_frames(n=300, sensors=1, days=1)
    tiny = {c: v[:4].copy() for c, v in frames.items()}
    tiny["day"][:] = "2019-03-10"
    both = {c: np.concatenate([frames[c], tiny[c]]) for c in frames}
    both["window_id"] = np.array([f"w{i}" for i in range(304)])
    with pytest.warns(SeaWarning, match="smaller than their k"):
        sel = select(both, k=20, method="diversity", mode="exact", policy=policy)
    assert sel.small_groups == [("sensor=s0/day=2019-03-10", 4, 10)]
    tiny_sel = [g for g in sel.groups if g.key == ("s0", "2019-03-10")][0]
    assert tiny_sel.indices.size == (4 if policy == "whole" else 0)
    assert sel.indices.size == 10 + tiny_sel.indices.size


def test_periods_week_and_month():
    days = np.array(["2019-03-03", "2019-03-04", "2019-03-10", "2019-03-11", "2019-04-01"])
    assert period_labels(days, "week").tolist() == ["2019-W09", "2019-W10", "2019-W10", "2019-W11",
                                                    "2019-W14"]
    assert period_labels(days, "month").tolist() == ["2019-03"] * 4 + ["2019-04"]
    frames = clustered_frames(n=200, days=6)
    sel = select(frames, k=20, method="random", period="month")
    assert len(sel.groups) == 2 and all(g.key[1] == "2019-03" for g in sel.groups)


def test_arrow_table_input_equals_dict_input():
    frames = clustered_frames(n=300)
    start = (np.array(frames["day"], dtype="datetime64[D]").astype("datetime64[ms]")
             + np.timedelta64(14, "h")).astype(np.int64)          # 14:00 UTC = morning in New York
    table = pa.table({
        "window_id": frames["window_id"], "sensor": frames["sensor"],
        "start_time": pa.array(start, pa.timestamp("ms", tz="America/New_York")),
        "relevance": pa.array(frames["relevance"], pa.float32()),
        "teacher_emb": pa.FixedSizeListArray.from_arrays(pa.array(frames["teacher_emb"].ravel()), 8)})
    a = select(table, k=30, method="diversity+relevance", mode="exact")
    frames["relevance"] = frames["relevance"].astype(np.float32)
    b = select(frames, k=30, method="diversity+relevance", mode="exact")
    assert np.array_equal(a.indices, b.indices)
    assert [g.key for g in a.groups] == [g.key for g in b.groups]


# --------------------------------------------------------------------------- errors
def test_nan_embedding_names_field_and_group():
    frames = clustered_frames(n=100)
    frames["teacher_emb"][37, 2] = np.nan
    g = f"sensor={frames['sensor'][37]}/day={frames['day'][37]}"
    with pytest.raises(ParameterError, match=rf"teacher_emb.*row 37, window_id w37, group {g}"):
        select(frames, k=10, method="diversity")


@pytest.mark.parametrize("bad", [0.0, 1.5, np.nan])
def test_relevance_outside_unit_interval(bad):
    frames = clustered_frames(n=100)
    frames["relevance"][5] = bad
    with pytest.raises(ParameterError, match=r"relevance: 1 value\(s\) outside \(0, 1\].*row 5"):
        select(frames, k=10, method="random")


def test_empty_group_and_nonpositive_k_name_the_group():
    emb = np.ones((0, 4))
    with pytest.raises(ParameterError, match="group sensor=s9/day=2019-01-01 is empty"):
        sample_group(emb, None, k=3, method="diversity", key=("s9", "2019-01-01"))
    with pytest.raises(ParameterError, match="group sensor=s9/day=2019-01-01: k must be > 0"):
        sample_group(np.ones((5, 4)), None, k=0, method="diversity", key=("s9", "2019-01-01"))
    with pytest.raises(ParameterError, match="group sensor=x/day=d has 0 windows"):
        plan_budget({("x", "d"): 0, ("y", "d"): 5}, total=3)
    with pytest.raises(ParameterError, match="total selection budget must be > 0"):
        select(clustered_frames(n=50), k=0, method="random")


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "dpp"}, "method must be one of"),
    ({"method": "random", "mode": "fast"}, "mode must be one of"),
    ({"method": "random", "period": "year"}, "period must be one of"),
    ({"method": "random", "k": 5, "fraction": 0.1}, "either k"),
    ({"method": "random", "seed": -1}, "seed must be"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        select(clustered_frames(n=50), **kwargs)


def test_one_validator_for_every_entry_point():
    """select, sample_group, period_labels and the Beam stage's flags share check_options."""
    from sea_core.sampling import MODES, POLICIES, check_options

    check_options(method="random", mode="exact", period="week", policy="skip")   # all valid: no error
    with pytest.raises(ParameterError, match=r"^--policy must be one of \('whole', 'skip'\), got 'all'$"):
        check_options(prefix="--", method="random", policy="all")
    with pytest.raises(ParameterError, match=r"^mode must be one of .*got None$"):
        check_options(mode=None)                                             # None is a bad value too
    with pytest.raises(TypeError, match="unknown option 'kernel'"):
        check_options(kernel="x")
    emb = np.zeros((4, 2))
    for bad, match in (({"mode": "fast"}, f"mode must be one of {MODES}"),
                       ({"policy": "all"}, f"policy must be one of {POLICIES}")):
        with pytest.raises(ParameterError, match=re.escape(match)):
            sample_group(emb, None, k=2, method="random", **bad)
    with pytest.raises(ParameterError, match="period must be one of"):
        period_labels(np.array(["2026-01-01"]), "year")


def test_missing_columns():
    frames = clustered_frames(n=50)
    del frames["relevance"]
    with pytest.raises(ParameterError, match="needs the 'relevance' column"):
        select(frames, k=5, method="diversity+relevance")
    assert select(frames, k=5, method="diversity").logdet.keys() == {"diversity"}


# --------------------------------------------------------------------------- reference mode traps
def test_reference_duplicates_never_passed_on():
    rng = np.random.default_rng(5)
    emb, rel = rng.random((300, 16)), rng.uniform(0.1, 1, 300)
    assert np.unique(np.random.RandomState(SAMPLING.s_init_seed).choice(300, 60)).size < 60
    res = sample_group(emb, rel, k=60, method="diversity+relevance", mode="reference", key=("s", "d"))
    assert res.indices.size == 60 and np.unique(res.indices).size == 60
    traps = {t["trap"]: t for t in res.traps}
    assert traps["duplicate_start"]["n_duplicates_in_start"] > 0
    assert len(traps["duplicate_start"]["topped_up"]) == traps["duplicate_start"]["n_duplicates_in_result"]
    assert traps["few_swaps"]["moved"] <= 2
    again = sample_group(emb, rel, k=60, method="diversity+relevance", mode="reference", key=("s", "d"))
    assert np.array_equal(res.indices, again.indices)


def test_reference_underflow_is_reported():
    rng = np.random.default_rng(6)
    emb = rng.random((3000, 64))          # ||f||^2 ~ 1/64: L_S ~ 0.1 I, det(370 distinct) ~ 1e-370
    res = sample_group(emb, None, k=400, method="diversity", mode="reference", key=("s", "d"))
    traps = {t["trap"]: t for t in res.traps}
    und = traps["det_underflow"]
    assert und["det_start_distinct"] == 0.0 and und["logdet_start_distinct"] < -700
    assert und["chain_frozen"]
    assert any("invalid value" in w for w in und["runtime_warnings"])
    assert np.unique(res.indices).size == 400 and np.isfinite(res.logdet["diversity"])


def test_reference_selection_warns_and_refuses_large_groups():
    frames = clustered_frames(n=400)
    with pytest.warns(SeaWarning, match="swap proposals"):
        sel = select(frames, k=40, method="diversity", mode="reference")
    assert sel.traps and all(t["moved"] <= 2 for t in sel.traps if t["trap"] == "few_swaps")
    with pytest.raises(ParameterError, match="exceed the reference mode limit.*reference_max_group=50"):
        select(frames, k=40, method="diversity", mode="reference",
               params=SamplingParams(reference_max_group=50))


def test_all_methods_listed():
    assert METHODS == ("random", "relevance", "diversity", "diversity+relevance")
