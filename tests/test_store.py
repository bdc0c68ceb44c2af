"""The local model store: register / list / show / import, newest-per-dim, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sea_core
from conftest import SEA64_H5, chirp, need_shared
from sea_core.audio.framing import frame_audio
from pipelines.job.cli import main as sea_main
from sea_core.errors import ModelError, ModelNotFoundError, ParameterError
from sea_core.models import store
from sea_core.params import StudentSpec

SR = 8000


def _save(emb_dim: int, path: Path, seed: int, head: str = "relu") -> Path:
    import keras

    from sea_core.models.students import build_student

    keras.utils.set_random_seed(seed)
    build_student(StudentSpec(emb_dim=emb_dim, head=head), with_frontend=True).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("store_students")
    return {"a": _save(64, d / "a.keras", 1), "b": _save(64, d / "b.keras", 2),
            "lin": _save(64, d / "lin.keras", 3, head="linear")}


def _reg(path, emb_dim=64, head="relu", **kw):
    return store.register(path, emb_dim=emb_dim, head=head, window_seconds=1.0,
                          teacher_id=kw.pop("teacher_id", "l3-random(seed=0)"), source="pytest", **kw)


def _audio(seconds=1.5):
    return chirp(200, 3000, seconds, SR)


def test_register_list_show_and_newest_wins(files, capsys):
    assert store.list_entries() == []
    a = _reg(files["a"], pca_artifact="pca.npz", dataset_fingerprint="fp-a")
    b = _reg(files["b"], dataset_fingerprint="fp-b")
    assert [e.model_id for e in store.list_entries()] == [a.model_id, b.model_id]
    assert b.sequence > a.sequence and a.path.is_file()
    assert a.teacher_id == "l3-random(seed=0)" and a.pca_artifact == "pca.npz"
    assert store.latest(64) == b
    assert _reg(files["a"]) == a  # same file again: the existing entry, not a new one
    x = _audio()
    newest, _ = sea_core.get_embedding(x, SR, model_type="sea", emb_dim=64)
    by_id_b, _ = sea_core.get_embedding(x, SR, model=b.model_id)
    by_id_a, _ = sea_core.get_embedding(x, SR, model=a.model_id)
    by_path_a, _ = sea_core.get_embedding(x, SR, model=str(files["a"]))
    np.testing.assert_array_equal(newest, by_id_b)
    np.testing.assert_array_equal(by_id_a, by_path_a)
    assert np.abs(by_id_a - by_id_b).max() > 1e-3  # two different students really
    # the CLI
    assert sea_main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert a.model_id in out and b.model_id in out and "emb_dim=64" in out
    assert sea_main(["models", "show", a.model_id[:-3]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model_id"] == a.model_id and shown["dataset_fingerprint"] == "fp-a"
    assert shown["teacher_id"] == "l3-random(seed=0)"


def test_prefix_lookup_is_unique_or_an_error(files):
    a, b = _reg(files["a"]), _reg(files["b"])
    assert store.get_entry(a.model_id[:-2]) == a
    with pytest.raises(ParameterError, match="ambiguous"):
        store.get_entry("sea64-relu-")
    with pytest.raises(ModelNotFoundError, match="sea models list"):
        store.get_entry("sea64-relu-zzzz")
    assert b.model_id != a.model_id


def test_no_student_for_the_dim_says_how_to_get_one(files, capsys):
    x = _audio()
    for dim in (64, 128, 256, 512):
        with pytest.raises(ModelNotFoundError) as info:
            sea_core.get_embedding(x, SR, model_type="sea", emb_dim=dim)
        msg = str(info.value)
        for hint in ("make demo", "sea run", "sea models import", f"emb_dim={dim}",
                     "never falls back to random weights"):
            assert hint in msg, (hint, msg)
    _reg(files["a"])
    with pytest.raises(ModelNotFoundError, match="emb_dim=128"):  # a 64 does not serve 128
        sea_core.get_embedding(x, SR, model_type="sea", emb_dim=128)
    assert sea_core.get_embedding(x, SR, model_type="sea", emb_dim=64)[0].shape == (11, 64)
    # CLI: exit 2 with the message
    assert sea_main(["embed", "nofile.wav", "--emb-dim", "256", "--quiet"]) == 2
    assert "make demo" in capsys.readouterr().err


def test_register_validates(files, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        _reg(tmp_path / "missing.keras")
    with pytest.raises(ParameterError, match="emb_dim"):
        _reg(files["a"], emb_dim=100)
    with pytest.raises(ParameterError, match="head"):
        _reg(files["a"], head="tanh")


def test_corrupt_entry_is_a_clear_error(files):
    entry = _reg(files["a"])
    meta = entry.path.parent / store.META_FILE
    meta.write_text("{not json")
    with pytest.raises(ModelError, match="unreadable store entry"):
        store.list_entries()


def test_missing_model_file_of_entry(files):
    entry = _reg(files["a"])
    entry.path.unlink()
    with pytest.raises(ModelNotFoundError, match="register the model again"):
        sea_core.get_embedding(_audio(), SR, model_type="sea", emb_dim=64)


def test_import_keras_detects_head_and_checks_dim(files, capsys):
    assert sea_main(["models", "import", str(files["lin"]), "--emb-dim", "64"]) == 0
    assert "registered sea64-linear-" in capsys.readouterr().out
    entry = store.latest(64)
    assert entry.head == "linear" and entry.window_seconds == 1.0 and entry.source == "import:lin.keras"
    assert sea_main(["models", "import", str(files["a"]), "--emb-dim", "128"]) == 2
    assert "64-d embeddings" in capsys.readouterr().err


def test_import_authors_sea64_h5_and_use_it():
    h5 = need_shared(SEA64_H5)
    from sea_core.models.students import build_student, load_sea64_h5
    from sea_core.params import student_spec

    assert sea_main(["models", "import", str(h5), "--emb-dim", "64"]) == 0
    entry = store.latest(64)
    assert entry.head == "relu" and entry.source == f"import:{h5.name}"
    assert "Sangeeta Kumari" in entry.extra["license"]
    x = chirp(100, 3500, 2.0, SR) + 0.05 * np.random.default_rng(0).standard_normal(2 * SR)
    emb, ts = sea_core.get_embedding(x.astype(np.float32), SR, model_type="sea", emb_dim=64,
                                     hop_size=0.5)
    direct = build_student(student_spec(64), with_frontend=True)
    load_sea64_h5(direct, h5)
    frames, ts_ref = frame_audio(x.astype(np.float32), sr=SR, window_samples=SR, hop_seconds=0.5)
    ref = np.asarray(direct(frames, training=False))
    assert emb.shape == (4, 64) and ref.max() > 0
    np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ts, ts_ref)
    assert (emb >= 0).all()  # the authors' ReLU head
    with pytest.raises(ParameterError, match="only the authors' SEA-64"):
        store.import_file(h5, emb_dim=128)
