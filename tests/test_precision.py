"""Teacher / trainer precision: CPU detection, per-layer bf16 without policy leaks, bf16 fidelity.

The fidelity tests use the real aisfx weights (the aisfx==0.1.2 wheel, converted
and cached once per machine) and real recordings from ../shared when present
(``sonyc_ust_mini`` clips and the ``urban`` clip), synthetic SONYC-like audio
otherwise.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import SONYC_MINI, URBAN_OGG
from sea_core.errors import ParameterError
from sea_core.precision import (apply_precision, cpu_bf16_flags, global_policy_scope,
                                model_precision, resolve_precision)

COSINE_MIN = 0.9999
"""Every window's bf16 embedding vs its fp32 embedding (issue 17)."""
AUPRC_MAX_DIFF = 0.005
"""Downstream micro-AUPRC, bf16 vs fp32 teacher embeddings (issue 17)."""


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- resolution
def test_resolve_precision_auto_follows_cpu_flags(tmp_path):
    assert resolve_precision("auto", flags=("avx512_bf16",)) == "bf16"
    assert resolve_precision("auto", flags=("amx_bf16", "avx512_bf16")) == "bf16"
    assert resolve_precision("auto", flags=()) == "fp32"
    assert resolve_precision(None, flags=()) == "fp32"
    assert resolve_precision("fp32", flags=("amx_bf16",)) == "fp32"
    assert resolve_precision("BF16", flags=()) == "bf16"  # explicit: honoured on any CPU
    with pytest.raises(ParameterError, match="precision must be one of auto, fp32, bf16"):
        resolve_precision("fp16")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_tile amx_bf16 amx_int8\n")
    assert cpu_bf16_flags(str(info)) == ("amx_bf16",)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    cpu_bf16_flags.cache_clear()
    assert cpu_bf16_flags(str(info)) == ()
    assert cpu_bf16_flags(str(tmp_path / "missing")) == ()
    cpu_bf16_flags.cache_clear()


def test_get_teacher_precision_option_and_cache_key():
    from sea_core.models.teachers import get_teacher

    t32 = get_teacher("l3-random", seed=3)
    t16 = get_teacher("l3-random", seed=3, precision="bf16")
    auto = get_teacher("l3-random", seed=3, precision="auto")
    assert (t32.precision, t16.precision) == ("fp32", "bf16")
    assert auto.precision == resolve_precision("auto")
    assert t32.teacher_id == t16.teacher_id == "l3-random(seed=3)"  # same network and weights
    assert t32._cache_key() != t16._cache_key()
    with pytest.raises(ParameterError, match="precision must be one of"):
        get_teacher("l3-random", precision="half")


# --------------------------------------------------------------------------- no policy leak
def test_bf16_teacher_leaves_global_policy_and_later_models_float32():
    import keras

    from sea_core.models.students import build_student
    from sea_core.models.teachers import get_teacher
    from sea_core.params import TEACHERS, student_spec

    assert keras.mixed_precision.global_policy().name == "float32"
    teacher = get_teacher("l3-random", seed=5, precision="bf16")
    model = teacher.keras_model()
    assert model_precision(model) == "bf16"
    assert keras.mixed_precision.global_policy().name == "float32"
    # front-end and the first convolution stay float32, the rest computes in bfloat16
    from sea_core.models.layers import KapreLogMel, walk_layers
    leaves = list(walk_layers(model))
    front = [layer for layer in leaves if isinstance(layer, KapreLogMel)]
    first_conv = next(layer for layer in leaves if type(layer).__name__ == "Conv2D")
    assert front and all(layer.dtype_policy.name == "float32" for layer in front)
    assert first_conv.dtype_policy.name == "float32"
    assert sum(layer.dtype_policy.name == "mixed_bfloat16" for layer in leaves) > 10
    out = teacher.embed(np.zeros((3, teacher.spec.window_samples), np.float32))
    assert out.dtype == np.float32 and out.shape == (3, 512)

    # a student (or any model) built afterwards, here and in another thread, is plain float32
    student = build_student(student_spec(64, TEACHERS["aisfx"]), with_frontend=True)
    assert model_precision(student) == "fp32"
    assert {layer.dtype_policy.name for layer in walk_layers(student)} == {"float32"}
    seen = {}

    def other_thread():
        seen["policy"] = keras.mixed_precision.global_policy().name
        seen["model"] = model_precision(get_teacher("l3-random", seed=5).keras_model())

    th = threading.Thread(target=other_thread)
    th.start()
    th.join()
    assert seen == {"policy": "float32", "model": "fp32"}


