"""SEA students (512/256/128/64-d) and loading of the authors' SEA-64 h5.

The trunk follows ``_construct_ust_specialized_audio_network`` of edgel3
(``../shared/docs/reference.md`` section (c)): an input BatchNorm, four blocks
of ``[Conv 3x3 -> BN -> ReLU] x 2`` with a 2x2 max-pool after blocks 1-3, BN +
ReLU after the embedding conv (``audio_embedding_layer``), then a max-pool over
the whole remaining map. Layers carry the names of the authors' Keras 2 file
(``batch_normalization_1``, ``conv2d_1``, ..., ``audio_embedding_layer``) so
that stored weights map by name.

Two heads:

``'relu'``
    Paper-faithful: the embedding is the max-pooled ReLU map, so every output
    is >= 0.
``'linear'``
    Adds a linear ``Dense(emb_dim)`` projection (``linear_projection``) after
    the pooled features. It fixes reference (j) item 4: PCA targets are
    zero-mean and about half negative, which a ReLU output cannot reach. It
    adds ``emb_dim**2 + emb_dim`` parameters.

The final pooling is a static-size ``MaxPooling2D`` followed by a static
``Reshape`` (named like the authors' ``flatten_1``), never ``Flatten`` on a
``None`` batch, which converts to a dynamic shape chain in TFLite.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sea_core.errors import ModelNotFoundError, ParameterError, WeightsError
from sea_core.params import STUDENT_FILTERS, STUDENT_MEL64, ConvNetParams, StudentSpec

__all__ = ["build_student", "load_sea64_h5", "model_footprint", "HEADS", "PROJECTION_LAYER",
           "FRONTEND_LAYER"]

HEADS = ("relu", "linear")
PROJECTION_LAYER = "linear_projection"
FRONTEND_LAYER = "student_frontend"
"""Name of the ``KapreLogMel`` layer of a ``with_frontend=True`` student."""
"""Name of the Dense layer of the ``'linear'`` head."""

_N_BLOCKS = 4


def _net_params(spec: StudentSpec) -> ConvNetParams:
    """Trunk hyper-parameters of ``spec`` (filters from ``STUDENT_FILTERS``)."""
    if spec.emb_dim not in STUDENT_FILTERS:
        raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_FILTERS)}, "
                             f"got {spec.emb_dim!r}")
    if spec.head not in HEADS:
        raise ParameterError(f"head must be one of {HEADS}, got {spec.head!r}")
    return ConvNetParams(filters=spec.filters)


def _final_map_size(spec: StudentSpec, net: ConvNetParams) -> tuple[int, int]:
    """(mel, frame) size of the block-4 map after three 'valid' 2x2 pools."""
    h, w, _ = spec.input_shape
    for _ in range(_N_BLOCKS - 1):
        h, w = h // net.pool[0], w // net.pool[1]
    if h < 1 or w < 1:
        raise ParameterError(f"student input {spec.input_shape} is too small for "
                             f"{_N_BLOCKS - 1} {net.pool} poolings")
    return h, w


def _trunk(x, spec: StudentSpec, net: ConvNetParams):
    """Apply the student trunk to the log-mel tensor ``x`` [B, n_mels, F, 1]."""
    import keras
    from keras import layers

    count = {"bn": 0, "conv": 0, "act": 0, "pool": 0}

    def name(kind: str, prefix: str) -> str:
        count[kind] += 1
        return f"{prefix}_{count[kind]}"

    def bn(t):
        return layers.BatchNormalization(axis=-1, momentum=net.bn_momentum, epsilon=net.bn_epsilon,
                                         name=name("bn", "batch_normalization"))(t)

    x = bn(x)
    for block, filters in enumerate(net.filters, start=1):
        for j in range(2):
            conv_name = ("audio_embedding_layer" if (block == _N_BLOCKS and j == 1)
                         else name("conv", "conv2d"))
            x = layers.Conv2D(filters, net.kernel_size, padding="same", use_bias=True,
                              kernel_initializer="he_normal",
                              kernel_regularizer=keras.regularizers.L2(net.l2),
                              name=conv_name)(x)
            x = bn(x)
            x = layers.Activation("relu", name=name("act", "activation"))(x)
        if block < _N_BLOCKS:
            x = layers.MaxPooling2D(pool_size=net.pool, strides=net.pool, padding="valid",
                                    name=name("pool", "max_pooling2d"))(x)
    hw = _final_map_size(spec, net)
    x = layers.MaxPooling2D(pool_size=hw, strides=hw, padding="valid",
                            name=name("pool", "max_pooling2d"))(x)
    x = layers.Reshape((net.emb_dim,), name="flatten_1")(x)
    if spec.head == "linear":
        x = layers.Dense(net.emb_dim, activation=None, name=PROJECTION_LAYER)(x)
    return x


def build_student(spec: StudentSpec, *, with_frontend: bool = False):
    """Build a SEA student network (random initial weights).

    Parameters
    ----------
    spec : StudentSpec
        Embedding dim (512, 256, 128 or 64; filters from ``STUDENT_FILTERS``),
        head (``'relu'`` or ``'linear'``), front-end and window length
        (see :func:`sea_core.params.student_spec`).
    with_frontend : bool
        If False the input is the log-mel ``spec.input_shape`` = (64, F, 1),
        F = 50 for 1 s (115 for the aisfx teacher's 2.30-s window). If True the
        input is ``(spec.window_samples,)`` float32 8-kHz audio in [-1, 1],
        turned into the log-mel inside the model by a
        ``KapreLogMel(spec.frontend)`` layer named ``student_frontend`` (the
        code path of :func:`sea_core.models.layers.student_frontend`; the form
        exported as ``.keras`` and to TFLite).

    Returns
    -------
    keras.Model
        Maps the input (batch first) to embeddings [B, emb_dim] float32.
        Without the front-end its parameter counts equal
        ``STUDENT_PARAM_COUNTS[emb_dim]`` for the ``'relu'`` head; the
        ``'linear'`` head adds ``emb_dim**2 + emb_dim``.

    Raises
    ------
    ParameterError
        Unknown emb_dim or head, or an input too small for the pooling.
    """
    import keras

    net = _net_params(spec)
    _final_map_size(spec, net)
    if with_frontend:
        from sea_core.models.layers import KapreLogMel

        inputs = keras.Input(shape=(spec.window_samples,), dtype="float32", name="audio")
        # KapreLogMel(STUDENT_MEL64) runs exactly the code of layers.student_frontend
        # (a plain TF function cannot be applied to a symbolic Keras input).
        x = KapreLogMel(spec.frontend, name=FRONTEND_LAYER)(inputs)
    else:
        inputs = keras.Input(shape=spec.input_shape, dtype="float32", name="logmel")
        x = inputs
    outputs = _trunk(x, spec, net)
    suffix = "_audio" if with_frontend else ""
    return keras.Model(inputs, outputs, name=f"sea_student_{spec.emb_dim}_{spec.head}{suffix}")


def model_footprint(model) -> dict:
    """Size figures of a Keras model (for the paper's model table).

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    dict
        ``params`` (total), ``trainable``, ``float32_mb`` (params x 4 bytes /
        2**20), ``largest_activation_bytes`` (float32, batch 1, over every
        layer output) and ``largest_activation_layer``.
    """
    total = int(sum(int(np.prod(w.shape)) for w in model.weights))
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    best, best_name = 0, None
    for layer in model.layers:
        out = layer.output
        outs = out if isinstance(out, (list, tuple)) else [out]
        for t in outs:
            size = int(np.prod([d for d in t.shape[1:]])) * 4
            if size > best:
                best, best_name = size, layer.name
    return {"params": total, "trainable": trainable, "float32_mb": total * 4 / 2**20,
            "largest_activation_bytes": best, "largest_activation_layer": best_name}


# --------------------------------------------------------------------------- SEA-64 h5
def _decode(x) -> str:
    return x.decode("utf8") if isinstance(x, bytes) else str(x)


def _check_frontend_arrays(layer: str, arrays: dict[str, np.ndarray], config: dict | None) -> None:
    """Compare the kapre layer's fixed arrays (and config) with our front-end constants."""
    from sea_core.frontends import kapre_dft_kernels, kapre_mel_filterbank

    p = STUDENT_MEL64
    if config is not None:
        expected = {"sr": p.sample_rate, "n_dft": p.n_dft, "n_hop": p.hop_length,
                    "n_mels": p.n_mels, "fmin": p.fmin, "fmax": p.f_max,
                    "power_melgram": p.power_melgram, "htk": True, "norm": 1,
                    "padding": "same", "return_decibel_melgram": True}
        for key, want in expected.items():
            if key in config and config[key] != want:
                raise WeightsError(f"{layer}: stored config {key}={config[key]!r}, our student "
                                   f"front-end uses {want!r}")
    real, imag = kapre_dft_kernels(p.n_dft)
    mel = kapre_mel_filterbank(p)
    ours = {"real_kernels": real, "imag_kernels": imag, "Variable": mel}
    for var, stored in arrays.items():
        if var not in ours:
            raise WeightsError(f"{layer}: unexpected stored array {var!r} {stored.shape}")
        want = np.asarray(ours[var], dtype=np.float64)
        got = np.asarray(stored, dtype=np.float64).reshape(stored.shape[0], -1)
        if got.shape != want.shape:
            raise WeightsError(f"{layer}/{var}: stored shape {stored.shape} does not match our "
                               f"front-end constant {want.shape}")
        err = float(np.max(np.abs(got - want)))
        if err > 1e-6 * max(1.0, float(np.max(np.abs(want)))):
            raise WeightsError(f"{layer}/{var}: stored values differ from our front-end constant "
                               f"(max abs diff {err:.3g})")
    missing = set(ours) - set(arrays)
    if missing:
        raise WeightsError(f"{layer}: stored front-end lacks {sorted(missing)}")


def load_sea64_h5(model, path) -> None:
    """Load the authors' SEA-64 Keras 2 h5 into a 64-d ``'relu'`` student.

    Arrays are read with h5py from ``model_weights/<layer>/<weight name>``
    following ``attrs['layer_names']`` and each group's ``attrs['weight_names']``
    (a weights-only file without ``model_weights`` also works). The kapre
    ``melspectrogram_*`` arrays are not loaded: they are checked against our
    front-end constants (kapre DFT kernels, mel matrix) instead. Every other
    stored array is assigned by layer name, with its shape checked; nothing is
    assigned unless the whole file matches.

    Parameters
    ----------
    model : keras.Model
        ``build_student(student_spec(64), with_frontend=...)``.
    path : str or Path
        e.g. ``../shared/models/edgel3_sea_ust_audio_emb_64.h5``.

    Raises
    ------
    ModelNotFoundError
        ``path`` does not exist.
    WeightsError
        Not a Keras h5, a stored layer absent from ``model``, a shape or count
        mismatch (message names the layer and both shapes), a stored array left
        unconsumed, a weighted model layer with no stored weights, or a
        front-end constant that differs from ours.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"{path}: no such weight file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path}: not an HDF5 file ({exc})") from exc
    assignments = []
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise WeightsError(f"{path}: no 'layer_names' attribute; not a Keras h5 weight file")
        configs = {}
        if "model_config" in f.attrs:
            try:
                cfg = json.loads(_decode(f.attrs["model_config"]))
                configs = {l["config"]["name"]: l["config"] for l in cfg["config"]["layers"]}
            except (ValueError, KeyError, TypeError) as exc:
                raise WeightsError(f"{path}: unreadable model_config ({exc})") from exc
        model_layers = {layer.name: layer for layer in model.layers}
        loaded = set()
        for lname in (_decode(n) for n in root.attrs["layer_names"]):
            group = root[lname]
            wnames = [_decode(n) for n in group.attrs.get("weight_names", [])]
            arrays = [np.asarray(group[w]) for w in wnames]
            stored_shapes = [a.shape for a in arrays]
            n_datasets = _count_datasets(group)
            if n_datasets != len(wnames):
                raise WeightsError(f"{path}: layer {lname!r} holds {n_datasets} arrays but lists "
                                   f"{len(wnames)} in weight_names; unconsumed arrays")
            if not wnames:
                continue
            var_names = [w.split("/")[-1].split(":")[0] for w in wnames]
            if lname.startswith("melspectrogram"):
                _check_frontend_arrays(lname, dict(zip(var_names, arrays)), configs.get(lname))
                continue
            layer = model_layers.get(lname)
            if layer is None:
                raise WeightsError(f"{path}: stored layer {lname!r} {stored_shapes} has no "
                                   f"counterpart in model {model.name!r}")
            ours = list(layer.weights)
            our_shapes = [tuple(w.shape) for w in ours]
            if our_shapes != stored_shapes:
                raise WeightsError(f"{path}: layer {lname!r}: stored shapes {stored_shapes} "
                                   f"!= model shapes {our_shapes}")
            for var, w in zip(var_names, ours):
                wn = w.name.split("/")[-1].split(":")[0]
                if wn != var:
                    raise WeightsError(f"{path}: layer {lname!r}: stored {var!r} would load into "
                                       f"{wn!r}")
            assignments.append((layer, arrays))
            loaded.add(lname)
    import keras

    learned = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.Dense)
    unloaded = [l.name for l in model.layers if isinstance(l, learned) and l.name not in loaded]
    if unloaded:
        raise WeightsError(f"{path}: model layers {unloaded} have no stored weights "
                           f"(the SEA-64 file fits the 64-d 'relu' student only)")
    for layer, arrays in assignments:
        layer.set_weights(arrays)


def _count_datasets(group) -> int:
    import h5py

    n = 0

    def visit(_name, obj):
        nonlocal n
        if isinstance(obj, h5py.Dataset):
            n += 1

    group.visititems(visit)
    return n
