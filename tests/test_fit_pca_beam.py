"""fit-pca as a Beam job: float64 moments merged across workers, scaler + PCA via eigh == sklearn."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from pipelines.fit_pca import fit_pca
from pipelines.select import parse_args as select_args
from pipelines.select import run as select_job
from sea_core.reduction import Moments, ReductionArtifact, fit_from_moments
from tests.test_training_set_pipeline import make_frames


def run_select(argv: list[str]) -> dict:
    """The select job on ``sea pipeline select`` flags; returns ``selection.json``'s content."""
    return select_job(*select_args(argv))


RTOL = 1e-6


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def _same_as_sklearn(art: ReductionArtifact, x: np.ndarray, n_comp: int):
    scaler = StandardScaler().fit(x)
    pca = PCA(n_components=n_comp).fit(scaler.transform(x))
    assert _rel(art.mean, scaler.mean_) < RTOL
    assert _rel(art.scale, scaler.scale_) < RTOL
    signs = np.sign(np.sum(art.components * pca.components_, axis=1))  # equal up to sign
    assert _rel(art.components * signs[:, None], pca.components_) < RTOL
    assert _rel(art.explained_variance, pca.explained_variance_) < RTOL
    assert _rel(art.explained_variance_ratio, pca.explained_variance_ratio_) < RTOL


def test_moments_merge_equals_sklearn():
    rng = np.random.default_rng(0)
    x = (rng.gamma(1, 1, (3000, 40)) @ rng.standard_normal((40, 40)) + 50).astype(np.float32)
    x[:, 3] = 2.0  # a constant feature keeps scale 1, like sklearn
    x = x.astype(np.float64)
    merged = Moments()
    for chunk in np.array_split(x, 7):  # uneven pieces, merged in another order than read
        merged.merge(Moments.of(chunk, chunk_rows=97))
    assert merged.n == len(x)
    art = fit_from_moments(merged, dims=(12, 4), sampling_method="t", teacher_id="t", fingerprint="f")
    assert art.dims == (12, 4) and art.solver == "covariance" and art.scale[3] == 1.0
    _same_as_sklearn(art, x, 12)


def _selected_embeddings(frames, selection) -> np.ndarray:
    """The selected rows' teacher embeddings, read with plain pyarrow (not sea's readers)."""
    wanted = set(pq.read_table(selection / "selection.parquet").column("window_id").to_pylist())
    rows = []
    for f in sorted((frames / "frames").rglob("*.parquet")):
        t = pq.read_table(f, columns=["recording_id", "window_index", "teacher_emb"])
        for rid, wi, emb in zip(t.column("recording_id").to_pylist(), t.column("window_index").to_pylist(),
                                t.column("teacher_emb").to_pylist()):
            if f"{rid}:{wi}" in wanted:
                rows.append(emb)
    assert len(rows) == len(wanted)
    return np.asarray(rows, np.float32).astype(np.float64)


@pytest.mark.parametrize("runner", ["inprocess", "multiprocess"])
def test_fit_pca_pipeline_equals_sklearn_on_the_selected_rows(tmp_path, runner):
    frames = make_frames(tmp_path / "run", rows_per_part=40)
    run_select(["--frames", str(frames), "--method", "diversity", "--fraction", "0.6",
                "--output", str(tmp_path / "sel")])
    beam_args = [] if runner == "inprocess" else ["--direct_running_mode=multi_processing",
                                                  "--direct_num_workers=2"]
    art = fit_pca(frames=str(frames), selection=str(tmp_path / "sel"), output=str(tmp_path / "pca"),
                  dims=(16, 8), beam_args=beam_args)
    x = _selected_embeddings(frames, tmp_path / "sel")
    assert art.n_fit == len(x)
    _same_as_sklearn(art, x, 16)
    loaded = ReductionArtifact.load(tmp_path / "pca")
    np.testing.assert_array_equal(loaded.components, art.components)
    assert not list((tmp_path / "pca").glob(".moments*"))  # the intermediate file is removed
