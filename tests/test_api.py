"""get_embedding / process_file: shapes, timestamps, channels, rates, teachers, errors, edgel3 bugs.

Students here are randomly initialised ``build_student(..., with_frontend=True)``
networks saved to ``.keras`` and registered in the per-test store: test
fixtures, not trained models.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import sea_core
from conftest import ROOT, chirp, save_student
from sea_core.audio.framing import frame_audio
from sea_core.audio.io import resample
from sea_core.errors import (AudioTooShortError, ChannelLayoutError, EmptyAudioError, ModelError,
                             ModelNotFoundError, NonFiniteAudioError, ParameterError, SeaError)
from sea_core.params import AISFX_TEACHER, L3_TEACHER, SPARSE_L3_SPARSITIES, StudentSpec

SR = 8000


def _noise(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    x = 0.2 * rng.standard_normal(n) + chirp(100, min(3000, sr / 2 - 100), seconds, sr)[:n]
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def student_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("students")
    return {64: save_student(d / "s64.keras", 64, seed=1), 128: save_student(d / "s128.keras", 128, seed=2)}


def _register(path: Path, emb_dim: int):
    from sea_core.models import store

    return store.register(path, emb_dim=emb_dim, head="relu", window_seconds=1.0,
                          teacher_id="test-fixture", source="pytest")


@pytest.fixture
def sea64(student_files):
    """Registered 64-d student -> (entry, keras model)."""
    from sea_core.models import store

    entry = _register(student_files[64], 64)
    return entry, store.load_student(entry)


@pytest.fixture(scope="module")
def embedder64(student_files):
    from sea_core.api import load_embedder

    return load_embedder(model=str(student_files[64]))


def _direct(model, windows: np.ndarray) -> np.ndarray:
    return np.asarray(model(windows.astype(np.float32), training=False))


# --------------------------------------------------------------------------- shapes and timestamps
@pytest.mark.parametrize("seconds,center,expected", [
    (1.0, True, 6), (1.0, False, 1), (10.0, True, 96), (10.0, False, 91),
    (10.05, True, 97), (10.05, False, 92)])
def test_shapes_and_timestamps(embedder64, seconds, center, expected):
    x = _noise(seconds, SR)
    emb, ts = sea_core.get_embedding(x, SR, model=embedder64, hop_size=0.1, center=center)
    assert emb.shape == (expected, 64) and emb.dtype == np.float32
    assert ts.shape == (expected,)
    np.testing.assert_allclose(ts, np.arange(expected) * 0.1, atol=1e-12)
    assert np.isfinite(emb).all()


def test_sea_model_type_uses_newest_registered_student_and_equals_direct(sea64):
    entry, model = sea64
    x = _noise(3.0, SR, seed=3)
    emb, ts = sea_core.get_embedding(x, SR, model_type="sea", emb_dim=64, hop_size=0.25)
    frames, ts_ref = frame_audio(x, sr=SR, window_samples=SR, hop_seconds=0.25, center=True)
    np.testing.assert_array_equal(ts, ts_ref)
    ref = _direct(model, frames)
    assert ref.std() > 0  # a constant output would make the comparisons below vacuous
    np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4)


def test_center_false_really_disables_centring(sea64):
    """edgel3 bug 6: its 'disable centring' example passed center=True."""
    entry, model = sea64
    x = _noise(2.0, SR, seed=4)
    on, _ = sea_core.get_embedding(x, SR, model=entry.model_id, hop_size=0.5, center=True)
    off, _ = sea_core.get_embedding(x, SR, model=entry.model_id, hop_size=0.5, center=False)
    assert on.shape == (4, 64) and off.shape == (3, 64)
    first_off = _direct(model, x[None, :SR])
    first_on = _direct(model, np.concatenate([np.zeros(SR // 2, np.float32), x[:SR // 2]])[None])
    np.testing.assert_allclose(off[0], first_off[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(on[0], first_on[0], rtol=1e-4, atol=1e-4)
    assert np.abs(on[0] - off[0]).max() > 1e-3


def test_multichannel_equals_downmix(embedder64):
    left, right = _noise(2.0, SR, seed=5), _noise(2.0, SR, seed=6)
    mono = ((left.astype(np.float64) + right) / 2).astype(np.float32)
    ref, ts_ref = sea_core.get_embedding(mono, SR, model=embedder64, hop_size=0.5)
    for arr in (np.stack([left, right], axis=1), np.stack([left, right], axis=0)):
        emb, ts = sea_core.get_embedding(arr, SR, model=embedder64, hop_size=0.5)
        np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ts, ts_ref)


def test_44k1_input_is_resampled_to_the_student_rate(embedder64):
    x = _noise(2.0, 44_100, seed=7)
    emb, ts = sea_core.get_embedding(x, 44_100, model=embedder64, hop_size=0.5)
    ref, ts_ref = sea_core.get_embedding(resample(x, 44_100, SR), SR, model=embedder64, hop_size=0.5)
    assert emb.shape == (4, 64)
    np.testing.assert_allclose(emb, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ts, ts_ref)
    # a 44.1-kHz signal taken as 8 kHz gives other windows: the rate really is used
    wrong, _ = sea_core.get_embedding(x, SR, model=embedder64, hop_size=0.5)
    assert wrong.shape != emb.shape


def test_list_input_is_batched_and_returns_lists(embedder64):
    xs = [_noise(1.0, SR, seed=8), _noise(2.5, 16_000, seed=9), _noise(1.5, SR, seed=10)]
    srs = [SR, 16_000, SR]
    embs, tss = sea_core.get_embedding(xs, srs, model=embedder64, hop_size=0.5)
    assert isinstance(embs, list) and isinstance(tss, list) and len(embs) == len(tss) == 3
    for x, s, e, t in zip(xs, srs, embs, tss):
        e1, t1 = sea_core.get_embedding(x, s, model=embedder64, hop_size=0.5)
        np.testing.assert_allclose(e, e1, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(t, t1)
    assert [e.shape[0] for e in embs] == [2, 5, 3]
    same_sr, _ = sea_core.get_embedding(xs[::2], SR, model=embedder64, hop_size=0.5)
    np.testing.assert_allclose(same_sr[1], embs[2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ParameterError, match="3 arrays but 2 sample rates"):
        sea_core.get_embedding(xs, [SR, SR], model=embedder64)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("audio,sr,err,msg", [
    (np.zeros(0, np.float32), SR, EmptyAudioError, "zero samples"),
    (np.zeros((0, 2), np.float32), SR, EmptyAudioError, "zero samples"),
    (np.r_[np.zeros(9000), np.nan].astype(np.float32), SR, NonFiniteAudioError, "not finite"),
    (np.r_[np.zeros(9000), np.inf].astype(np.float32), SR, NonFiniteAudioError, "not finite"),
    (np.zeros(4000, np.float32), SR, AudioTooShortError, "shorter than one window"),
    (np.zeros(20000, np.float32), 44_100, AudioTooShortError, "shorter than one window"),
    (np.zeros((2, 2, 8000), np.float32), SR, ChannelLayoutError, "1-D or 2-D"),
    (np.float32(0.5), SR, ChannelLayoutError, "1-D or 2-D"),
    (np.zeros(8000, np.float32), 0, ParameterError, "sample rate"),
    (np.zeros(8000, np.float32), -8000, ParameterError, "sample rate"),
    (np.zeros(8000, np.float32), 8000.5, ParameterError, "sample rate"),
    (np.zeros(8000, np.float32), None, ParameterError, "sample rate"),
    (np.array(["a"] * 8000), SR, ParameterError, "numeric"),
])
def test_bad_input_raises_sea_errors(embedder64, audio, sr, err, msg):
    with pytest.raises(err, match=msg) as info:
        sea_core.get_embedding(audio, sr, model=embedder64)
    assert isinstance(info.value, SeaError)
    assert "<array>" in str(info.value) or isinstance(info.value, ParameterError)


def test_bad_parameters_raise_parameter_errors(embedder64):
    x = _noise(1.0, SR)
    for kwargs, msg in [({"hop_size": 0}, "hop_size"), ({"hop_size": float("nan")}, "hop_size"),
                        ({"batch_size": 0}, "batch_size"), ({"model_type": "vggish"}, "model_type"),
                        ({"model_type": "sea", "emb_dim": 100}, "emb_dim"),
                        ({"model_type": "sparse", "sparsity": 50.0}, "sparsity must be one of"),
                        ({"model": 3.5}, "model must be")]:
        kwargs.setdefault("model", None if "model_type" in kwargs else embedder64)
        with pytest.raises(ParameterError, match=msg):
            sea_core.get_embedding(x, SR, **kwargs)
    # a float sample rate that is a whole number is fine
    emb, _ = sea_core.get_embedding(x, 8000.0, model=embedder64)
    assert emb.shape == (6, 64)
    # an int16 array is numeric audio too (values are taken as they are)
    emb16, _ = sea_core.get_embedding((x * 100).astype(np.int16), SR, model=embedder64)
    assert emb16.shape == (6, 64)


# --------------------------------------------------------------------------- teachers
def test_l3_random_gives_teacher_embeddings_at_48k(embedder64):
    from sea_core.models.teachers import get_teacher

    x = _noise(1.5, SR, seed=11)
    emb, ts = sea_core.get_embedding(x, SR, model_type="l3-random", hop_size=0.5, center=False)
    assert emb.shape == (2, L3_TEACHER.emb_dim) and L3_TEACHER.emb_dim == 512
    np.testing.assert_allclose(ts, [0.0, 0.5])
    frames, _ = frame_audio(resample(x, SR, 48_000), sr=48_000, window_samples=48_000,
                            hop_seconds=0.5, center=False)
    ref = get_teacher("l3-random").embed(frames)
    np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4)


def test_aisfx_gives_teacher_embeddings_with_its_window():
    from sea_core.models import aisfx
    from sea_core.models.teachers import get_teacher

    try:
        aisfx.fetch_weights()
    except ModelNotFoundError as exc:
        pytest.skip(f"aisfx wheel not downloadable here: {exc}")
    assert AISFX_TEACHER.sample_rate == 44_100 and abs(AISFX_TEACHER.window_seconds - 2.3) < 0.01
    x = _noise(3.5, 22_050, seed=12)
    emb, ts = sea_core.get_embedding(x, 22_050, model_type="aisfx", hop_size=1.0, center=False)
    w = AISFX_TEACHER.window_samples
    n = int(round(3.5 * 44_100))
    expected = 1 + int(np.ceil((n - w) / 44_100))
    assert emb.shape == (expected, 512) and expected == 3
    np.testing.assert_allclose(ts, np.arange(expected) * 1.0)
    frames, _ = frame_audio(resample(x, 22_050, 44_100), sr=44_100, window_samples=w,
                            hop_seconds=1.0, center=False)
    np.testing.assert_allclose(emb, get_teacher("aisfx").embed(frames), rtol=1e-4, atol=1e-4)
    with pytest.raises(AudioTooShortError, match="shorter than one window"):
        sea_core.get_embedding(_noise(2.0, 44_100), 44_100, model_type="aisfx")


# --------------------------------------------------------------------------- edgel3 bugs (ref §h)
def test_bug1_documented_calls_need_only_audio_and_sr(student_files, tmp_path):
    x = _noise(1.2, SR, seed=13)
    with pytest.raises(ModelNotFoundError, match="make demo"):  # not a TypeError
        sea_core.get_embedding(x, SR)
    _register(student_files[128], 128)
    emb, ts = sea_core.get_embedding(x, SR)
    assert emb.shape == (len(ts), 128) and len(ts) == 8
    wav = tmp_path / "clip.wav"
    sf.write(wav, x, SR, subtype="FLOAT")
    out = sea_core.process_file(str(wav))
    assert out == tmp_path / "clip.npz"
    with np.load(out) as z:
        np.testing.assert_allclose(z["embedding"], emb, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(z["timestamps"], ts)


def test_bug2_passed_model_runs_at_its_own_rate(sea64):
    """edgel3 bug 2: a passed 'sea' model got the default model_type's 48-kHz windows."""
    entry, model = sea64
    x = _noise(2.0, 48_000, seed=14)
    for model_type in ("sparse", "l3-random", "aisfx", "sea"):
        emb, ts = sea_core.get_embedding(x, 48_000, model=model, model_type=model_type,
                                         hop_size=0.5, center=False)
        assert emb.shape == (3, 64), model_type
    frames, _ = frame_audio(resample(x, 48_000, SR), sr=SR, window_samples=SR, hop_seconds=0.5,
                            center=False)
    np.testing.assert_allclose(emb, _direct(model, frames), rtol=1e-4, atol=1e-4)


