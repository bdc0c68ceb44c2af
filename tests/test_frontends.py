"""Front-ends: numpy reference vs Keras layers, vs the authors' SEA-64 file, vs aisfx golden."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import AISFX_GOLDEN, SEA64_H5, chirp, need_shared, sine
from sea_core.errors import ParameterError
from sea_core.frontends import (aisfx_logmel, aisfx_mel_filterbank, kapre_dft_kernels,
                                kapre_logmel, kapre_mel_filterbank)
from sea_core.params import AISFX_FRONTEND, L3_MEL256, STUDENT_MEL64

keras = pytest.importorskip("keras")
from sea_core.models.layers import AisfxLogMel, KapreLogMel, student_frontend  # noqa: E402

DB_TOL = 1e-3
"""numpy vs Keras parity (dB) wherever float32 resolves it (see FLOAT32_FLOOR)."""
DB_STRICT_ABOVE = -30.0
"""Cells at or above this level (dB re the example max) must meet DB_TOL outright."""
FLOAT32_FLOOR = 5e-6
"""Amplitude (re the example max) below which a float32 STFT is rounding noise: the
conv's error is ~5e-7 of the peak (measured), so near the -80 dB floor (1e-8) dB values
of a pure tone differ by several dB between any two float32 implementations (kapre too)."""
AISFX_TOL = 2e-4
"""Golden net_input came from essentia (float32); AISFX.md's numpy port matched to 1.5e-4."""


def _signals(sr: int, rng) -> dict[str, np.ndarray]:
    return {
        "sine": sine(1000.0, 1.0, sr),
        "noise": (0.3 * rng.uniform(-1.0, 1.0, sr)).astype(np.float32),
        "chirp": chirp(50.0, 0.45 * sr, 1.0, sr),
    }


def assert_db_close(ref: np.ndarray, out: np.ndarray, *, label: str) -> float:
    """|dB diff| <= DB_TOL unless both are below float32 resolution; strict above DB_STRICT_ABOVE."""
    diff = np.abs(ref - out)
    strict = ref >= DB_STRICT_ABOVE
    assert strict.any(), label
    assert diff[strict].max() <= DB_TOL, (label, float(diff[strict].max()))
    lin_ref, lin_out = 10.0 ** (ref / 10.0), 10.0 ** (out / 10.0)
    allowed = np.maximum(lin_ref * (10.0 ** (DB_TOL / 10.0) - 1.0), FLOAT32_FLOOR)
    excess = np.abs(lin_out - lin_ref) - allowed
    assert excess.max() <= 0, (label, float(diff.max()), float(np.abs(lin_out - lin_ref).max()))
    return float(diff.max())


# --------------------------------------------------------------------------- kapre numpy vs Keras
@pytest.mark.parametrize("params", [STUDENT_MEL64, L3_MEL256], ids=["student", "teacher"])
def test_kapre_numpy_keras_parity(params, rng):
    sigs = _signals(params.sample_rate, rng)
    x = np.stack(list(sigs.values()))
    ref = kapre_logmel(x, params)
    out = np.asarray(KapreLogMel(params)(x))
    assert out.shape == ref.shape + (1,) and out.dtype == np.float32
    for i, name in enumerate(sigs):
        assert_db_close(ref[i], out[i, ..., 0], label=f"{params.n_mels}/{name}")
    # the noise is well above float32 resolution everywhere: strict parity on every cell
    assert np.abs(ref[1] - out[1, ..., 0]).max() <= DB_TOL


def test_student_frontend_is_the_layer(rng):
    x = np.stack([chirp(100.0, 3900.0, 1.0, 8000), sine(440.0, 1.0, 8000, 0.01)])
    layer = np.asarray(KapreLogMel(STUDENT_MEL64)(x))
    fn = np.asarray(student_frontend(x))
    assert fn.shape == (2, 64, 50, 1)
    np.testing.assert_array_equal(fn, layer)
    ref = kapre_logmel(x, STUDENT_MEL64)
    for i in range(2):
        assert_db_close(ref[i], fn[i, ..., 0], label=f"student_frontend/{i}")


def test_student_frontend_in_tf_data(rng):
    import tensorflow as tf
    x = (0.2 * rng.standard_normal((4, 8000))).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2).map(student_frontend)
    got = np.concatenate([b.numpy() for b in ds])
    assert got.shape == (4, 64, 50, 1)
    assert np.abs(got[..., 0] - kapre_logmel(x, STUDENT_MEL64)).max() <= DB_TOL


def test_student_frontend_rejects_integer_pcm():
    with pytest.raises(ParameterError, match="floating point"):
        student_frontend(np.zeros((1, 8000), np.int16))


@pytest.mark.parametrize("params,n_samples,frames", [
    (L3_MEL256, 48_000, 199), (STUDENT_MEL64, 8_000, 50), (STUDENT_MEL64, 18_390, 115)])
