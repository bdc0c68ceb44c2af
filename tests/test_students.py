"""SEA students: architecture, parameter counts, SEA-64 h5 parity, export round trip."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from conftest import SEA64_H5, chirp, need_shared, sine
from sea_core.errors import ModelNotFoundError, ParameterError, WeightsError
from sea_core.params import (AISFX_TEACHER, STUDENT_MEL64, STUDENT_PARAM_COUNTS, StudentSpec,
                             student_spec)

keras = pytest.importorskip("keras")

from sea_core.models.students import (PROJECTION_LAYER, build_student,  # noqa: E402
                                      load_sea64_h5, model_footprint)

SR = STUDENT_MEL64.sample_rate


def _n_params(weights) -> int:
    return int(sum(int(np.prod(w.shape)) for w in weights))


# --------------------------------------------------------------------------- architecture
@pytest.mark.parametrize("emb_dim", sorted(STUDENT_PARAM_COUNTS, reverse=True))
def test_param_counts_match_reference(emb_dim):
    total, trainable = STUDENT_PARAM_COUNTS[emb_dim]
    relu = build_student(student_spec(emb_dim))
    assert relu.count_params() == total
    assert _n_params(relu.trainable_weights) == trainable
    assert relu.input_shape == (None, 64, 50, 1)
    assert relu.output_shape == (None, emb_dim)
    linear = build_student(student_spec(emb_dim, head="linear"))
    assert linear.count_params() == total + emb_dim * emb_dim + emb_dim
    assert _n_params(linear.trainable_weights) == trainable + emb_dim * emb_dim + emb_dim


def test_layer_names_and_no_flatten():
    model = build_student(student_spec(64))
    names = [l.name for l in model.layers]
    assert names[1:4] == ["batch_normalization_1", "conv2d_1", "batch_normalization_2"]
    assert [n for n in names if n.startswith("conv2d")] == [f"conv2d_{i}" for i in range(1, 8)]
    assert names[-5:] == ["audio_embedding_layer", "batch_normalization_9", "activation_8",
                          "max_pooling2d_4", "flatten_1"]
    assert not any(isinstance(l, keras.layers.Flatten) for l in model.layers)
    assert model.get_layer("max_pooling2d_4").pool_size == (8, 6)
    bn = model.get_layer("batch_normalization_5")
    assert bn.epsilon == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.99)
    conv = model.get_layer("conv2d_3")
    assert conv.padding == "same" and conv.use_bias
    assert conv.kernel_regularizer.l2 == pytest.approx(1e-5)


def test_relu_head_nonnegative_linear_head_reaches_negative(rng):
    x = rng.uniform(-80, 0, size=(4, 64, 50, 1)).astype(np.float32)
    relu = build_student(student_spec(64))
    assert np.all(np.asarray(relu(x, training=False)) >= 0)
    linear = build_student(student_spec(64, head="linear"))
    assert np.any(np.asarray(linear(x, training=False)) < 0)
    assert isinstance(linear.get_layer(PROJECTION_LAYER), keras.layers.Dense)


def test_aisfx_window_student():
    spec = student_spec(128, AISFX_TEACHER)
    assert spec.window_samples == 18_390
    model = build_student(spec)
    assert model.input_shape == (None, 64, 115, 1)
    assert model.get_layer("max_pooling2d_4").pool_size == (8, 14)
    assert model.count_params() == STUDENT_PARAM_COUNTS[128][0]


def test_invalid_specs():
    with pytest.raises(ParameterError, match="emb_dim"):
        build_student(StudentSpec(emb_dim=100))
    with pytest.raises(ParameterError, match="head"):
        build_student(StudentSpec(emb_dim=64, head="tanh"))
    with pytest.raises(ParameterError, match="too small"):
        build_student(StudentSpec(emb_dim=64, window_seconds=0.02))


def test_footprint():
    fp = model_footprint(build_student(student_spec(64)))
    assert fp["params"] == STUDENT_PARAM_COUNTS[64][0]
    assert fp["float32_mb"] == pytest.approx(fp["params"] * 4 / 2**20)
    assert fp["largest_activation_bytes"] == 64 * 50 * 32 * 4


# ---------------------------------------------------------------- h5 loading (no ../shared)
def _write_keras2_h5(model, path, *, extra: str | None = None, skip: str | None = None,
                     mel_scale: float | None = None) -> None:
    """Write ``model``'s weights in the Keras 2 full-model layout (h5py only).

    With ``mel_scale``, a kapre-like ``melspectrogram_1`` group holding our front-end
    constants (the mel matrix multiplied by ``mel_scale``) comes first.
    """
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        names = []
        if mel_scale is not None:
            from sea_core.frontends import kapre_dft_kernels, kapre_mel_filterbank

            real, imag = kapre_dft_kernels(STUDENT_MEL64.n_dft)
            g = root.create_group("melspectrogram_1")
            stored = {"real_kernels": real[:, None, None, :],
                      "imag_kernels": imag[:, None, None, :],
                      "Variable": kapre_mel_filterbank(STUDENT_MEL64) * mel_scale}
            for var, arr in stored.items():
                g.create_dataset(f"melspectrogram_1/{var}:0", data=arr)
            g.attrs["weight_names"] = [f"melspectrogram_1/{v}:0".encode() for v in stored]
            names.append("melspectrogram_1")
        for layer in model.layers:
            if layer.name == skip:
                continue
            names.append(layer.name)
            g = root.create_group(layer.name)
            wnames = []
            for w in layer.weights:
                wn = f"{layer.name}/{w.name}:0"
                g.create_dataset(wn, data=np.asarray(w.numpy()))
                wnames.append(wn.encode())
            if layer.name == extra:
                g.create_dataset(f"{layer.name}/stray:0", data=np.zeros(3, np.float32))
            g.attrs["weight_names"] = wnames
        root.attrs["layer_names"] = [n.encode() for n in names]


def test_h5_round_trip_and_errors(tmp_path, rng):
    src = build_student(student_spec(64))
    for w in src.weights:  # move BN statistics off their initial values
        offset = 1.0 if "variance" in w.name else 0.0
        w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.1 + offset)
    path = tmp_path / "w.h5"
    _write_keras2_h5(src, path)
    dst = build_student(student_spec(64))
    x = rng.uniform(-80, 0, size=(2, 64, 50, 1)).astype(np.float32)
    assert not np.allclose(np.asarray(dst(x)), np.asarray(src(x)))
    load_sea64_h5(dst, path)
    np.testing.assert_array_equal(np.asarray(dst(x)), np.asarray(src(x)))

    with pytest.raises(WeightsError, match=r"conv2d_1.*\(3, 3, 1, 32\).*\(3, 3, 1, 64\)"):
        load_sea64_h5(build_student(student_spec(512)), path)
    with pytest.raises(WeightsError, match=PROJECTION_LAYER):
        load_sea64_h5(build_student(student_spec(64, head="linear")), path)
    bad = tmp_path / "extra.h5"
    _write_keras2_h5(src, bad, extra="conv2d_4")
    with pytest.raises(WeightsError, match="conv2d_4.*unconsumed"):
        load_sea64_h5(build_student(student_spec(64)), bad)
    short = tmp_path / "short.h5"
    _write_keras2_h5(src, short, skip="conv2d_5")
    fresh = build_student(student_spec(64))
    before = [np.asarray(w.numpy()) for w in fresh.weights]
    with pytest.raises(WeightsError, match="conv2d_5"):
        load_sea64_h5(fresh, short)
    for a, w in zip(before, fresh.weights):  # nothing assigned on failure
        np.testing.assert_array_equal(a, np.asarray(w.numpy()))
    with pytest.raises(ModelNotFoundError):
        load_sea64_h5(fresh, tmp_path / "absent.h5")

    kapre = tmp_path / "kapre.h5"
    _write_keras2_h5(src, kapre, mel_scale=1.0)  # front-end arrays checked, not loaded
    with_fe = build_student(student_spec(64), with_frontend=True)
    load_sea64_h5(with_fe, kapre)
    np.testing.assert_array_equal(np.asarray(with_fe.get_layer("conv2d_7").kernel.numpy()),
                                  np.asarray(src.get_layer("conv2d_7").kernel.numpy()))
    _write_keras2_h5(src, kapre, mel_scale=1.01)
    with pytest.raises(WeightsError, match="melspectrogram_1/Variable"):
        load_sea64_h5(build_student(student_spec(64)), kapre)


# --------------------------------------------------------------------------- SEA-64 parity
def _h5_numpy_forward(path, logmel: np.ndarray) -> np.ndarray:
    """Independent float64 forward pass of the h5 trunk, driven by its stored config.

    ``logmel`` is [N, 64, F]. Conv = explicit 3x3 'same' im2col + einsum.
    """
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])["config"]["layers"]
        mw = f["model_weights"]

        def arrays(name):
            return {w.decode().split("/")[-1].split(":")[0]: np.asarray(mw[name][w], np.float64)
                    for w in mw[name].attrs["weight_names"]}

        x = logmel[..., None].astype(np.float64)
        for layer in cfg:
            kind, c = layer["class_name"], layer["config"]
            if kind in ("InputLayer", "Melspectrogram"):
                continue
            if kind == "BatchNormalization":
                a = arrays(c["name"])
                scale = a["gamma"] / np.sqrt(a["moving_variance"] + c["epsilon"])
                x = scale * (x - a["moving_mean"]) + a["beta"]
            elif kind == "Conv2D":
                a = arrays(c["name"])
                k = a["kernel"]
                kh, kw, cin, cout = k.shape
                n, h, w, _ = x.shape
                xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
                cols = np.stack([xp[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)],
                                axis=3)  # [n, h, w, kh*kw, cin]
                x = np.einsum("nhwpc,pco->nhwo", cols, k.reshape(kh * kw, cin, cout)) + a["bias"]
            elif kind == "Activation":
                assert c["activation"] == "relu"
                x = np.maximum(x, 0.0)
            elif kind == "MaxPooling2D":
                ph, pw = c["pool_size"]
                n, h, w, ch = x.shape
                ho, wo = h // ph, w // pw
                x = x[:, :ho * ph, :wo * pw].reshape(n, ho, ph, wo, pw, ch).max(axis=(2, 4))
            elif kind == "Flatten":
                x = x.reshape(x.shape[0], -1)
            else:
                raise AssertionError(f"unexpected layer {kind}")
    return x


def _test_signals(rng) -> np.ndarray:
    return np.stack([sine(1000.0, 1.0, SR), rng.uniform(-0.5, 0.5, SR).astype(np.float32),
                     chirp(100.0, 3900.0, 1.0, SR)])


def test_sea64_h5_parity_with_numpy(rng):
    path = need_shared(SEA64_H5)
    from sea_core.frontends import kapre_logmel

    audio = _test_signals(rng)
    logmel = kapre_logmel(audio, STUDENT_MEL64)
    assert logmel.shape == (3, 64, 50)
    ref = _h5_numpy_forward(path, logmel)

    model = build_student(student_spec(64))
    load_sea64_h5(model, path)
    got = np.asarray(model(logmel[..., None].astype(np.float32), training=False))
    assert got.shape == (3, 64)
    assert np.max(np.abs(got - ref)) <= 1e-4
    zeros = (ref == 0).sum(axis=1)
    assert np.all((zeros >= 20) & (zeros <= 32)), zeros  # README: 25-27 of 64 on such signals
    assert np.array_equal(got == 0, ref == 0)


def test_sea64_end_to_end_from_audio_and_keras_round_trip(rng, tmp_path):
    path = need_shared(SEA64_H5)
    from sea_core.frontends import kapre_logmel

    from sea_core.models.layers import student_frontend

    audio = _test_signals(rng)
    model = build_student(student_spec(64), with_frontend=True)
    assert model.input_shape == (None, 8000)
    load_sea64_h5(model, path)
    got = np.asarray(model(audio, training=False))
    # The model = THE student front-end followed by the h5 trunk.
    ref_tf = _h5_numpy_forward(path, np.asarray(student_frontend(audio))[..., 0])
    assert np.max(np.abs(got - ref_tf)) <= 1e-4
    # Against the numpy front-end: exact for broadband noise (row 1). Pure tones are not
    # compared: their log-mel floor (-80 dB of 10*log10(amplitude) = 1e-8 relative
    # amplitude) lies below float32 resolution, so float32 TF and float64 numpy differ there.
    ref_np = _h5_numpy_forward(path, kapre_logmel(audio[1:2], STUDENT_MEL64))
    assert np.max(np.abs(got[1:2] - ref_np)) <= 1e-4

    out = tmp_path / "sea64.keras"
    model.save(out)
    again = keras.models.load_model(out, compile=False)
    np.testing.assert_allclose(np.asarray(again(audio, training=False)), got, rtol=0, atol=1e-6)
