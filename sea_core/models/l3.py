"""L3-Net audio (mel256) teacher: Keras network, openl3 weight layout, seeded random weights.

Network [reference (b)]: 1 s of 48-kHz audio -> ``KapreLogMel(L3_MEL256)``
``(256, 199, 1)`` -> input BatchNorm -> 4 blocks of
``[Conv2D 3x3 same he_normal L2 bias -> BN -> ReLU] x 2`` -> MaxPool 2x2
(not after block 4). Block 4's second conv, ``audio_embedding_layer``, is
linear (no BN/ReLU, as in OpenL3); a max over the whole ``(32, 24)`` map gives
the 512-d embedding. Without the front-end: 4,689,860 parameters.

Weights: the openl3 layout is a Keras 2 ``save_weights`` HDF5 file (root
``layer_names`` attribute, each layer group's ``weight_names``); files of
openl3 <= 0.3.1 also hold the kapre 0.1.4 ``Melspectrogram`` arrays
(``real_kernels``, ``imag_kernels``, ``Variable``), which are checked against
our mel256 front-end so that a mel128 or linear-spectrogram file is refused.
Stored layers are mapped to ours by type order (BN, conv, BN, ...), every
name and shape is checked and every stored array must be consumed.
"""
from __future__ import annotations

import importlib.util
import io
import os
import re
from pathlib import Path

import numpy as np

from sea_core.errors import ModelNotFoundError, ParameterError, WeightsError
from sea_core.params import L3_MEL256, L3_NET, L3_TEACHER, OPENL3_WEIGHTS, ConvNetParams, KapreMelParams
from sea_core.storage import publish_bytes

__all__ = [
    "build_l3_trunk", "build_l3_network", "randomize_l3_weights", "weight_layers",
    "load_openl3_weights", "save_openl3_layout", "find_openl3_weights", "check_kapre_frontend",
    "read_openl3_layout", "require_openl3_weights", "validate_openl3_file",
]

_BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")
_CONV_VARS = ("kernel", "bias")
_FRONTEND_VARS = ("real_kernels", "imag_kernels", "Variable")


# --------------------------------------------------------------------------- network
def _trunk(x, net: ConvNetParams):
    from keras import layers, regularizers

    def conv(f, name):
        return layers.Conv2D(f, net.kernel_size, padding="same", kernel_initializer="he_normal",
                             kernel_regularizer=regularizers.L2(net.l2), name=name)

    def bn(name):
        return layers.BatchNormalization(epsilon=net.bn_epsilon, momentum=net.bn_momentum,
                                         name=name)

    x = bn("input_bn")(x)
    n_blocks = len(net.filters)
    for b, f in enumerate(net.filters, start=1):
        x = conv(f, f"block{b}_conv1")(x)
        x = bn(f"block{b}_bn1")(x)
        x = layers.ReLU(name=f"block{b}_relu1")(x)
        if b == n_blocks:
            x = conv(f, "audio_embedding_layer")(x)  # linear, as in OpenL3
        else:
            x = conv(f, f"block{b}_conv2")(x)
            x = bn(f"block{b}_bn2")(x)
            x = layers.ReLU(name=f"block{b}_relu2")(x)
            x = layers.MaxPooling2D(net.pool, strides=net.pool, name=f"block{b}_pool")(x)
    # MaxPool over the whole (32, 24) map + Flatten == global max (static shapes for TFLite).
    return layers.GlobalMaxPooling2D(name="embedding_pool")(x)


def build_l3_trunk(*, net: ConvNetParams = L3_NET, frontend: KapreMelParams = L3_MEL256,
                   window_samples: int = L3_TEACHER.window_samples, name: str = "l3_trunk"):
    """L3-Net audio on a log-mel: ``(B, n_mels, n_frames, 1) -> (B, 512)`` (fresh weights)."""
    import keras

    inp = keras.Input((frontend.n_mels, frontend.n_frames(window_samples), 1), name="logmel")
    return keras.Model(inp, _trunk(inp, net), name=name)


