"""The aisfx teacher: fetch the 0.1.2 wheel, convert its torch checkpoint, build the Keras net.

The weights are the ``X-Sequential-CE`` CNN of Ma & Lerch (ISMIR 2022), shipped
in the PyPI wheel ``aisfx==0.1.2`` as ``aisfx/models/checkpoint.pth``
(model weights CC BY 4.0 (c) 2022 A.B. Ma and A. Lerch). At first use the wheel
is fetched with ``pip download`` into the weights cache
(:func:`sea_core.paths.cache_dir`), the checkpoint's sha256 is verified and it
is converted **without torch** (:mod:`sea_core.models.torch_checkpoint`: a
restricted unpickler, tensors rebuilt with numpy). The converted arrays are
published atomically (``sea_core.storage.publish_bytes``) as
``<cache>/aisfx-0.1.2/aisfx_teacher_512.npz``.

The network (``../shared/models/AISFX.md``): input ``(B, 100, 96, 1)``
(time x mel), 4 blocks of ``[Conv2D 3x3 same no-bias -> BN(eps 1e-5) -> ReLU] x 2``,
max-pool 2 after blocks 1-3, mean over the mel axis, max over time -> 512-d.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from sea_core.errors import ModelError, ModelNotFoundError, WeightsError
from sea_core.models.torch_checkpoint import read_torch_checkpoint
from sea_core.params import AISFX_FRONTEND, AISFX_NET, AISFX_WEIGHTS, AisfxFrontendParams, ConvNetParams
from sea_core.storage import publish_bytes, sha256_file

__all__ = [
    "convert_checkpoint", "arrays_sha256", "fetch_weights",
    "load_weights_npz", "weight_keys", "build_aisfx_trunk", "build_aisfx_network",
    "set_aisfx_weights", "weights_dir",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- conversion
def weight_keys(net: ConvNetParams = AISFX_NET) -> list[str]:
    """Names of the weight arrays of the converted npz, in network order."""
    keys = []
    for b in range(1, len(net.filters) + 1):
        for c in (1, 2):
            keys.append(f"block{b}_conv{c}_kernel_hwio")
            keys += [f"block{b}_bn{c}_{v}" for v in ("gamma", "beta", "mean", "var")]
    return keys


_LAYER_ORDER = [f"block{b}_{op}" for b in range(1, 5) for op in (
    "conv1", "bn1", "relu1", "conv2", "bn2", "relu2",
    "maxpool_2x2" if b < 4 else "maxpool_1x1_identity")] + ["mean_over_freq_axis",
                                                            "max_over_time_axis"]


def convert_checkpoint(pth_path: str | os.PathLike, *,
                       net: ConvNetParams = AISFX_NET) -> dict[str, np.ndarray]:
    """Convert the aisfx ``checkpoint.pth`` to the npz layout (HWIO kernels, named BN arrays).

    The torch keys ``embedding_net.conv_block{b}.{conv,bn}{c}.*`` map to
    ``block{b}_conv{c}_kernel_hwio`` (OIHW -> HWIO) and
    ``block{b}_bn{c}_{gamma,beta,mean,var,num_batches_tracked}``. The 9
    dataset heads (``fc.*``) are not part of the embedding and are dropped.

    Raises
    ------
    WeightsError
        A key is missing, has an unexpected shape, or the embedding net holds
        an array no layer consumes.
    """
    sd = read_torch_checkpoint(pth_path)
    out: dict[str, np.ndarray] = {}
    consumed = set()
    in_ch = 1
    k = net.kernel_size
    for b, f in enumerate(net.filters, start=1):
        for c in (1, 2):
            src = f"embedding_net.conv_block{b}.conv{c}.weight"
            w = _take(sd, src, (f, in_ch, k, k), pth_path)
            consumed.add(src)
            out[f"block{b}_conv{c}_kernel_hwio"] = np.ascontiguousarray(
                w.transpose(2, 3, 1, 0), dtype=np.float32)
            for tkey, okey in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "mean"),
                               ("running_var", "var")):
                src = f"embedding_net.conv_block{b}.bn{c}.{tkey}"
                out[f"block{b}_bn{c}_{okey}"] = _take(sd, src, (f,), pth_path).astype(np.float32)
                consumed.add(src)
            src = f"embedding_net.conv_block{b}.bn{c}.num_batches_tracked"
            if src in sd:
                out[f"block{b}_bn{c}_num_batches_tracked"] = np.asarray(sd[src], dtype=np.int64)
                consumed.add(src)
            in_ch = f
    left = [key for key in sd if key.startswith("embedding_net.") and key not in consumed]
    if left:
        raise WeightsError(f"{pth_path}: arrays not used by the embedding network: {left}")
    out.update(_metadata(net))
    return out


def _take(sd, key, shape, path) -> np.ndarray:
    if key not in sd:
        raise WeightsError(f"{path}: checkpoint has no {key!r}")
    arr = sd[key]
    if tuple(arr.shape) != tuple(shape):
        raise WeightsError(f"{path}: {key} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    return arr


def _metadata(net: ConvNetParams) -> dict[str, np.ndarray]:
    w = AISFX_WEIGHTS
    n_trainable = 0
    in_ch = 1
    for f in net.filters:
        n_trainable += 9 * in_ch * f + 9 * f * f + 4 * f
        in_ch = f
    return {
        "bn_eps": np.float32(net.bn_epsilon),
        "bn_momentum_torch": np.float32(round(1.0 - net.bn_momentum, 6)),
        "layer_order": np.array(_LAYER_ORDER),
        "input_layout": np.array("NHWC: (batch, time=100 frames, freq=96 mel bins, 1 channel)"),
        "source": np.array(f"PyPI {w.package}=={w.version}, {w.member} sha256={w.sha256}; "
                           f"{w.attribution}"),
        "spec_norm_min": np.float32(0.0),
        "spec_norm_max": np.float32(AISFX_FRONTEND.norm_max),
        "n_params_trainable": np.int64(n_trainable),
    }


def arrays_sha256(arrays, *, net: ConvNetParams = AISFX_NET) -> str:
    """sha256 of the weight arrays' names, shapes and float32 bytes (file-format independent)."""
    h = hashlib.sha256()
    for key in weight_keys(net):
        a = np.ascontiguousarray(np.asarray(arrays[key], dtype="<f4"))
        h.update(key.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- fetch + cache
def weights_dir(cache: str | os.PathLike | None = None) -> Path:
    """``<cache>/aisfx-<version>``: where the converted npz lives."""
    from sea_core.paths import cache_dir
    root = Path(cache) if cache is not None else cache_dir()
    return root / f"{AISFX_WEIGHTS.package}-{AISFX_WEIGHTS.version}"


def _pip_download(dest: Path) -> Path:
    """``pip download --no-deps aisfx==<version>`` into ``dest``; returns the wheel."""
    w = AISFX_WEIGHTS
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           f"{w.package}=={w.version}", "-d", str(dest)]
    log.info("fetching the aisfx weights: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=w.download_timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelNotFoundError(_no_download_msg(f"{exc}")) from exc
    wheels = sorted(dest.glob(f"{w.package}-{w.version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise ModelNotFoundError(_no_download_msg(" | ".join(tail) or f"exit {proc.returncode}"))
    return wheels[0]


def _no_download_msg(detail: str) -> str:
    w = AISFX_WEIGHTS
    return (f"cannot download the aisfx weights: `pip download --no-deps {w.package}=={w.version}` "
            f"failed ({detail}). Without access to PyPI, download the wheel elsewhere and pass "
            f"it, its {w.member}, or a converted npz as get_teacher('aisfx', weights=PATH).")


def _extract_checkpoint(wheel: Path, dest: Path) -> Path:
    w = AISFX_WEIGHTS
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(w.member)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{wheel}: cannot read {w.member} ({exc})") from exc
    out = dest / "checkpoint.pth"
    out.write_bytes(data)
    return out


def _verify_checkpoint(pth: Path, origin: str) -> None:
    got = sha256_file(pth)
    if got != AISFX_WEIGHTS.sha256:
        raise WeightsError(f"{origin}: checkpoint sha256 is {got}, expected {AISFX_WEIGHTS.sha256} "
                           f"({AISFX_WEIGHTS.package}=={AISFX_WEIGHTS.version}); refusing to use it")


def fetch_weights(*, cache: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                  force: bool = False) -> Path:
    """Path of the converted aisfx npz, downloading and converting it on first use.

    Parameters
    ----------
    cache : path-like, optional
        Cache root; default :func:`sea_core.paths.cache_dir`.
    source : path-like, optional
        A local ``aisfx-0.1.2-*.whl`` or its ``checkpoint.pth`` to convert instead
        of running ``pip download``.
    force : bool
        Convert again even if the npz is cached.

    Returns
    -------
    Path
        ``<cache>/aisfx-0.1.2/aisfx_teacher_512.npz``.

    Raises
    ------
    ModelNotFoundError
        ``pip download`` failed (no registry); the message says how to supply the file.
    WeightsError
        The checkpoint's sha256 is not the pinned one, or it cannot be converted.
    """
    target = weights_dir(cache) / AISFX_WEIGHTS.npz_name
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        if source is None:
            pth = _extract_checkpoint(_pip_download(tmp), tmp)
            origin = f"{AISFX_WEIGHTS.package}=={AISFX_WEIGHTS.version} wheel"
        else:
            source = Path(source)
            if not source.exists():
                raise ModelNotFoundError(f"{source}: no such file")
            pth = _extract_checkpoint(source, tmp) if source.suffix == ".whl" else source
            origin = str(source)
        _verify_checkpoint(pth, origin)
        arrays = convert_checkpoint(pth)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        publish_bytes(target, buf.getvalue())
    log.info("converted aisfx weights -> %s", target)
    return target


def load_weights_npz(path: str | os.PathLike, *, net: ConvNetParams = AISFX_NET) -> dict[str, np.ndarray]:
    """The weight arrays of a converted aisfx npz (no pickle), shape-checked.

    Raises
    ------
    WeightsError
        A key is missing or has the wrong shape.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in weight_keys(net) if k not in z.files]
            if missing:
                raise WeightsError(f"{path}: not an aisfx npz, missing {missing[:3]}"
                                   f"{' ...' if len(missing) > 3 else ''}")
            arrays = {k: np.asarray(z[k], dtype=np.float32) for k in weight_keys(net)}
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path}: cannot read the npz ({exc})") from exc
    in_ch = 1
    for b, f in enumerate(net.filters, start=1):
        for c in (1, 2):
            exp = {f"block{b}_conv{c}_kernel_hwio": (net.kernel_size, net.kernel_size, in_ch, f)}
            exp.update({f"block{b}_bn{c}_{v}": (f,) for v in ("gamma", "beta", "mean", "var")})
            for key, shape in exp.items():
                if arrays[key].shape != shape:
                    raise WeightsError(f"{path}: {key} has shape {arrays[key].shape}, "
                                       f"expected {shape}")
            in_ch = f
    return arrays


# --------------------------------------------------------------------------- Keras network
def build_aisfx_trunk(*, net: ConvNetParams = AISFX_NET,
                      frontend: AisfxFrontendParams = AISFX_FRONTEND, name: str = "aisfx_trunk",
                      fold_batchnorm: bool = False):
    """The aisfx CNN on a log-mel block: ``(B, block_frames, n_mels, 1) -> (B, 512)``.

    Weights are freshly initialised; load them with :func:`set_aisfx_weights`.
    The mean over the mel axis is an ``AveragePooling2D((1, W))`` over the
    whole remaining mel width and the max over time a ``GlobalMaxPooling2D``,
    so the model uses built-in layers only.

    ``fold_batchnorm=True`` builds the inference form: each conv + BatchNorm + ReLU is one
    ``Conv2D`` with a bias and a ReLU activation (the BatchNorm folded into the kernel and
    bias by :func:`set_aisfx_weights`). Same function (to float32 rounding: <= 1e-5 on
    the golden vectors), one fused op per conv instead of four passes over each
    activation map; the teacher uses it (:func:`build_aisfx_network`).
    """
    import keras
    from keras import layers

    x = inp = keras.Input((frontend.block_frames, frontend.n_mels, 1), name="logmel")
    for b, f in enumerate(net.filters, start=1):
        for c in (1, 2):
            if fold_batchnorm:
                x = layers.Conv2D(f, net.kernel_size, padding="same", activation="relu",
                                  name=f"block{b}_conv{c}")(x)
                continue
            x = layers.Conv2D(f, net.kernel_size, padding="same", use_bias=False,
                              name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(epsilon=net.bn_epsilon, momentum=net.bn_momentum,
                                          name=f"block{b}_bn{c}")(x)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
        if b < len(net.filters):
            x = layers.MaxPooling2D(net.pool, name=f"block{b}_pool")(x)
    x = layers.AveragePooling2D((1, int(x.shape[2])), name="mean_over_mel")(x)
    x = layers.GlobalMaxPooling2D(name="max_over_time")(x)
    return keras.Model(inp, x, name=name)


def _folded(kernel: np.ndarray, gamma, beta, mean, var, eps: float) -> list[np.ndarray]:
    """[kernel, bias] of a bias-free conv followed by inference BatchNorm, folded (float64 maths)."""
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    k = np.asarray(kernel, np.float64) * scale
    bias = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return [k.astype(np.float32), bias.astype(np.float32)]


def set_aisfx_weights(trunk, arrays: dict[str, np.ndarray], *, net: ConvNetParams = AISFX_NET) -> None:
    """Load npz-layout arrays into a trunk from :func:`build_aisfx_trunk` (either form).

    Raises
    ------
    WeightsError
        An array is missing or its shape differs from the layer's (both named).
    """
    def take(key: str, layer_name: str, shape: tuple) -> np.ndarray:
        if key not in arrays:
            raise WeightsError(f"aisfx weights: {key} is missing (layer {layer_name})")
        val = np.asarray(arrays[key], dtype=np.float32)
        if val.shape != tuple(shape):
            raise WeightsError(f"aisfx layer {layer_name}: stored {key} has shape "
                               f"{val.shape}, the layer expects {tuple(shape)}")
        return val

    for b in range(1, len(net.filters) + 1):
        for c in (1, 2):
            conv_name, bn_name = f"block{b}_conv{c}", f"block{b}_bn{c}"
            conv = trunk.get_layer(conv_name)
            kernel = take(f"{conv_name}_kernel_hwio", conv_name, conv.kernel.shape)
            bn = [take(f"{bn_name}_{v}", bn_name, (kernel.shape[-1],))
                  for v in ("gamma", "beta", "mean", "var")]
            if conv.use_bias:  # the folded form
                conv.set_weights(_folded(kernel, *bn, eps=net.bn_epsilon))
            else:
                conv.set_weights([kernel])
                trunk.get_layer(bn_name).set_weights(bn)


def build_aisfx_network(arrays: dict[str, np.ndarray] | None = None, *, with_frontend: bool = True,
                        net: ConvNetParams = AISFX_NET,
                        frontend: AisfxFrontendParams = AISFX_FRONTEND,
                        window_samples: int | None = None, fold_batchnorm: bool = False):
    """The aisfx teacher as a Keras model.

    Parameters
    ----------
    arrays : dict, optional
        npz-layout weights (:func:`load_weights_npz`); ``None`` leaves the
        network freshly initialised.
    with_frontend : bool
        ``True``: input ``(B, window_samples)`` 44.1-kHz audio through
        ``AisfxLogMel``; ``False``: input ``(B, 100, 96, 1)`` log-mel.
    window_samples : int, optional
        Audio window (default ``frontend.window_samples``, the native 100-frame block);
        the block then holds all ``frontend.n_frames(window_samples)`` frames (e.g.
        44,100 samples = 1 s -> 45 frames). The trunk runs on any block of >= 8 frames.
    fold_batchnorm : bool
        The inference form of the trunk (BatchNorm folded into the convs,
        :func:`build_aisfx_trunk`); ``False`` keeps the checkpoint's layers one for one.

    Returns
    -------
    keras.Model
        Output ``(B, 512)``.
    """
    import dataclasses

    import keras

    if window_samples is not None and int(window_samples) != frontend.window_samples:
        frontend = dataclasses.replace(frontend, block_frames=frontend.n_frames(int(window_samples)))
    trunk = build_aisfx_trunk(net=net, frontend=frontend, fold_batchnorm=fold_batchnorm)
    if arrays is not None:
        set_aisfx_weights(trunk, arrays, net=net)
    if not with_frontend:
        return trunk
    try:
        from sea_core.models.layers import AisfxLogMel
    except ImportError as exc:  # pragma: no cover - layers.py is part of the package
        raise ModelError(f"the aisfx front-end layer is unavailable ({exc})") from exc
    inp = keras.Input((int(window_samples or frontend.window_samples),), name="audio")
    x = AisfxLogMel(frontend, name="aisfx_logmel")(inp)
    out = trunk(x)
    return keras.Model(inp, out, name="aisfx")