def test_frame_counts(params, n_samples, frames, rng):
    assert params.n_frames(n_samples) == frames
    x = (0.1 * rng.standard_normal((1, n_samples))).astype(np.float32)
    assert kapre_logmel(x, params).shape == (1, params.n_mels, frames)
    layer = KapreLogMel(params)
    assert np.asarray(layer(x)).shape == (1, params.n_mels, frames, 1)
    assert layer.compute_output_shape((None, n_samples)) == (None, params.n_mels, frames, 1)


def test_student_same_padding_is_432_each_side():
    assert STUDENT_MEL64.same_padding(8000) == (432, 432)
    # a click at sample 0 sits at offset 432 of frame 0, 272 of frame 1, 112 of frame 2;
    # frame 3 starts after it. The last sample sits in frames 47..49 only.
    x = np.zeros((2, 8000), np.float32)
    x[0, 0] = 1.0
    x[1, -1] = 1.0
    for out in (kapre_logmel(x, STUDENT_MEL64), np.asarray(student_frontend(x))[..., 0]):
        assert np.all(out[0, :, :3].max(axis=0) > -80.0)
        assert np.all(out[0, :, 3:] == -80.0)
        assert np.all(out[1, :, 47:].max(axis=0) > -80.0)
        assert np.all(out[1, :, :47] == -80.0)


def test_per_example_max_reference(rng):
    loud = (0.8 * rng.uniform(-1, 1, 8000)).astype(np.float32)
    quiet = (1e-3 * rng.uniform(-1, 1, 8000)).astype(np.float32)
    both = np.stack([loud, quiet])
    layer = KapreLogMel(STUDENT_MEL64)
    np_batch = kapre_logmel(both, STUDENT_MEL64)
    tf_batch = np.asarray(layer(both))[..., 0]
    for i, clip in enumerate((loud, quiet)):
        np.testing.assert_allclose(np_batch[i], kapre_logmel(clip[None], STUDENT_MEL64)[0], atol=1e-5)
        np.testing.assert_allclose(tf_batch[i], np.asarray(layer(clip[None]))[0, ..., 0], atol=DB_TOL)
        assert np_batch[i].max() == 0.0 and tf_batch[i].max() == 0.0
    # with a batch maximum (kapre 0.1.3.1) the quiet clip would sit ~58 dB lower
    assert abs(np.median(tf_batch[1]) - np.median(tf_batch[0])) < 20.0


@pytest.mark.parametrize("params", [STUDENT_MEL64, L3_MEL256], ids=["student", "teacher"])
def test_floor_at_dynamic_range(params):
    x = sine(1000.0, 1.0, params.sample_rate)[None]   # a pure tone spans > 80 dB
    ref = kapre_logmel(x, params)
    out = np.asarray(KapreLogMel(params)(x))
    for arr in (ref, out):
        assert arr.min() == -params.dynamic_range_db and arr.max() == 0.0
    assert np.mean(ref == -params.dynamic_range_db) > 0.2


def test_silence_is_flat_zero():
    out = kapre_logmel(np.zeros((1, 8000), np.float32), STUDENT_MEL64)
    np.testing.assert_array_equal(out, 0.0)   # all at amin, minus their own max


def test_kapre_logmel_rejects_bad_input():
    with pytest.raises(ParameterError):
        kapre_logmel(np.zeros(8000, np.float32), STUDENT_MEL64)
    with pytest.raises(ParameterError):
        kapre_logmel(np.zeros((1, 8000), np.int16), STUDENT_MEL64)


# --------------------------------------------------------------------------- vs the authors' file
@pytest.mark.shared
def test_dft_and_mel_match_sea64_h5():
    path = need_shared(SEA64_H5)
    with h5py.File(path, "r") as f:
        g = f["model_weights"]["melspectrogram_1"]["melspectrogram_1"]
        real_h5 = g["real_kernels:0"][:, 0, 0, :]
        imag_h5 = g["imag_kernels:0"][:, 0, 0, :]
        mel_h5 = g["Variable:0"][...]
    real, imag = kapre_dft_kernels(STUDENT_MEL64.n_dft)
    fb = kapre_mel_filterbank(STUDENT_MEL64)
    assert real.shape == real_h5.shape == (1024, 513) and fb.shape == mel_h5.shape == (513, 64)
    assert np.abs(real - real_h5).max() <= 1e-7
    assert np.abs(imag - imag_h5).max() <= 1e-7     # same sign as rfft: -w sin
    assert np.abs(fb - mel_h5).max() <= 1e-7


def test_dft_kernels_are_windowed_rfft(rng):
    real, imag = kapre_dft_kernels(64)
    frame = rng.standard_normal(64)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(64) / 64)        # periodic Hann
    spec = np.fft.rfft(w * frame)
    np.testing.assert_allclose(frame @ real, spec.real, atol=1e-5)
    np.testing.assert_allclose(frame @ imag, spec.imag, atol=1e-5)