def test_bug3_no_collections_abc_aliases_and_modules_import():
    """edgel3 bug 3: `from collections import Iterable` fails on Python >= 3.10."""
    abc_names = {"Iterable", "Mapping", "MutableMapping", "Sequence", "Callable", "Hashable",
                 "Iterator", "Set", "MutableSet", "MutableSequence", "Sized", "Container"}
    offenders = []
    files = [*(ROOT / "sea_core").rglob("*.py"), *(ROOT / "pipelines").rglob("*.py")]
    assert len(files) > 10
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "collections":
                offenders += [f"{path}: {a.name}" for a in node.names if a.name in abc_names]
            if (isinstance(node, ast.Attribute) and node.attr in abc_names
                    and isinstance(node.value, ast.Name) and node.value.id == "collections"):
                offenders.append(f"{path}: collections.{node.attr}")
    assert not offenders, offenders
    for mod in ("sea_core.api", "sea_core.models.store", "sea_core.models.teachers",
                "sea_core.models.students", "sea_core.models.sparse", "pipelines.job.cli"):
        importlib.import_module(mod)
    assert callable(sea_core.get_embedding) and callable(sea_core.process_files)


@pytest.mark.parametrize("sparsity", SPARSE_L3_SPARSITIES)
def test_bug4_every_sparsity_is_accepted(sparsity):
    """edgel3 bug 4 rejected 73.5, 81.0 and 90.5. Without trained L3 weights 'sparse' must say
    how to supply them (a ModelNotFoundError, never a ParameterError about the sparsity)."""
    from sea_core.models.sparse import sparse_teacher
    from sea_core.models.teachers import get_teacher

    with pytest.raises(ModelNotFoundError) as info:
        sea_core.get_embedding(_noise(1.0, SR), SR, model_type="sparse", sparsity=sparsity)
    msg = str(info.value)
    assert "teacher_weights" in msg and "openl3" in msg and "--teacher-weights" in msg
    assert sparse_teacher(get_teacher("l3-random"), sparsity).sparsity == sparsity