def build_l3_network(*, with_frontend: bool = True, seed: int | None = None,
                     net: ConvNetParams = L3_NET, frontend: KapreMelParams = L3_MEL256,
                     window_samples: int = L3_TEACHER.window_samples, name: str = "l3"):
    """The L3-Net audio teacher as a Keras model.

    Parameters
    ----------
    with_frontend : bool
        ``True``: input ``(B, window_samples)`` audio through ``KapreLogMel``;
        ``False``: input ``(B, n_mels, n_frames, 1)`` log-mel.
    seed : int, optional
        Fill the weights with :func:`randomize_l3_weights` (deterministic numpy
        draws); ``None`` keeps Keras' initialisation.

    Returns
    -------
    keras.Model
        Output ``(B, 512)``.
    """
    import keras

    if with_frontend:
        from sea_core.models.layers import KapreLogMel
        inp = keras.Input((window_samples,), name="audio")
        x = KapreLogMel(frontend, name="kapre_logmel")(inp)
        model = keras.Model(inp, _trunk(x, net), name=name)
    else:
        model = build_l3_trunk(net=net, frontend=frontend, window_samples=window_samples, name=name)
    if seed is not None:
        randomize_l3_weights(model, seed=seed)
    return model


def weight_layers(model) -> list:
    """The Conv2D and BatchNormalization layers of an L3 model, in network order."""
    import keras
    from keras import layers

    out = []
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.BatchNormalization)):
            out.append(layer)
        elif isinstance(layer, keras.Model):
            out.extend(weight_layers(layer))  # nested trunk
    return out


def _kind(layer) -> str:
    from keras import layers
    return "conv" if isinstance(layer, layers.Conv2D) else "bn"