def test_kapre_mel_slaney_norm():
    fb = kapre_mel_filterbank(STUDENT_MEL64).astype(np.float64)
    # area norm: the triangle of band i, integrated over Hz, is 1 (sum * bin width ~ 1)
    bin_hz = STUDENT_MEL64.sample_rate / STUDENT_MEL64.n_dft
    areas = fb.sum(axis=0) * bin_hz
    np.testing.assert_allclose(areas[8:], 1.0, rtol=0.02)


# --------------------------------------------------------------------------- aisfx
def test_aisfx_mel_rows_sum_to_one():
    fb = aisfx_mel_filterbank(AISFX_FRONTEND)
    assert fb.shape == (1025, 96)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, rtol=1e-6)


def test_aisfx_frame_count(rng):
    x = (0.1 * rng.standard_normal((1, 5000))).astype(np.float32)
    assert aisfx_logmel(x, AISFX_FRONTEND).shape == (1, 6, 96)   # ceil(5000/1024) + 1


@pytest.mark.shared
def test_aisfx_golden_net_input():
    with np.load(need_shared(AISFX_GOLDEN)) as z:
        audio, net_input = z["audio"], z["net_input"]
    ref = aisfx_logmel(audio, AISFX_FRONTEND)
    assert ref.shape == net_input.shape == (3, 100, 96)
    assert np.abs(ref - net_input).max() <= AISFX_TOL
    out = np.asarray(AisfxLogMel(AISFX_FRONTEND)(audio))
    assert out.shape == (3, 100, 96, 1)
    assert np.abs(out[..., 0] - net_input).max() <= AISFX_TOL
    assert np.abs(out[..., 0] - ref).max() <= 1e-4


def test_aisfx_layer_takes_first_block(rng):
    p = AISFX_FRONTEND
    x = (0.1 * rng.standard_normal((1, p.window_samples + 3000))).astype(np.float32)
    out = np.asarray(AisfxLogMel(p)(x))[0, ..., 0]
    ref = aisfx_logmel(x, p)[0, : p.block_frames]
    assert out.shape == (p.block_frames, p.n_mels)
    assert np.abs(out - ref).max() <= 1e-4


# --------------------------------------------------------------------------- serialisation
def test_keras_save_load_round_trip(tmp_path, rng):
    inp = keras.Input((8000,))
    feat = KapreLogMel(STUDENT_MEL64, name="logmel")(inp)
    out = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, padding="same")(feat))
    model = keras.Model(inp, out)
    assert model.get_layer("logmel").trainable_weights == []
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.get_layer("logmel")
    assert isinstance(layer, KapreLogMel) and layer.params == STUDENT_MEL64
    x = (0.1 * rng.standard_normal((2, 8000))).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_aisfx_layer_config_round_trip():
    layer = AisfxLogMel(AISFX_FRONTEND, name="a")
    clone = AisfxLogMel.from_config(layer.get_config())
    assert clone.params == AISFX_FRONTEND and clone.name == "a"
    with pytest.raises(ParameterError, match="bogus"):
        KapreLogMel({"sample_rate": 8000, "n_dft": 256, "hop_length": 80, "n_mels": 8, "bogus": 1})


# --------------------------------------------------------------------------- TFLite
def test_student_frontend_converts_to_full_int8_tflite(rng):
    """Gather/matmul/elementwise only: the converter keeps every op int8 (no RFFT, no float island)."""
    import tensorflow as tf
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    inp = keras.Input((8000,), batch_size=1)
    model = keras.Model(inp, KapreLogMel(STUDENT_MEL64)(inp))
    rep_x = (0.2 * rng.standard_normal((8, 1, 8000))).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x] for x in rep_x)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    interp = litert.Interpreter(model_content=conv.convert(),
                                experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert {"FULLY_CONNECTED", "LOG"} <= ops and not ops & {"RFFT2D", "QUANTIZE", "DEQUANTIZE"}, ops
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    for op in interp._get_ops_details():
        for i in op["outputs"]:
            assert tensors[i]["dtype"] == np.int8, (op["op_name"], tensors[i]["dtype"])
    x = (0.2 * rng.standard_normal((1, 8000))).astype(np.float32)
    ind, outd = interp.get_input_details()[0], interp.get_output_details()[0]
    s_in, z_in = ind["quantization"]
    interp.set_tensor(ind["index"], np.clip(np.round(x / s_in + z_in), -128, 127).astype(np.int8))
    interp.invoke()
    s_out, z_out = outd["quantization"]
    y = (interp.get_tensor(outd["index"]).astype(np.float32) - z_out) * s_out
    assert np.abs(y[0, ..., 0] - kapre_logmel(x, STUDENT_MEL64)[0]).max() <= 2.0


def test_frontends_module_does_not_import_tensorflow():
    import subprocess
    import sys
    code = "import sys, sea_core.frontends; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
