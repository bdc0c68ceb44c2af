"""`sea prune --retrain {none,kd}`: pruning, distillation with a fixed mask, store lineage (issue 18)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from pipelines.embed_corpus import parse_args as embed_args
from pipelines.embed_corpus import run as run_embed
from pipelines.job.cli import main as cli_main
from sea_core.errors import DataError, ParameterError
from sea_core.models import store
from sea_core.prune import load_sparse_teacher, prune_teacher
from tests.test_embed_pipeline import BASE, SENSORS, SR, _clip_path, _tone

T_SR = 8000


@pytest.fixture(scope="module")
def conv_teacher(tmp_path_factory):
    """A small real conv teacher: 1-s 8-kHz audio -> 16-d."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((T_SR,))
    x = keras.layers.Reshape((80, 100, 1))(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(16, name="emb")(x)
    path = tmp_path_factory.mktemp("teacher") / "conv.keras"
    keras.Model(inp, out).save(path)
    return path


@pytest.fixture(scope="module")
def frames(tmp_path_factory, conv_teacher):
    root = tmp_path_factory.mktemp("kd")
    for i in range(6):
        sf.write(_clip_path(root / "upstream", SENSORS[i % 2], BASE + 600 * i), _tone(i, seconds=3.0), SR,
                 subtype="PCM_16", format="FLAC")
    out = root / "emb"
    run_embed(*embed_args(["--input", str(root / "upstream"), "--output", str(out), "--teacher", str(conv_teacher),
               "--teacher-opt", "frontend=none", "--teacher-opt", f"sample_rate={T_SR}",
               "--hop-seconds", "0.5", "--batch-size", "8"]))
    return out


def _opts():
    return {"frontend": "none", "sample_rate": T_SR}


def test_kd_keeps_mask_improves_cosine_and_registers(conv_teacher, frames, monkeypatch, tmp_path):
    kw = dict(teacher=str(conv_teacher), teacher_options=_opts(), sparsity=95.45, frames=str(frames),
              max_windows=32, epochs=30, batch_size=8, learning_rate=3e-3, seed=1)
    none = prune_teacher(retrain="none", **kw)
    kd = prune_teacher(retrain="kd", **kw)
    assert none["windows"] == kd["windows"] == 32 and kd["holdout_windows"] == 8
    assert none["cosine_after"] == pytest.approx(none["cosine_before"])   # no training
    assert kd["cosine_before"] == pytest.approx(none["cosine_before"])
    assert kd["cosine_after"] > kd["cosine_before"] + 0.01, kd
    assert kd["losses"][-1] < kd["losses"][0]
    # lineage in the store
    entry = store.get_entry(kd["model_id"])
    assert entry.extra["kind"] == "sparse" and entry.extra["retrain"] == "kd"
    assert entry.extra["base"] == str(conv_teacher) and entry.extra["frames"] == str(frames)
    assert entry.extra["sparsity"] == 95.45 and entry.teacher_id.startswith("sparse(keras:conv")
    # the stored model keeps the mask: >= 95.45 % zeros in every conv kernel
    model = load_sparse_teacher(entry).keras_model()
    for name in ("c1", "c2"):
        k = model.get_layer(name).kernel.numpy()
        assert (k == 0).mean() >= 0.9545 - 1e-3
    # served as model_type='sparse' (the newest sparse entry of that sparsity)
    from sea_core.api import load_embedder
    emb = load_embedder(model_type="sparse", sparsity=95.45)
    assert emb.model_id == kd["teacher_id"] and emb.sample_rate == T_SR
    # the 'sea' student lookup never returns a sparse teacher
    from sea_core.errors import ModelNotFoundError
    with pytest.raises(ModelNotFoundError):
        store.latest(16 if 16 in store.STUDENT_EMB_DIMS else 512)
    # deterministic per seed
    again = prune_teacher(retrain="kd", register=False, **kw)
    assert again["losses"] == pytest.approx(kd["losses"], rel=1e-5)
    assert again["cosine_after"] == pytest.approx(kd["cosine_after"], rel=1e-5)


def test_bad_inputs(conv_teacher, frames, tmp_path, capsys):
    with pytest.raises(ParameterError, match="--retrain kd needs --frames"):
        prune_teacher(teacher=str(conv_teacher), teacher_options=_opts(), sparsity=90.5, retrain="kd")
    with pytest.raises(ParameterError, match="--retrain must be one of"):
        prune_teacher(teacher=str(conv_teacher), teacher_options=_opts(), sparsity=90.5, retrain="ft")
    with pytest.raises(DataError, match="run_summary.json: not found"):
        prune_teacher(teacher=str(conv_teacher), teacher_options=_opts(), sparsity=90.5,
                      frames=str(tmp_path))
    rc = cli_main(["prune", "--teacher", str(conv_teacher), "--teacher-opt", "frontend=none",
                   "--teacher-opt", f"sample_rate={T_SR}", "--sparsity", "100", "--retrain", "none"])
    assert rc == 2 and "sparsity must be in [0, 100)" in capsys.readouterr().err


def test_changed_source_file_is_named(conv_teacher, frames, tmp_path):
    import shutil
    copy = tmp_path / "emb"
    shutil.copytree(frames, copy)
    summary = json.loads((copy / "run_summary.json").read_text())
    import pyarrow.dataset as ds
    uri = ds.dataset(copy / "frames", format="parquet").to_table(columns=["uri"]).column("uri")[0].as_py()
    src = tmp_path / "moved.flac"
    shutil.copy(uri, src)
    # rewrite one source file's audio: its sha256 no longer matches recording_id
    audio, sr = sf.read(uri)
    try:
        sf.write(uri, audio * 0.5, sr, subtype="PCM_16", format="FLAC")
        with pytest.raises(DataError, match="changed since it was embedded"):
            prune_teacher(teacher=str(conv_teacher), teacher_options=_opts(), sparsity=90.5,
                          frames=str(copy), max_windows=1000, register=False)
    finally:
        shutil.copy(src, uri)
    assert summary["settings"]["hop_seconds"] == 0.5