def randomize_l3_weights(model, *, seed: int) -> None:
    """Seeded random weights (numpy ``default_rng(seed)``; independent of the Keras version).

    Conv kernels are drawn He-normal (``N(0, 2 / fan_in)``), biases are 0; BN
    layers get ``gamma=1, beta=0, mean=0, var=1``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ParameterError(f"seed must be an int, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    for layer in weight_layers(model):
        if _kind(layer) == "conv":
            kernel, bias = layer.get_weights()
            fan_in = int(np.prod(kernel.shape[:-1]))
            kernel = (rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            layer.set_weights([kernel, np.zeros_like(bias)])
        else:
            g, b, m, v = layer.get_weights()
            layer.set_weights([np.ones_like(g), np.zeros_like(b), np.zeros_like(m), np.ones_like(v)])


# --------------------------------------------------------------------------- front-end arrays
def _frontend_arrays(p: KapreMelParams) -> dict[str, np.ndarray]:
    from sea_core.frontends import kapre_dft_kernels, kapre_mel_filterbank

    real, imag = kapre_dft_kernels(p.n_dft)
    return {"real_kernels": np.asarray(real, np.float32).reshape(p.n_dft, 1, 1, p.n_freqs),
            "imag_kernels": np.asarray(imag, np.float32).reshape(p.n_dft, 1, 1, p.n_freqs),
            "Variable": np.asarray(kapre_mel_filterbank(p), np.float32)}


def _describe_frontend(arrays: dict[str, np.ndarray]) -> str:
    real = arrays.get("real_kernels")
    n_dft = real.shape[0] if real is not None else "?"
    if "Variable" not in arrays:
        return f"a linear-frequency spectrogram (n_dft {n_dft}, no mel filterbank)"
    return (f"a {arrays['Variable'].shape[-1]}-band mel spectrogram (n_dft {n_dft}, "
            f"filterbank {arrays['Variable'].shape})")


def check_kapre_frontend(arrays: dict[str, np.ndarray], p: KapreMelParams, *,
                         where: str = "<weights>", rtol: float = 1e-4) -> None:
    """Check stored kapre 0.1.4 front-end arrays against our DFT kernels and mel filterbank.

    Parameters
    ----------
    arrays : dict
        ``{'real_kernels': (n_dft,1,1,n_freqs), 'imag_kernels': ..., 'Variable': (n_freqs, n_mels)}``.
    p : KapreMelParams
        The front-end the network expects.

    Raises
    ------
    WeightsError
        The stored front-end is another one (shapes or values differ); the
        message says which front-end the file holds.
    """
    expected = _frontend_arrays(p)
    want = f"our front-end (n_dft {p.n_dft}, {p.n_mels} mels at {p.sample_rate} Hz)"
    missing = [k for k in _FRONTEND_VARS if k not in arrays]
    extra = [k for k in arrays if k not in _FRONTEND_VARS]
    if missing or extra:
        raise WeightsError(f"{where}: the stored front-end is {_describe_frontend(arrays)}, "
                           f"not {want} (missing {missing}, unexpected {extra})")
    for key, exp in expected.items():
        got = np.asarray(arrays[key], np.float32)
        if got.shape != exp.shape:
            raise WeightsError(f"{where}: the stored front-end is {_describe_frontend(arrays)}, not "
                               f"{want}: {key} has shape {got.shape}, expected {exp.shape}")
        tol = rtol * float(np.abs(exp).max())
        ok = np.abs(got - exp).max() <= tol
        if key == "imag_kernels" and not ok:  # the sign convention of sin does not matter
            ok = np.abs(got + exp).max() <= tol
        if not ok:
            raise WeightsError(f"{where}: the stored front-end {key} {got.shape} differs from "
                               f"{want} (max abs diff {np.abs(got - exp).max():.3g}); it is not "
                               "the same spectrogram")


# --------------------------------------------------------------------------- openl3 layout
def _decode(names) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _var(weight_name: str) -> str:
    """'conv2d_1/kernel:0' -> 'kernel'."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def read_openl3_layout(path: str | os.PathLike) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The weighted layers of a Keras 2 weights file: ``[(layer_name, {var: array})]`` in order.

    Accepts a ``save_weights`` file (root ``layer_names``) or a full-model file
    (``model_weights`` group). Layers without weights are skipped.

    Raises
    ------
    WeightsError
        The file is not HDF5, lacks ``layer_names`` / ``weight_names``, or a
        layer stores the same variable twice.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not an HDF5 weights file ({exc})") from exc
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise WeightsError(f"{path}: no 'layer_names' attribute; not a Keras 2 weights file "
                               "(openl3 layout)")
        out = []
        for lname in _decode(root.attrs["layer_names"]):
            if lname not in root:
                raise WeightsError(f"{path}: layer {lname!r} is listed but has no group")
            g = root[lname]
            if "weight_names" not in g.attrs:
                raise WeightsError(f"{path}: layer {lname!r} has no 'weight_names' attribute")
            wnames = _decode(g.attrs["weight_names"])
            if not wnames:
                continue
            arrays: dict[str, np.ndarray] = {}
            for wn in wnames:
                if wn not in g:
                    raise WeightsError(f"{path}: layer {lname!r} lists {wn!r} but does not store it")
                v = _var(wn)
                if v in arrays:
                    raise WeightsError(f"{path}: layer {lname!r} stores {v!r} twice")
                arrays[v] = np.asarray(g[wn][()])
            out.append((lname, arrays))
    return out


def _classify(lname: str, arrays: dict, path) -> str:
    keys = set(arrays)
    if keys & {"real_kernels", "imag_kernels"}:
        return "frontend"
    if keys == set(_CONV_VARS):
        return "conv"
    if keys == set(_BN_VARS):
        return "bn"
    raise WeightsError(f"{path}: layer {lname!r} stores {sorted(keys)}, which is neither a "
                       f"Conv2D {list(_CONV_VARS)}, a BatchNormalization {list(_BN_VARS)} "
                       "nor a kapre front-end")


def _expected_layout(net: ConvNetParams) -> list[tuple[str, str, dict[str, tuple]]]:
    """(our layer name, kind, {var: shape}) of every weighted trunk layer, in order."""
    k = net.kernel_size
    bn = lambda c: {v: (c,) for v in _BN_VARS}  # noqa: E731
    out = [("input_bn", "bn", bn(1))]
    in_ch = 1
    n = len(net.filters)
    for b, f in enumerate(net.filters, start=1):
        out.append((f"block{b}_conv1", "conv", {"kernel": (k, k, in_ch, f), "bias": (f,)}))
        out.append((f"block{b}_bn1", "bn", bn(f)))
        conv2 = "audio_embedding_layer" if b == n else f"block{b}_conv2"
        out.append((conv2, "conv", {"kernel": (k, k, f, f), "bias": (f,)}))
        if b < n:
            out.append((f"block{b}_bn2", "bn", bn(f)))
        in_ch = f
    return out


