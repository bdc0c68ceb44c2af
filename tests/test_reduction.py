"""Scaler + PCA reduction artifact: sklearn parity, nesting, incremental path, round trip, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from sea_core.errors import DataError, ParameterError, SchemaError
from sea_core.params import REDUCTION, ReductionParams
from sea_core.reduction import ReductionArtifact, fingerprint_array, fit_reduction


def low_rank_embeddings(n: int = 3000, d: int = 48, rank: int = 12, seed: int = 0) -> np.ndarray:
    """Non-negative embeddings with a decaying spectrum (a clear gap after ``rank``)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, rank)) * np.linspace(5, 1.5, rank)
    x = z @ rng.standard_normal((rank, d)) + 0.2 * rng.standard_normal((n, d)) + 3.0
    return np.maximum(x, 0).astype(np.float32)


def fit(x, **kw):
    kw.setdefault("dims", (16, 8, 4))
    return fit_reduction(x, sampling_method="diversity+relevance/scalable", teacher_id="l3-random(seed=0)",
                         **kw)


def test_matches_sklearn_and_is_nested():
    x = low_rank_embeddings()
    art = fit(x)
    assert art.solver == "pca" and art.n_components == 16 and art.dims == (16, 8, 4)
    scaler = StandardScaler().fit(x)
    ref = PCA(n_components=16).fit(scaler.transform(x))
    got = art.transform(x, 16)
    assert got.dtype == np.float32 and got.shape == (3000, 16)
    want = ref.transform(scaler.transform(x))
    signs = np.sign((got * want).sum(0))
    np.testing.assert_allclose(got, want * signs, atol=2e-4 * np.abs(want).max())
    np.testing.assert_allclose(art.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-6)
    # Nested: the 4-dim target is the first 4 columns, and equals a separate 4-component fit.
    np.testing.assert_array_equal(art.transform(x, 4), got[:, :4])
    ref4 = PCA(n_components=4).fit(scaler.transform(x)).transform(scaler.transform(x))
    np.testing.assert_allclose(np.abs(art.transform(x, 4)), np.abs(ref4), atol=2e-4 * np.abs(ref4).max())
    assert np.abs(got.mean(0)).max() < 1e-3 * np.abs(got).max()       # zero-mean scores


def test_round_trip(tmp_path):
    x = low_rank_embeddings(n=500)
    art = fit(x, fingerprint="sel:abc")
    art.save(tmp_path / "pca")
    assert sorted(p.name for p in (tmp_path / "pca").iterdir()) == [REDUCTION.json_name, REDUCTION.npz_name]
    back = ReductionArtifact.load(tmp_path / "pca")
    for name in ("mean", "scale", "components", "explained_variance", "explained_variance_ratio"):
        np.testing.assert_array_equal(getattr(back, name), getattr(art, name))
    assert back.metadata() == art.metadata()
    assert back.fingerprint == "sel:abc" and back.n_fit == 500 and back.teacher_id == "l3-random(seed=0)"
    np.testing.assert_array_equal(back.transform(x, 8), art.transform(x, 8))
    meta = json.loads((tmp_path / "pca" / REDUCTION.json_name).read_text())
    assert meta["version"] == REDUCTION.version and meta["dims"] == [16, 8, 4]
    assert meta["sampling_method"] == "diversity+relevance/scalable" and "sea " in meta["created_by"]


def test_default_fingerprint_depends_on_data():
    x = low_rank_embeddings(n=200)
    y = x.copy()
    y[0, 0] += 1
    assert fit(x).fingerprint == fingerprint_array(x) != fingerprint_array(y)


@pytest.mark.parametrize("how", ["batches", "memory_limit"])
def test_incremental_close_to_pca(how):
    x = low_rank_embeddings(n=4000)
    full = fit(x)
    if how == "batches":
        inc = fit([x[i:i + 700] for i in range(0, 4000, 700)], fingerprint="f", batch_size=1000)
    else:
        inc = fit(x, params=ReductionParams(memory_limit_bytes=1000), batch_size=1000)
    assert inc.solver == "incremental" and inc.n_fit == 4000
    np.testing.assert_allclose(inc.mean, full.mean, rtol=1e-5)
    np.testing.assert_allclose(inc.scale, full.scale, rtol=1e-5)
    np.testing.assert_allclose(inc.explained_variance_ratio[:12], full.explained_variance_ratio[:12],
                               rtol=0.02)
    angles = subspace_angles(inc.components[:8].T, full.components[:8].T)
    assert np.degrees(angles.max()) < 2.0, np.degrees(angles)


def test_batches_from_callable_and_one_shot_iterator_refused():
    x = low_rank_embeddings(n=600)
    art = fit(lambda: (x[i:i + 100] for i in range(0, 600, 100)), fingerprint="f")
    assert art.solver == "incremental" and art.n_fit == 600
    with pytest.raises(ParameterError, match="one-shot iterator"):
        fit(iter([x]), fingerprint="f")
    with pytest.raises(ParameterError, match="fingerprint is required"):
        fit([x])


