"""Conversion of a SEA student to a full-int8 ``.tflite``, and the int4 filter options.

* :func:`load_student` / :func:`student_trunk`: the ``.keras`` student and the network to
  convert (the log-mel trunk by default, the audio-input model with ``include_frontend``),
  with its :class:`~sea_core.params.StudentSpec`. The window length in samples is the
  training set's (one source): a log-mel-input model only knows its frame count.
* :func:`convert_int8`: ``TFLiteConverter.from_keras_model`` with int8 input/output and
  per-channel weights; the op list and tensor dtypes are asserted afterwards.
* :func:`to_int4` / :func:`weight_ops` / :func:`split_conv_groups`: flatbuffer surgery for
  int4 per-channel filters (optionally split into output-channel groups).
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
from pathlib import Path

import numpy as np

from sea_core.deploy.graph import assert_full_int8, inspect_model, op_name, pack_model, prune, unpack
from sea_core.errors import DataError, DeployError, ParameterError
from sea_core.params import StudentSpec

__all__ = ["load_student", "student_trunk", "convert_int8", "weight_ops", "to_int4",
           "split_conv_groups"]


# --------------------------------------------------------------------------- model
def _batch1(model):
    """The same network with a static batch of 1 (static RESHAPE, no SHAPE/PACK chain)."""
    import keras

    inp = keras.Input(shape=tuple(model.input.shape[1:]), batch_size=1, dtype="float32",
                      name=model.input.name if hasattr(model.input, "name") else "input")
    return keras.Model(inp, model(inp), name=f"{model.name}_b1")


def load_student(model_or_path):
    """The student Keras model from a model or a ``.keras`` path.

    Raises
    ------
    ParameterError
        The file is missing, is not a ``.keras`` file or not a SEA student.
    """
    import keras  # noqa: F401  (TensorFlow is initialised (and its C++ log set up) before any check)

    if isinstance(model_or_path, (str, os.PathLike)):
        from sea_core.models.store import load_keras_student

        path = Path(model_or_path)
        if not path.exists():
            raise ParameterError(f"{path}: no such model file")
        if path.is_file() and path.suffix.lower() != ".keras":
            raise ParameterError(f"{path}: not a .keras model file (suffix {path.suffix!r})")
        # corrupt / text / Lambda (refused by Keras' safe mode) archives -> one-line ModelError
        model = load_keras_student(path)
    else:
        model = model_or_path
    names = {l.name for l in model.layers}
    if "audio_embedding_layer" not in names and not any(
            "audio_embedding_layer" in {x.name for x in getattr(l, "layers", [])} for l in model.layers):
        raise ParameterError(f"{model.name}: not a SEA student (no 'audio_embedding_layer')")
    return model


def student_trunk(model, *, window_samples: int, include_frontend: bool = False,
                  where: str = "training set"):
    """(network to convert, StudentSpec) of a loaded student whose windows hold ``window_samples``.

    ``window_samples`` is the training set's window length in 8-kHz samples
    (:func:`sea_core.deploy.data.training_window_samples`). A model whose input is audio (the
    exported form) is cut back to its log-mel trunk by rebuilding :func:`build_student`
    without the front-end and copying every weighted layer by name; ``include_frontend=True``
    keeps the audio input. A log-mel-input model only fixes its frame count: several window
    lengths give the same count (18,390 and 18,400 samples both give 115 frames), so the
    window is the training set's, checked against the frame count. ``where`` names the
    training set in errors.

    Raises
    ------
    ParameterError
        Not a log-mel or audio input, a layer is missing, or ``include_frontend`` on a
        log-mel model.
    DataError
        The window does not give the model's input length.
    """
    from sea_core.models.students import PROJECTION_LAYER, build_student
    from sea_core.params import STUDENT_MEL64

    rank = len(model.input.shape)
    names = {l.name for l in model.layers}
    emb_dim = int(model.output.shape[-1])
    head = "linear" if PROJECTION_LAYER in names else "relu"
    spec = StudentSpec(emb_dim=emb_dim, head=head,
                       window_seconds=int(window_samples) / STUDENT_MEL64.sample_rate)
    if rank == 4:
        n_frames = int(model.input.shape[2])
        if include_frontend:
            raise ParameterError(f"{model.name} takes log-mel input; it has no front-end to include")
        if STUDENT_MEL64.n_frames(spec.window_samples) != n_frames:
            raise DataError(f"{where}: student_audio holds {spec.window_samples} samples per window "
                            f"({STUDENT_MEL64.n_frames(spec.window_samples)} log-mel frames), "
                            f"{model.name} takes {n_frames} frames")
        return model, spec
    if rank != 2:
        raise ParameterError(f"{model.name}: input shape {model.input.shape} is neither audio nor log-mel")
    if int(model.input.shape[1]) != spec.window_samples:
        raise DataError(f"{where}: student_audio holds {spec.window_samples} samples per "
                        f"window, the model expects {int(model.input.shape[1])}")
    if include_frontend:
        return model, spec
    trunk = build_student(spec, with_frontend=False)
    src = {l.name: l for l in model.layers}
    for layer in trunk.layers:
        if layer.weights:
            if layer.name not in src:
                raise ParameterError(f"{model.name}: layer {layer.name!r} of the trunk is missing")
            layer.set_weights(src[layer.name].get_weights())
    return trunk, spec


# --------------------------------------------------------------------------- conversion
def convert_int8(model, representative: np.ndarray) -> bytes:
    """Full-integer int8 ``.tflite`` (int8 I/O, per-channel weights), dtypes and ops asserted.

    Raises
    ------
    DeployError
        The converter fails or leaves float ops / tensors in the model.
    """
    import tensorflow as tf

    m1 = _batch1(model)
    rep = np.asarray(representative, dtype=np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(m1)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # the Keras export banner
            data = conv.convert()
    except Exception as exc:  # noqa: BLE001  (the converter raises many types)
        raise DeployError(f"TFLite conversion of {model.name} failed: {exc}") from exc
    assert_full_int8(inspect_model(data), where=model.name)
    return bytes(data)


# --------------------------------------------------------------------------- int4 weights
def weight_ops(model_bytes: bytes) -> list[tuple[int, str, int]]:
    """(op index, op, filter elements) of every CONV_2D / FULLY_CONNECTED with an int8 filter."""
    model_t = unpack(model_bytes)
    sg = model_t.subgraphs[0]
    out = []
    for i, op in enumerate(sg.operators):
        name = op_name(model_t, op)
        if name in ("CONV_2D", "FULLY_CONNECTED"):
            t = sg.tensors[op.inputs[1]]
            from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
            if t.type == schema.TensorType.INT8:
                out.append((i, name, int(np.prod(t.shape))))
    return out


def to_int4(model_bytes: bytes, op_indices) -> bytes:
    """Re-quantise the filters of ``op_indices`` to per-channel symmetric int4 (TFLite INT4, packed).

    The int8 filter is dequantised with its per-channel scales, re-quantised to
    [-8, 7] with ``scale4 = max|w| / 7`` per output channel and packed two per
    byte (low nibble first, the TFLite INT4 layout). The int32 bias is rescaled
    to the new ``input_scale * scale4``. TFLM and the TFLite reference kernels
    unpack int4 filters themselves; activations stay int8.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    m = unpack(model_bytes)
    sg = m.subgraphs[0]
    for oi in op_indices:
        op = sg.operators[oi]
        ft = sg.tensors[op.inputs[1]]
        if ft.type != schema.TensorType.INT8:
            raise DeployError(f"op {oi}: filter is not int8")
        n_ch = int(ft.shape[0])
        w = np.asarray(m.buffers[ft.buffer].data, dtype=np.uint8).view(np.int8).astype(np.float64)
        w = w.reshape(n_ch, -1)
        s8 = np.asarray(ft.quantization.scale, dtype=np.float64)
        if s8.size == 1:
            s8 = np.repeat(s8, n_ch)
        wf = w * s8[:, None]
        s4 = np.maximum(np.abs(wf).max(axis=1), 1e-12) / 7.0
        q4 = np.clip(np.round(wf / s4[:, None]), -8, 7).astype(np.int8).ravel()
        if q4.size % 2:
            q4 = np.append(q4, np.int8(0))
        packed = ((q4[0::2].astype(np.uint8) & 0x0F) | ((q4[1::2].astype(np.uint8) & 0x0F) << 4))
        m.buffers[ft.buffer].data = packed.astype(np.uint8)
        ft.type = schema.TensorType.INT4
        ft.quantization.scale = s4.astype(np.float32).tolist()
        ft.quantization.zeroPoint = [0] * n_ch
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bt = sg.tensors[op.inputs[2]]
            bias = np.asarray(m.buffers[bt.buffer].data, dtype=np.uint8).view(np.int32).astype(np.float64)
            old = np.asarray(bt.quantization.scale, dtype=np.float64)
            new = old * s4 / s8
            m.buffers[bt.buffer].data = np.round(bias * old / new).astype(np.int32).view(np.uint8)
            bt.quantization.scale = new.astype(np.float32).tolist()
    return pack_model(m)