def validate_openl3_file(path: str | os.PathLike, *, net: ConvNetParams = L3_NET,
                         frontend: KapreMelParams = L3_MEL256) -> None:
    """Check an openl3-layout file against the L3 network without building it (no Keras).

    Raises
    ------
    WeightsError
        As :func:`load_openl3_weights`.
    """
    path = Path(path)
    _check_repr_in_name(path, frontend)
    net_stored = _split_frontend(read_openl3_layout(path), path, frontend)
    expected = _expected_layout(net)
    if len(net_stored) != len(expected):
        raise WeightsError(f"{path}: {len(net_stored)} weighted layers stored, the L3 network "
                           f"has {len(expected)}")
    for (sname, arrays), (oname, okind, shapes) in zip(net_stored, expected):
        skind = _classify(sname, arrays, path)
        if skind != okind:
            raise WeightsError(f"{path}: stored layer {sname!r} is a {skind} but our layer "
                               f"{oname!r} is a {okind}; the layer sequence differs")
        for var, shape in shapes.items():
            if tuple(arrays[var].shape) != shape:
                raise WeightsError(f"{path}: stored layer {sname!r} {var} has shape "
                                   f"{tuple(arrays[var].shape)}, our layer {oname!r} expects {shape}")


def _check_repr_in_name(path: Path, frontend: KapreMelParams) -> None:
    m = re.search(r"_(linear|mel128|mel256)_", path.name)
    want_repr = f"mel{frontend.n_mels}"
    if m and m.group(1) != want_repr:
        raise WeightsError(f"{path}: an openl3 {m.group(1)} weights file; this network needs "
                           f"{want_repr}")


def _split_frontend(stored, path, frontend):
    fe = [(n, a) for n, a in stored if _classify(n, a, path) == "frontend"]
    if len(fe) > 1:
        raise WeightsError(f"{path}: {len(fe)} front-end layers stored ({[n for n, _ in fe]})")
    if fe:
        check_kapre_frontend(fe[0][1], frontend, where=f"{path} layer {fe[0][0]!r}")
    return [(n, a) for n, a in stored if _classify(n, a, path) != "frontend"]


def load_openl3_weights(model, path: str | os.PathLike, *,
                        frontend: KapreMelParams = L3_MEL256) -> None:
    """Load an openl3-layout weights file into an L3 model from :func:`build_l3_network`.

    Parameters
    ----------
    model : keras.Model
        With or without the front-end.
    path : path-like
        ``openl3_audio_mel256_<content>.h5`` or a file from :func:`save_openl3_layout`.
    frontend : KapreMelParams
        Front-end the stored kapre arrays (when present) must equal.

    Raises
    ------
    WeightsError
        The file name says another input representation, the stored front-end
        differs, the layer sequence differs, or a shape differs (the message
        names the stored layer, our layer and both shapes). Nothing is loaded
        unless everything matches.
    """
    path = Path(path)
    _check_repr_in_name(path, frontend)
    net_stored = _split_frontend(read_openl3_layout(path), path, frontend)
    ours = weight_layers(model)
    if len(net_stored) != len(ours):
        raise WeightsError(f"{path}: {len(net_stored)} weighted layers stored "
                           f"({[n for n, _ in net_stored][:4]} ...), the L3 network has {len(ours)}")
    assignments = []
    for (sname, arrays), layer in zip(net_stored, ours):
        skind, okind = _classify(sname, arrays, path), _kind(layer)
        if skind != okind:
            raise WeightsError(f"{path}: stored layer {sname!r} is a {skind} but our layer "
                               f"{layer.name!r} is a {okind}; the layer sequence differs")
        order = _CONV_VARS if okind == "conv" else _BN_VARS
        values = []
        for var, cur in zip(order, layer.get_weights()):
            val = np.asarray(arrays[var], dtype=np.float32)
            if val.shape != cur.shape:
                raise WeightsError(f"{path}: stored layer {sname!r} {var} has shape {val.shape}, "
                                   f"our layer {layer.name!r} expects {cur.shape}")
            values.append(val)
        assignments.append((layer, values))
    for layer, values in assignments:
        layer.set_weights(values)


