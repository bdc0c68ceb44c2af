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
from dataclasses import dataclass

import numpy as np

from sea_core.deploy.graph import op_name, pack_model, prune, unpack
from sea_core.errors import DeployError

__all__ = ["Layer", "PatchPlan", "graph_layers", "plan_patches", "split_model", "run_patched",
           "estimate_peak"]

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
    prune(a)

    b = copy.deepcopy(base)
    sg = b.subgraphs[0]
    cut = sg.operators[plan.split - 1].outputs[0]
    sg.operators = sg.operators[plan.split:]
    sg.inputs = [cut]
    prune(b)
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