def test_global_policy_scope_restores_on_error_and_apply_fp32_resets():
    import keras

    from sea_core.models.students import build_student
    from sea_core.params import TEACHERS, student_spec

    with pytest.raises(RuntimeError):
        with global_policy_scope("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError("boom")
    assert keras.mixed_precision.global_policy().name == "float32"
    student = build_student(student_spec(64, TEACHERS["aisfx"]), with_frontend=True)
    out_name = student.layers[-1].name
    n = apply_precision(student, "bf16", keep_float32=(out_name,))
    assert n > 0 and student.layers[-1].dtype_policy.name == "float32"
    assert apply_precision(student, "fp32") == 0
    assert model_precision(student) == "fp32"
    with pytest.raises(ParameterError):
        apply_precision(student, "auto")


# --------------------------------------------------------------------------- fidelity (real aisfx)
@pytest.fixture(scope="module")
def aisfx_teachers():
    from sea_core.models import aisfx
    from sea_core.models.teachers import get_teacher

    try:
        aisfx.fetch_weights()
    except Exception as exc:  # noqa: BLE001 - no network / pip here
        pytest.skip(f"aisfx wheel not downloadable here: {exc}")
    return get_teacher("aisfx"), get_teacher("aisfx", precision="bf16")


def _real_or_synthetic_windows(teacher, tmp_path: Path) -> tuple[np.ndarray, str]:
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import read_audio

    sr, ws = teacher.spec.sample_rate, teacher.spec.window_samples
    files = sorted((SONYC_MINI / "audio").glob("*.wav")) if SONYC_MINI.is_dir() else []
    files += [URBAN_OGG] if URBAN_OGG.exists() else []
    source = "../shared recordings"
    if not files:  # synthetic SONYC-like clips (engine, voice, alert, ...) instead
        from sea_core.params import SYNTH
        from sea_core.synth import synthesize
        from dataclasses import replace
        synthesize(tmp_path / "corpus", replace(SYNTH, sensors=1, days=1, clips_per_day=2,
                                                labelled_clips=6, labelled_sensors=2))
        files = sorted((tmp_path / "corpus" / "downstream" / "audio").glob("*.wav"))
        source = "synthetic clips"
    windows = [frame_audio(read_audio(str(p), target_sr=sr)[0], sr=sr, window_samples=ws,
                           hop_seconds=teacher.spec.corpus_hop_seconds)[0] for p in files]
    return np.concatenate(windows), f"{len(files)} {source}"


@pytest.mark.slow
def test_bf16_aisfx_cosine_to_fp32_every_window(aisfx_teachers, tmp_path):
    t32, t16 = aisfx_teachers
    windows, source = _real_or_synthetic_windows(t32, tmp_path)
    assert len(windows) >= 20, source
    e32, e16 = t32.embed(windows), t16.embed(windows)
    assert e16.dtype == np.float32
    cos = _cosine(e32, e16)
    print(f"bf16 vs fp32 cosine over {len(cos)} windows of {source}: min {cos.min():.7f}, "
          f"median {np.median(cos):.7f}")
    assert cos.min() >= COSINE_MIN, (f"{source}: {np.sum(cos < COSINE_MIN)} of {len(cos)} windows "
                                     f"below {COSINE_MIN}, min {cos.min():.6f}")
    assert not np.array_equal(e32, e16)  # the bf16 path really ran


@pytest.mark.slow
def test_bf16_downstream_auprc_within_bound(aisfx_teachers, tmp_path):
    """The demo's downstream figure on a test-sized SONYC-UST-format set: the same classifiers
    (MIL, DOWNSTREAM_QUICK schedule, and the logistic-regression baseline; seed 0) on fp32 vs
    bf16 aisfx embeddings; micro-AUPRC (test split) differs by <= 0.005."""
    from dataclasses import replace

    from sea_core.api import load_embedder
    from sea_core.evaluate import SPLITS, embed_clips, metrics, read_annotations, train_logreg, \
        train_mil
    from sea_core.params import DOWNSTREAM_QUICK, SYNTH
    from sea_core.synth import synthesize

    t32, t16 = aisfx_teachers
    corpus = tmp_path / "corpus"
    synthesize(corpus, replace(SYNTH, sensors=1, days=1, clips_per_day=1, labelled_clips=40,
                               labelled_sensors=10, seed=0))
    data = read_annotations(corpus / "downstream" / "annotations.csv")
    audio = corpus / "downstream" / "audio"
    params = DOWNSTREAM_QUICK
    scores = {}
    for name, teacher in (("fp32", t32), ("bf16", t16)):
        emb = load_embedder(model=teacher)
        x = {s: embed_clips(emb, audio, data.files[s], hop_seconds=params.eval_hop_seconds,
                            center=params.eval_center) for s in SPLITS}
        mil, _ = train_mil(x, data.labels, params=params, seed=0)
        lr, _ = train_logreg(x, data.labels, seed=0)
        split = "test" if len(data.files["test"]) else "validate"
        scores[name] = {k: metrics(data.labels[split], s[split], data.classes)["micro_auprc"]
                        for k, s in (("mil", mil), ("logreg", lr))}
    print("micro-AUPRC fp32 vs bf16:", scores)
    for clf in ("mil", "logreg"):
        a, b = scores["fp32"][clf], scores["bf16"][clf]
        assert a is not None and b is not None
        assert abs(a - b) <= AUPRC_MAX_DIFF, (clf, scores)