def save_openl3_layout(model, path: str | os.PathLike, *,
                       frontend: KapreMelParams = L3_MEL256) -> Path:
    """Write an L3 model's weights in the openl3 (Keras 2 ``save_weights``) layout.

    Layer groups are named as Keras 2 auto-named them in openl3
    (``melspectrogram_1``, ``batch_normalization_k``, ``conv2d_k``,
    ``audio_embedding_layer``, plus the weightless ``input_1``,
    ``activation_k``, ``max_pooling2d_k``); the kapre front-end arrays are
    computed from ``frontend``. Built in memory, then published atomically
    (``sea_core.storage.publish_bytes``).

    Returns
    -------
    Path
        ``path``.
    """
    import h5py

    path = Path(path)
    ours = weight_layers(model)
    counters: dict[str, int] = {}

    def auto(prefix: str) -> str:
        counters[prefix] = counters.get(prefix, 0) + 1
        return f"{prefix}_{counters[prefix]}"

    groups: list[tuple[str, list[tuple[str, np.ndarray]]]] = [("input_1", [])]
    groups.append(("melspectrogram_1", list(_frontend_arrays(frontend).items())))
    for layer in ours:
        if _kind(layer) == "conv":
            lname = "audio_embedding_layer" if layer.name == "audio_embedding_layer" else auto("conv2d")
            groups.append((lname, list(zip(_CONV_VARS, layer.get_weights()))))
        else:
            lname = auto("batch_normalization")
            groups.append((lname, list(zip(_BN_VARS, layer.get_weights()))))
            if layer.name != "input_bn":
                groups.append((auto("activation"), []))
                if layer.name.endswith("_bn2"):
                    groups.append((auto("max_pooling2d"), []))
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in groups])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for lname, weights in groups:
            g = f.create_group(lname)
            wnames = [f"{lname}/{var}:0".encode() for var, _ in weights]
            g.attrs["weight_names"] = np.array(wnames, dtype="S") if wnames else np.array([], "S1")
            for wn, (_, arr) in zip(wnames, weights):
                g.create_dataset(wn.decode(), data=np.asarray(arr, np.float32))
    publish_bytes(path, buf.getvalue())
    return path


def find_openl3_weights(content_type: str = OPENL3_WEIGHTS.default_content_type) -> Path | None:
    """An installed openl3 package's mel256 audio weights file, or ``None`` (openl3 is optional)."""
    if content_type not in OPENL3_WEIGHTS.content_types:
        raise ParameterError(f"content_type must be one of {OPENL3_WEIGHTS.content_types}, "
                             f"got {content_type!r}")
    try:
        spec = importlib.util.find_spec(OPENL3_WEIGHTS.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    name = OPENL3_WEIGHTS.file_template.format(content_type=content_type)
    for loc in spec.submodule_search_locations:
        cand = Path(loc) / name
        if cand.is_file():
            return cand
    return None


def require_openl3_weights(weights: str | os.PathLike | None, *,
                           content_type: str = OPENL3_WEIGHTS.default_content_type) -> Path:
    """The L3 weights file to use: ``weights`` if given, else an installed openl3's.

    Raises
    ------
    ModelNotFoundError
        Neither is available; the message says how to supply the file.
    """
    if weights is not None:
        p = Path(weights)
        if not p.is_file():
            raise ModelNotFoundError(f"{p}: no such L3 weights file")
        return p
    found = find_openl3_weights(content_type)
    if found is None:
        name = OPENL3_WEIGHTS.file_template.format(content_type=content_type)
        raise ModelNotFoundError(
            "no L3-Net weights: pass get_teacher('l3', weights='/path/to/" + name + "') (an openl3 "
            "<= 0.3.1 audio mel256 weights file, or one written by "
            "sea_core.models.l3.save_openl3_layout), or install the openl3 package, which ships "
            f"{name}; use 'l3-random' for a randomly initialised stand-in")
    return found