def test_errors():
    x = low_rank_embeddings(n=100, d=32)
    with pytest.raises(ParameterError, match=r"max\(dims\)=64 exceeds the embedding dimension D=32"):
        fit(x, dims=64)
    with pytest.raises(DataError, match=r"too few samples \(10\) for 16"):
        fit(x[:10])
    bad = x.copy()
    bad[7, 3] = np.nan
    with pytest.raises(DataError, match=r"embeddings: 1 row\(s\) hold NaN/inf \(first: row 7\)"):
        fit(bad)
    with pytest.raises(DataError, match="embeddings batch 1: 1 row"):
        fit([x[50:], bad[:50]], fingerprint="f")
    with pytest.raises(ParameterError, match="dims must be positive"):
        fit(x, dims=(8, 0))
    art = fit(x)
    with pytest.raises(ParameterError, match=r"dim must be an integer in \[1, 16\]"):
        art.transform(x, 17)
    with pytest.raises(ParameterError, match=r"expected shape \[N, 32\]"):
        art.transform(x[:, :8], 4)
    with pytest.raises(DataError, match="NaN"):
        art.transform(bad, 4)


def test_load_errors(tmp_path):
    art = fit(low_rank_embeddings(n=200))
    d = art.save(tmp_path / "a")
    with pytest.raises(DataError, match=f"{REDUCTION.json_name}: missing"):
        ReductionArtifact.load(tmp_path / "nowhere")
    jpath = d / REDUCTION.json_name
    meta = json.loads(jpath.read_text())
    jpath.write_text(json.dumps({**meta, "version": "0"}))
    with pytest.raises(SchemaError, match=r"reduction.json: reduction artifact version '0' is not supported"):
        ReductionArtifact.load(d)
    jpath.write_text(json.dumps(meta))
    npz = d / REDUCTION.npz_name
    npz.write_bytes(npz.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match=r"reduction.npz: content does not match the sha256"):
        ReductionArtifact.load(d)
    assert not list(d.glob(".*.tmp"))


# --------------------------------------------------------------------------- explained variance
def test_explained_variance_on_is_the_heldout_r2_in_the_fitted_space():
    """ONE definition (schedule's drift check, the sampling comparison):
    EV = 1 - sum ||z - C_d^T C_d z||^2 / sum ||z - z_bar||^2 with z = (x - mean) / scale."""
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    mixing = np.random.default_rng(100).standard_normal((4, 16)) * np.linspace(0.2, 5.0, 16)
    x = rng.standard_normal((2000, 4)) @ mixing + 0.1 * rng.standard_normal((2000, 16))
    art = fit_reduction(x, dims=(8, 4), sampling_method="random", teacher_id="t")
    for dim in (1, 4, 8):  # on the fitting data: the artifact's own ratio
        assert art.explained_variance_on(x, dim=dim) == pytest.approx(
            art.explained_variance_ratio[:dim].sum(), abs=1e-9)
    assert art.explained_variance_on(x) == pytest.approx(art.explained_variance_ratio.sum(), abs=1e-9)
    held = rng.standard_normal((300, 4)) @ mixing + 0.1 * rng.standard_normal((300, 16))
    z = (held - art.mean) / art.scale
    c = art.components[:4]
    want = r2_score(z, z @ c.T @ c, multioutput="variance_weighted")   # the textbook R²
    got = art.explained_variance_on(held.astype(np.float32), dim=4, chunk_rows=7)  # chunks, float32 in
    assert got == pytest.approx(want, abs=1e-6)
    ev = art.explained_variance_on(x, dim=4)
    inside = x + 3.0 * art.components[0] * art.scale    # mean shifted along a kept axis: same R²
    outside = x + 3.0 * art.components[6] * art.scale   # ... out of the kept axes: unexplained
    assert art.explained_variance_on(inside, dim=4) == pytest.approx(ev, abs=1e-9)
    assert art.explained_variance_on(outside, dim=4) < ev - 0.5
    far = x + 50.0 * art.components[6] * art.scale
    assert art.explained_variance_on(far, dim=4) < 0                     # worse than the rows' mean
    assert np.isnan(art.explained_variance_on(np.repeat(x[:1], 5, axis=0), dim=4))  # no variance


def test_explained_variance_on_errors():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 6))
    art = fit_reduction(x, dims=3, sampling_method="random", teacher_id="t")
    for bad_dim in (0, 4, 2.0, True):
        with pytest.raises(ParameterError, match="dim must be an integer in \\[1, 3\\]"):
            art.explained_variance_on(x, dim=bad_dim)
    with pytest.raises(ParameterError, match="N >= 2, 6"):
        art.explained_variance_on(x[:, :5])
    with pytest.raises(ParameterError, match="N >= 2, 6"):
        art.explained_variance_on(x[:1])
    y = x.copy()
    y[17, 2] = np.nan
    with pytest.raises(DataError, match="row 17"):
        art.explained_variance_on(y, chunk_rows=5)