def test_sparse_teacher_over_l3_random_works_through_model():
    from sea_core.models.sparse import sparse_teacher
    from sea_core.models.teachers import get_teacher

    x = _noise(1.0, 48_000, seed=15)
    teacher = sparse_teacher(get_teacher("l3-random"), 95.45)
    emb, ts = sea_core.get_embedding(x, 48_000, model=teacher, center=False)
    assert emb.shape == (1, 512) and np.isfinite(emb).all()
    dense, _ = sea_core.get_embedding(x, 48_000, model_type="l3-random", center=False)
    assert np.abs(emb - dense).max() > 1e-3  # the pruned network really is used
    assert 95.0 < teacher.report.achieved < 96.0


def test_model_argument_errors(tmp_path):
    x = _noise(1.0, SR)
    with pytest.raises(ModelNotFoundError, match="no such model file"):
        sea_core.get_embedding(x, SR, model=str(tmp_path / "missing.keras"))
    with pytest.raises(ModelNotFoundError, match="sea models list"):
        sea_core.get_embedding(x, SR, model="sea64-relu-nosuchid")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot load"):
        sea_core.get_embedding(x, SR, model=str(bad))
    from sea_core.models.students import build_student

    trunk = build_student(StudentSpec(emb_dim=64), with_frontend=False)
    with pytest.raises(ParameterError, match="with_frontend=True"):
        sea_core.get_embedding(x, SR, model=trunk)