# --------------------------------------------------------------------------- output-channel groups
def split_conv_groups(model_bytes: bytes, groups: dict[int, int]) -> tuple[bytes, list[int]]:
    """Split CONV_2D ops into output-channel groups joined by a CONCATENATION.

    ``groups`` maps an op index of ``model_bytes`` to a number of groups ``G``
    (which must divide its output channels). Op ``i`` becomes ``G`` CONV_2D ops
    reading the same input, each with ``C/G`` filters, their slice of the int32
    bias and of the per-channel scales, and an output tensor with the original
    output's (per-tensor) scale and zero point, then one CONCATENATION on the
    channel axis writing the original output tensor. Every output channel is
    computed by exactly the same integer arithmetic and the concatenation of
    equally quantised int8 tensors is a copy, so the result is bit-exact with
    the ungrouped model.

    Why: TFLM unpacks an int4 filter into an arena scratch buffer of its int8
    size for the duration of the op; with groups the scratch of one op is
    ``1/G`` of the filter, so int4 filters stop dominating the arena.

    Returns (model bytes, indices of the new CONV_2D ops in the new graph).
    Filters must still be int8 (call :func:`to_int4` on the returned indices).
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    m = unpack(model_bytes)
    sg = m.subgraphs[0]
    concat_code = None
    for ci, oc in enumerate(m.operatorCodes):
        if max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)) == schema.BuiltinOperator.CONCATENATION:
            concat_code = ci
    if concat_code is None and groups:
        oc = schema.OperatorCodeT()
        oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CONCATENATION
        oc.version = 2
        m.operatorCodes.append(oc)
        concat_code = len(m.operatorCodes) - 1

    def new_buffer(data: np.ndarray) -> int:
        buf = schema.BufferT()
        buf.data = np.ascontiguousarray(data).view(np.uint8).ravel()
        m.buffers.append(buf)
        return len(m.buffers) - 1

    def new_tensor(like, shape, buffer: int, name: str, scale=None, zp=None) -> int:
        t = copy.deepcopy(like)
        t.shape = np.array(shape, dtype=np.int32)
        t.shapeSignature = None
        t.buffer = buffer
        t.name = name.encode()
        if scale is not None:
            t.quantization.scale = list(scale)
            t.quantization.zeroPoint = list(zp)
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    new_ops, new_conv = [], []
    for i, op in enumerate(sg.operators):
        g = groups.get(i, 1)
        if g <= 1:
            new_ops.append(op)
            continue
        if op_name(m, op) != "CONV_2D":
            raise DeployError(f"op {i} is {op_name(m, op)}, only CONV_2D can be split into groups")
        ft = sg.tensors[op.inputs[1]]
        if ft.type != schema.TensorType.INT8:
            raise DeployError(f"op {i}: split the int8 filter before re-quantising it")
        c_out = int(ft.shape[0])
        if c_out % g:
            raise DeployError(f"op {i}: {g} groups do not divide {c_out} output channels")
        cg = c_out // g
        w = np.asarray(m.buffers[ft.buffer].data, dtype=np.uint8).view(np.int8).reshape(c_out, -1)
        fs = np.asarray(ft.quantization.scale, dtype=np.float32)
        fz = np.asarray(ft.quantization.zeroPoint, dtype=np.int64)
        if fs.size == 1:
            fs, fz = np.repeat(fs, c_out), np.repeat(fz, c_out)
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        if has_bias:
            bt = sg.tensors[op.inputs[2]]
            bias = np.asarray(m.buffers[bt.buffer].data, dtype=np.uint8).view(np.int32)
            bs = np.asarray(bt.quantization.scale, dtype=np.float32)
            bz = np.asarray(bt.quantization.zeroPoint, dtype=np.int64)
        yt = sg.tensors[op.outputs[0]]
        y_shape = [int(d) for d in yt.shape]
        base_name = (ft.name.decode() if isinstance(ft.name, bytes) else str(ft.name))
        outs = []
        for k in range(g):
            sl = slice(k * cg, (k + 1) * cg)
            f_idx = new_tensor(ft, [cg] + [int(d) for d in ft.shape[1:]],
                               new_buffer(w[sl].copy()), f"{base_name}/g{k}", fs[sl], fz[sl])
            ins = [op.inputs[0], f_idx]
            if has_bias:
                ins.append(new_tensor(bt, [cg], new_buffer(bias[sl].copy()), f"{base_name}/bias_g{k}",
                                      bs[sl], bz[sl]))
            o_idx = new_tensor(yt, y_shape[:-1] + [cg], 0, f"{base_name}/out_g{k}")
            gop = copy.deepcopy(op)
            gop.inputs, gop.outputs = ins, [o_idx]
            new_conv.append(len(new_ops))
            new_ops.append(gop)
            outs.append(o_idx)
        cat = schema.OperatorT()
        cat.opcodeIndex = concat_code
        cat.inputs, cat.outputs = outs, [op.outputs[0]]
        cat.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
        cat.builtinOptions = schema.ConcatenationOptionsT()
        cat.builtinOptions.axis = len(y_shape) - 1
        new_ops.append(cat)
    sg.operators = new_ops
    prune(m)
    return pack_model(m), new_conv
