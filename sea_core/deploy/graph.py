"""The ``.tflite`` flatbuffer of a deployment: read, inspect, write back.

* :func:`inspect_model` reads a ``.tflite`` flatbuffer: op list, tensor dtypes,
  MACs per invocation (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) and the
  input/output quantisation.
* :func:`assert_full_int8` rejects a model in which any float op or float
  activation survived the conversion (``supported_ops=[TFLITE_BUILTINS_INT8]``
  does not guarantee it, ``../shared/docs/dependencies.md`` section 3).
* :func:`quantize_input` / :func:`dequantize_output`: float <-> int8 with a tensor's
  scale and zero point (the host side of every int8 run: verification, evaluation).
* :func:`unpack` / :func:`pack_model`: the mutable object form used by the graph surgery
  of :mod:`sea_core.deploy.patch` and :mod:`sea_core.deploy.convert` (int4, groups).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from sea_core.errors import DeployError

__all__ = ["ModelInfo", "TensorInfo", "inspect_model", "assert_full_int8", "quantize_input",
           "dequantize_output", "op_name", "unpack", "pack_model", "prune", "INT8_OK_OPS"]


INT8_OK_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "RESHAPE", "ADD", "MUL", "SUB", "RELU", "RELU6", "CONCATENATION", "STRIDED_SLICE",
    "SHAPE", "PACK", "PAD", "PADV2", "MEAN", "REDUCE_MAX", "SQUEEZE", "TRANSPOSE",
    "QUANTIZE", "DEQUANTIZE", "SOFTMAX", "LOGISTIC", "TANH", "MAXIMUM", "MINIMUM",
})
"""Ops accepted in a full-int8 model (QUANTIZE/DEQUANTIZE only int8<->int8 or on int32 shapes)."""

_INTEGER_TYPES = {"INT8", "INT32", "INT64", "INT16", "BOOL"}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    return schema


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def op_name(model_t, op) -> str:
    """Builtin op name of operator ``op`` in the unpacked model ``model_t``."""
    from tflite_micro.python.tflite_micro import runtime
    schema = _schema()
    code = runtime.get_builtin_code_from_operator_code(model_t.operatorCodes[op.opcodeIndex])
    return _enum_names(schema.BuiltinOperator).get(code, f"BUILTIN_{code}")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None
    zero_point: int | None


@dataclass(frozen=True)
class ModelInfo:
    """What a converted model contains (figures of ``deploy_report.json``)."""

    n_bytes: int
    ops: tuple[str, ...]
    """Op of every operator in execution order."""
    macs: int
    """Multiply-accumulates per invocation of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED."""
    macs_by_op: tuple[tuple[str, int], ...]
    activation_dtypes: dict[str, int]
    """Count of non-constant tensors by dtype."""
    weight_bytes: int
    """Bytes of constant buffers (weights, biases, quantisation-free constants)."""
    input: TensorInfo
    output: TensorInfo

    @property
    def op_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.ops:
            out[o] = out.get(o, 0) + 1
        return out


def unpack(model_bytes: bytes):
    from tflite_micro.python.tflite_micro import runtime
    return runtime.convert_bytearray_to_object(bytearray(model_bytes))


def _tensor_info(model_t, sg, idx: int) -> TensorInfo:
    schema = _schema()
    t = sg.tensors[idx]
    q = t.quantization
    scale = zp = None
    if q is not None and q.scale is not None and len(q.scale) == 1:
        scale, zp = float(q.scale[0]), int(q.zeroPoint[0])
    return TensorInfo(name=t.name.decode() if isinstance(t.name, bytes) else str(t.name),
                      shape=tuple(int(d) for d in t.shape),
                      dtype=_enum_names(schema.TensorType)[t.type], scale=scale, zero_point=zp)


def _is_constant(model_t, t) -> bool:
    buf = model_t.buffers[t.buffer] if t.buffer < len(model_t.buffers) else None
    return buf is not None and buf.data is not None and len(buf.data) > 0


def _op_macs(model_t, sg, op, name: str) -> int:
    def shape(i):
        return [int(d) for d in sg.tensors[i].shape]
    if name == "CONV_2D":
        o, kh, kw, ci = shape(op.inputs[1])
        n_out = int(np.prod(shape(op.outputs[0])))
        return n_out * kh * kw * ci
    if name == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = shape(op.inputs[1])
        return int(np.prod(shape(op.outputs[0]))) * kh * kw
    if name == "FULLY_CONNECTED":
        units, depth = shape(op.inputs[1])
        rows = int(np.prod(shape(op.outputs[0]))) // units
        return rows * units * depth
    return 0


def inspect_model(model_bytes: bytes) -> ModelInfo:
    """Op list, MACs, dtypes and I/O quantisation of a single-subgraph ``.tflite``.

    Raises
    ------
    DeployError
        The model has more than one subgraph or more than one input/output.
    """
    model_t = unpack(model_bytes)
    if len(model_t.subgraphs) != 1:
        raise DeployError(f"expected one subgraph, found {len(model_t.subgraphs)}")
    sg = model_t.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise DeployError(f"expected one input and one output, found {len(sg.inputs)} / "
                          f"{len(sg.outputs)}")
    ops, macs_by_op = [], []
    for op in sg.operators:
        name = op_name(model_t, op)
        ops.append(name)
        macs = _op_macs(model_t, sg, op, name)
        if macs:
            macs_by_op.append((name, macs))
    dtypes: dict[str, int] = {}
    weight_bytes = 0
    names = _enum_names(_schema().TensorType)
    for t in sg.tensors:
        if _is_constant(model_t, t):
            continue
        key = names[t.type]
        dtypes[key] = dtypes.get(key, 0) + 1
    for b in model_t.buffers:
        if b.data is not None:
            weight_bytes += len(b.data)
    return ModelInfo(n_bytes=len(model_bytes), ops=tuple(ops),
                     macs=int(sum(m for _, m in macs_by_op)), macs_by_op=tuple(macs_by_op),
                     activation_dtypes=dtypes, weight_bytes=weight_bytes,
                     input=_tensor_info(model_t, sg, sg.inputs[0]),
                     output=_tensor_info(model_t, sg, sg.outputs[0]))


def assert_full_int8(info: ModelInfo, *, where: str = "model") -> None:
    """Raise :class:`DeployError` unless every op and activation is integer.

    Checks: input and output tensors are INT8 with one scale/zero point; no
    FLOAT* (or other non-integer) activation tensor; every op is in
    :data:`INT8_OK_OPS` (so e.g. ``RFFT2D``, ``LOG`` or a float ``DEQUANTIZE``
    chain is rejected with the op named).
    """
    problems = []
    for role, t in (("input", info.input), ("output", info.output)):
        if t.dtype != "INT8" or t.scale is None:
            problems.append(f"{role} tensor {t.name!r} is {t.dtype} (want per-tensor INT8)")
    floats = {k: v for k, v in info.activation_dtypes.items() if k not in _INTEGER_TYPES}
    if floats:
        problems.append(f"non-integer activation tensors {floats}")
    bad = sorted(set(info.ops) - INT8_OK_OPS)
    if bad:
        problems.append(f"ops outside the int8 set: {bad}")
    if problems:
        raise DeployError(f"{where} is not a full-int8 model: " + "; ".join(problems)
                          + f" (ops: {dict(info.op_counts)})")


# --------------------------------------------------------------------------- quantisation helpers
def quantize_input(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    """float -> int8 with the tensor's scale / zero point: round(x / scale) + zero point (numpy rounds
    half to even), saturated to [-128, 127]."""
    q = np.round(np.asarray(x, dtype=np.float64) / t.scale) + t.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def dequantize_output(y: np.ndarray, t: TensorInfo) -> np.ndarray:
    return ((np.asarray(y, dtype=np.float32) - t.zero_point) * t.scale).astype(np.float32)


# --------------------------------------------------------------------------- flatbuffer writing
def pack_model(model_t) -> bytes:
    """Serialise a ModelT and re-align its buffers (16 bytes) with TFLM's own aligner."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aligner

    b = flatbuffers.Builder(1024)
    b.Finish(model_t.Pack(b), file_identifier=b"TFL3")
    raw = bytes(b.Output())
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.tflite"), os.path.join(d, "out.tflite")
        with open(src, "wb") as f:
            f.write(raw)
        aligner.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()


def prune(model_t) -> None:
    """Drop tensors and buffers no operator references; remap indices."""
    sg = model_t.subgraphs[0]
    used = set(sg.inputs) | set(sg.outputs)
    for op in sg.operators:
        used |= {i for i in op.inputs if i >= 0} | {i for i in op.outputs if i >= 0}
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}
    sg.tensors = [sg.tensors[i] for i in keep]
    sg.inputs = [remap[i] for i in sg.inputs]
    sg.outputs = [remap[i] for i in sg.outputs]
    for op in sg.operators:
        op.inputs = [remap[i] if i >= 0 else i for i in op.inputs]
        op.outputs = [remap[i] for i in op.outputs]
        op.intermediates = None
    bufs = sorted({0} | {t.buffer for t in sg.tensors})
    bremap = {old: new for new, old in enumerate(bufs)}
    model_t.buffers = [model_t.buffers[i] for i in bufs]
    for t in sg.tensors:
        t.buffer = bremap[t.buffer]
    model_t.metadata = None
    model_t.signatureDefs = None
