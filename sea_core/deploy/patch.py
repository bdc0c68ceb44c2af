"""Patch-based inference of the first blocks of an int8 student (MCUNetV2, NeurIPS 2021).

The full-int8 ``.tflite`` is cut, by flatbuffer surgery, into two models that
keep every weight and every quantisation parameter of the original:

* **stage A** = the ops up to a chosen 2x2 max-pool (the memory-hungry early
  blocks), with the input and all intermediate shapes shrunk to one *patch*
  of the log-mel (mel x time window plus the receptive-field halo);
* **stage B** = the remaining ops, whose input is the full pooled map.

Stage A runs once per patch; from each patch only the output pixels whose
receptive field lies inside the patch (or reaches the true image border, where
the per-layer 'same' zero padding is then the same as in the full network) are
copied into the stitched map, which is stage B's input. Because the int8
arithmetic of every output pixel only depends on its receptive field and the
quantisation parameters are unchanged, the stitched result is bit-exact with the
unpatched int8 network (checked by :func:`run_patched` callers and the tests).

Peak RAM of the patched network (MCUNetV2 accounting, the stages run one after
the other) = max(arena_A + stitched map, arena_B).
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from sea_core.deploy_tflm import op_name, unpack
from sea_core.errors import DeployError

__all__ = ["Layer", "PatchPlan", "graph_layers", "plan_patches", "split_model", "run_patched",
           "pack_model", "estimate_peak", "weight_ops", "to_int4", "split_conv_groups"]

_ELEMENTWISE = {"ADD", "MUL", "SUB", "RELU", "RELU6", "QUANTIZE", "MAXIMUM", "MINIMUM"}


@dataclass(frozen=True)
class Layer:
    """Spatial behaviour of one op (NHWC): kernel, stride, padding per axis, output channels."""

    op: str
    k: tuple[int, int]
    s: tuple[int, int]
    same: bool
    c_out: int
    macs_per_out: int
    """MACs per output element (kh*kw*c_in for CONV_2D, 0 for pools / element-wise)."""

    def out_size(self, n: int, axis: int) -> int:
        k, s = self.k[axis], self.s[axis]
        return math.ceil(n / s) if self.same else (n - k) // s + 1

    def pad_before(self, n: int, axis: int) -> int:
        if not self.same:
            return 0
        out = self.out_size(n, axis)
        return max((out - 1) * self.s[axis] + self.k[axis] - n, 0) // 2


def graph_layers(model_bytes: bytes) -> list[Layer]:
    """:class:`Layer` of every op of a single-subgraph model, in order."""
    model_t = unpack(model_bytes)
    sg = model_t.subgraphs[0]
    out = []
    for op in sg.operators:
        name = op_name(model_t, op)
        shape_out = [int(d) for d in sg.tensors[op.outputs[0]].shape]
        c_out = shape_out[-1] if shape_out else 0
        if name == "CONV_2D":
            o = op.builtinOptions
            _, kh, kw, ci = (int(d) for d in sg.tensors[op.inputs[1]].shape)
            out.append(Layer(name, (kh, kw), (o.strideH, o.strideW), o.padding == 0, c_out,
                             kh * kw * ci))
        elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            o = op.builtinOptions
            out.append(Layer(name, (o.filterHeight, o.filterWidth), (o.strideH, o.strideW),
                             o.padding == 0, c_out, 0))
        elif name in _ELEMENTWISE or name == "CONCATENATION":
            # CONCATENATION (of output-channel groups, see split_conv_groups) keeps H, W
            out.append(Layer(name, (1, 1), (1, 1), False, c_out, 0))
        else:
            out.append(Layer(name, (0, 0), (0, 0), False, c_out, 0))
    return out


def _patchable(layers: list[Layer]) -> bool:
    return all(l.op in _ELEMENTWISE or l.op in ("CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D")
               for l in layers)


def _sizes(layers: list[Layer], n: int, axis: int) -> list[int]:
    """Size along ``axis`` at the input of each layer, then the final output (len+1)."""
    sizes = [n]
    for l in layers:
        sizes.append(l.out_size(sizes[-1], axis))
    return sizes


def estimate_peak(layers: list[Layer], hw: tuple[int, int], c_in: int) -> int:
    """int8 bytes of (input + output) of the largest op of a linear chain (a lower bound of the arena)."""
    h, w, c = hw[0], hw[1], c_in
    peak = 0
    for l in layers:
        if l.k == (0, 0):          # reshape / shape ops after the trunk: negligible
            break
        h2, w2 = l.out_size(h, 0), l.out_size(w, 1)
        if l.op == "CONV_2D":               # a channel group reads the full input, not the last group
            c = l.macs_per_out // (l.k[0] * l.k[1])
        peak = max(peak, h * w * c + h2 * w2 * l.c_out)
        h, w, c = h2, w2, l.c_out
    return peak


def _macs(layers: list[Layer], hw: tuple[int, int]) -> int:
    h, w = hw
    total = 0
    for l in layers:
        if l.k == (0, 0):
            break
        h, w = l.out_size(h, 0), l.out_size(w, 1)
        total += h * w * l.c_out * l.macs_per_out
    return total


def _valid_outputs(layers: list[Layer], axis: int, n_full: int, a: int, p: int) -> range:
    """Output indices (stage-A output coordinates) that the patch [a, a+p) computes exactly."""
    full = _sizes(layers, n_full, axis)
    part = _sizes(layers, p, axis)
    # offset of the patch at every layer input; must stay integral
    offs = [a]
    for l in layers:
        if l.same and l.pad_before(full[len(offs) - 1], axis) != l.pad_before(part[len(offs) - 1], axis):
            return range(0)
        o = offs[-1]
        if o % l.s[axis]:
            return range(0)
        offs.append(o // l.s[axis])
    good = []
    for j in range(offs[-1], offs[-1] + part[-1]):
        lo = hi = j
        ok = True
        for i in range(len(layers) - 1, -1, -1):
            l = layers[i]
            pad = l.pad_before(full[i], axis)
            lo, hi = lo * l.s[axis] - pad, hi * l.s[axis] - pad + l.k[axis] - 1
            if l.k[axis] == 0:
                ok = False
                break
            start, end = offs[i], offs[i] + part[i]
            if (lo < 0 and start != 0) or (lo >= 0 and lo < start):
                ok = False
            if (hi >= full[i] and end != full[i]) or (hi < full[i] and hi >= end):
                ok = False
            if not ok:
                break
        if ok:
            good.append(j)
    if not good:
        return range(0)
    # keep the contiguous run (it always is for conv/pool chains)
    return range(good[0], good[-1] + 1)


def _axis_plan(layers: list[Layer], axis: int, n_full: int, p: int) -> list[tuple[int, range]] | None:
    """Patch starts along one axis and the output rows each one owns; None if it cannot cover."""
    n_out = _sizes(layers, n_full, axis)[-1]
    if p >= n_full:
        r = _valid_outputs(layers, axis, n_full, 0, n_full)
        return [(0, r)] if len(r) == n_out else None
    align = int(np.prod([l.s[axis] for l in layers]))
    starts = list(range(0, n_full - p + 1, align))
    cands = {a: _valid_outputs(layers, axis, n_full, a, p) for a in starts}
    plan, nxt = [], 0
    while nxt < n_out:
        best = None
        for a, r in cands.items():
            if nxt in r and (best is None or r.stop > cands[best].stop):
                best = a
        if best is None:
            return None
        plan.append((best, range(nxt, cands[best].stop)))
        nxt = cands[best].stop
    return plan


@dataclass(frozen=True)
class PatchPlan:
    """Where to cut the graph and how to tile its input."""

    split: int
    """Stage A = ops[:split], stage B = ops[split:]."""
    patch: tuple[int, int]
    """(mel, time) size of one stage-A input patch."""
    rows: tuple[tuple[int, int, int], ...]
    """(patch start, first owned output row, end) along mel."""
    cols: tuple[tuple[int, int, int], ...]
    est_peak_a: int
    est_peak_b: int
    stitch_bytes: int
    macs: int
    """MACs of the whole patched network (stage A x patches + stage B)."""
    stride: tuple[int, int]
    """Total (mel, time) stride of stage A: patch starts divided by it give output offsets."""

    @property
    def n_patches(self) -> int:
        return len(self.rows) * len(self.cols)

    def as_dict(self) -> dict:
        return {"split_op": self.split, "patch": list(self.patch), "n_patches": self.n_patches,
                "rows": [list(r) for r in self.rows], "cols": [list(c) for c in self.cols],
                "stitch_bytes": self.stitch_bytes, "macs": self.macs}


def plan_patches(model_bytes: bytes, *, peak_goal: int, split: int | None = None,
                 patch: tuple[int, int] | None = None) -> PatchPlan:
    """Choose the split point and patch size with the fewest MACs whose estimated peak fits.

    Every split after a 2x2 max-pool (not the final global pool) and every patch
    size that tiles the input exactly are tried; estimated peak RAM =
    max(stage-A activations + stitched map, stage-B activations) must be <=
    ``peak_goal``; among those the smallest total MACs wins (ties: larger
    patches). If nothing fits, the smallest estimated peak is returned.

    Raises
    ------
    DeployError
        The graph holds an op that cannot be patched before the first pool.
    """
    layers = graph_layers(model_bytes)
    model_t = unpack(model_bytes)
    sg = model_t.subgraphs[0]
    _, h_full, w_full, c_in = (int(d) for d in sg.tensors[sg.inputs[0]].shape)
    pools = [i + 1 for i, l in enumerate(layers)
             if l.op == "MAX_POOL_2D" and l.k == l.s and l.k != (0, 0)]
    splits = [s for s in pools if _patchable(layers[:s]) and s < len(layers)
              and _sizes(layers[:s], h_full, 0)[-1] > 1]
    if split is not None:
        splits = [split]
    if not splits:
        raise DeployError("no patchable prefix (conv / pool / element-wise ops up to a 2x2 pool)")
    best, best_key = None, None
    for s in splits:
        la, lb = layers[:s], layers[s:]
        ho, wo = _sizes(la, h_full, 0)[-1], _sizes(la, w_full, 1)[-1]
        stitch = ho * wo * la[-1].c_out
        peak_b = estimate_peak(lb, (ho, wo), la[-1].c_out)
        macs_b = _macs(lb, (ho, wo))
        hs = [patch[0]] if patch else range(4, h_full + 1)
        ws = [patch[1]] if patch else range(4, w_full + 1)
        row_plans = {p: _axis_plan(la, 0, h_full, p) for p in hs}
        col_plans = {p: _axis_plan(la, 1, w_full, p) for p in ws}
        for ph, rp in row_plans.items():
            if rp is None:
                continue
            for pw, cp in col_plans.items():
                if cp is None:
                    continue
                peak_a = estimate_peak(la, (ph, pw), c_in)
                peak = max(peak_a + stitch, peak_b)
                macs = len(rp) * len(cp) * _macs(la, (ph, pw)) + macs_b
                fits = peak <= peak_goal
                key = (0, macs, -ph * pw) if fits else (1, peak, macs)
                if best_key is None or key < best_key:
                    best_key = key
                    best = PatchPlan(split=s, patch=(ph, pw),
                                     rows=tuple((a, r.start, r.stop) for a, r in rp),
                                     cols=tuple((a, r.start, r.stop) for a, r in cp),
                                     est_peak_a=peak_a, est_peak_b=peak_b, stitch_bytes=stitch,
                                     macs=macs, stride=(
                                         int(np.prod([l.s[0] for l in la])),
                                         int(np.prod([l.s[1] for l in la]))))
    if best is None:
        raise DeployError("no patch size tiles the input exactly")
    return best


# --------------------------------------------------------------------------- flatbuffer surgery
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


def _prune(model_t) -> None:
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


def _const(model_t, t) -> bool:
    b = model_t.buffers[t.buffer]
    return b.data is not None and len(b.data) > 0


def split_model(model_bytes: bytes, plan: PatchPlan) -> tuple[bytes, bytes]:
    """(stage A for one patch, stage B) as standalone ``.tflite`` bytes sharing the original quantisation."""
    layers = graph_layers(model_bytes)
    base = unpack(model_bytes)

    a = copy.deepcopy(base)
    sg = a.subgraphs[0]
    ops = sg.operators[:plan.split]
    sg.operators = ops
    sg.outputs = [ops[-1].outputs[0]]
    t_in = sg.tensors[sg.inputs[0]]
    h, w = plan.patch
    t_in.shape = np.array([1, h, w, int(t_in.shape[-1])], dtype=np.int32)
    t_in.shapeSignature = None
    for op, l in zip(ops, layers[:plan.split]):
        h, w = l.out_size(h, 0), l.out_size(w, 1)
        for o in op.outputs:
            t = sg.tensors[o]
            t.shape = np.array([1, h, w, int(t.shape[-1])], dtype=np.int32)
            t.shapeSignature = None
    _prune(a)

    b = copy.deepcopy(base)
    sg = b.subgraphs[0]
    cut = sg.operators[plan.split - 1].outputs[0]
    sg.operators = sg.operators[plan.split:]
    sg.inputs = [cut]
    _prune(b)
    return pack_model(a), pack_model(b)


def run_patched(x_int8: np.ndarray, plan: PatchPlan, run_a, run_b) -> np.ndarray:
    """Run one int8 input [1, H, W, C] through stage A per patch, stitch, then stage B.

    ``run_a`` / ``run_b`` map an int8 array (batch 1) to the stage's int8 output.
    """
    ph, pw = plan.patch
    n_r, n_c = plan.rows[-1][2], plan.cols[-1][2]
    stitched = None
    for ra, r0, r1 in plan.rows:
        for ca, c0, c1 in plan.cols:
            y = run_a(np.ascontiguousarray(x_int8[:, ra:ra + ph, ca:ca + pw, :]))
            if stitched is None:
                stitched = np.zeros((1, n_r, n_c, y.shape[-1]), dtype=np.int8)
            oa_r, oa_c = ra // plan.stride[0], ca // plan.stride[1]
            stitched[:, r0:r1, c0:c1, :] = y[:, r0 - oa_r:r1 - oa_r, c0 - oa_c:c1 - oa_c, :]
    return run_b(stitched)


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
    _prune(m)
    return pack_model(m), new_conv
