"""Deployment figures of the four SEA students: flash, arena, MACs, int8 fidelity, TFLM ms/window.

Students are random-initialised with BatchNorm statistics set from realistic
inputs (log-mels of varied synthetic audio: tones, chirps, modulated noise,
clicks), so fidelity is measured on a network whose activations have realistic
ranges. Each size is run through ``sea_core.deploy.quantize`` in the plain int8
mode and in the memory mode (patch-based inference; int4 filters split into
output-channel groups when the flash goal needs them -- every option it measured
is kept in ``memory.options``), and the 128-d student also with ungrouped int4
filters on the unpatched model. Extra memory options for the 128-d student:

* (b) fused conv+pool: no TFLM kernel exists, so this is an activation-byte
  *estimate* (not measured in TFLM);
* (c) a lighter block 1 (16 instead of 32 filters): a different network
  (needs retraining), measured in TFLM for memory only (its fidelity row is
  int8 vs float of that untrained variant).

Writes ``benchmarks/results/deploy.json``.

    python benchmarks/deploy.py [--dims 512 256 128 64]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _row(r: dict, **extra) -> dict:
    return {**extra,
            "flash_model_bytes": r["flash"]["model_bytes"], "flash_total_bytes": r["flash"]["total_bytes"],
            "arena_bytes": r["ram"]["arena_bytes"], "ram_total_bytes": r["ram"]["total_bytes"],
            "macs": r["macs"], "cosine": r["fidelity"],
            "tflm_ms_per_window": r["verification"]["tflm_ms_per_window"],
            "goals_met": r["goals"], "memory": r["memory"]}


def _run(quantize, model, data, out, **kw):
    from sea_core.errors import SeaError

    t0 = time.time()
    try:
        r, err = quantize(model, data, out, **kw), None
    except SeaError as exc:
        r, err = json.loads((out / "deploy_report.json").read_text()), str(exc)
    return r, err, round(time.time() - t0, 1)


def fused_conv_pool_estimate(model_bytes: bytes, patch_plan: dict | None = None) -> dict:
    """(b) int8 activation bytes of the largest op with every CONV_2D -> 2x2 MAX_POOL_2D pair fused.

    A fused kernel writes pooled rows directly (a 2-row line buffer of the conv
    output instead of the full map). Counted like :func:`estimate_peak`
    (input + output of one op, no TFLM overhead), for the whole network and for
    one stage-A patch of the memory mode.
    """
    from sea_core.deploy_patch import _sizes, graph_layers
    from sea_core.deploy_tflm import unpack

    layers = graph_layers(model_bytes)
    sg = unpack(model_bytes).subgraphs[0]
    _, h0, w0, c0 = (int(d) for d in sg.tensors[sg.inputs[0]].shape)

    def peaks(ls, h, w, c, fused):
        out, i = 0, 0
        while i < len(ls):
            l = ls[i]
            if l.k == (0, 0):
                break
            h2, w2 = l.out_size(h, 0), l.out_size(w, 1)
            nxt = ls[i + 1] if i + 1 < len(ls) else None
            if fused and l.op == "CONV_2D" and nxt is not None and nxt.op == "MAX_POOL_2D" \
                    and nxt.k == nxt.s == (2, 2):
                h3, w3 = nxt.out_size(h2, 0), nxt.out_size(w2, 1)
                out = max(out, h * w * c + h3 * w3 * l.c_out + 2 * w2 * l.c_out)
                h, w, c, i = h3, w3, l.c_out, i + 2
                continue
            out = max(out, h * w * c + h2 * w2 * l.c_out)
            h, w, c, i = h2, w2, l.c_out, i + 1
        return out

    res = {"unfused_peak_bytes": peaks(layers, h0, w0, c0, False),
           "fused_peak_bytes": peaks(layers, h0, w0, c0, True),
           "note": "estimate: int8 input+output bytes of the largest op (+2-row line buffer when "
                   "fused); TFLM has no fused conv+pool kernel, so not measured"}
    if patch_plan:
        s = patch_plan["split_op"]
        ph, pw = patch_plan["patch"]
        la = layers[:s]
        ho, wo = _sizes(la, h0, 0)[-1], _sizes(la, w0, 1)[-1]
        res["patch_stage_a_unfused_bytes"] = peaks(la, ph, pw, c0, False)
        res["patch_stage_a_fused_bytes"] = peaks(la, ph, pw, c0, True)
        res["patch_stitch_bytes"] = ho * wo * la[-1].c_out
        res["patch_stage_b_unfused_bytes"] = peaks(layers[s:], ho, wo, la[-1].c_out, False)
        res["patch_stage_b_fused_bytes"] = peaks(layers[s:], ho, wo, la[-1].c_out, True)
    return res


def lighter_block1_model(data, emb_dim: int, block1: int):
    """(c) the student trunk (log-mel input) with ``block1`` filters in block 1, BN set from data."""
    import keras
    import numpy as np

    from sea_core.deploy import read_student_audio, student_logmels
    from sea_core.models.students import _net_params, _trunk
    from sea_core.params import student_spec

    spec = student_spec(emb_dim)
    net = _net_params(spec)
    net = dataclasses.replace(net, filters=(block1,) + tuple(net.filters[1:]))
    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=spec.input_shape, dtype="float32", name="logmel")
    model = keras.Model(inp, _trunk(inp, spec, net), name=f"sea_student_{emb_dim}_block1_{block1}")
    x = student_logmels(read_student_audio(data, "train", 48, seed=1))
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [l.input for l in bns])
    for layer in bns:
        a = np.asarray(probe.predict(x, verbose=0, batch_size=48)[bns.index(layer)])
        a = a.reshape(-1, layer.input.shape[-1])
        g, b, _, _ = layer.get_weights()
        layer.set_weights([g, b, a.mean(0), a.var(0) + 1e-3])
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 256, 128, 64])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "deploy.json"))
    args = ap.parse_args(argv)
    from test_deploy import _trained_student, _write_training_set  # noqa: E402  (same generators)

    from sea_core.deploy import quantize

    results, extra = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "trainset"
        _write_training_set(data, {"train": 510, "validate": 8, "test": 100}, 64)
        for dim in args.dims:
            model = tmp / f"s{dim}.keras"
            _trained_student(model, data, emb_dim=dim)
            variants = [("int8", False), ("memory", False)] + ([("int8", True)] if dim == 128 else [])
            for mode, int4 in variants:
                out = tmp / f"out{dim}{mode}{int4}"
                r, err, sec = _run(quantize, model, data, out, optimize=mode, int4=int4)
                row = _row(r, emb_dim=dim, mode=mode, int4=int4, error=err, seconds=sec)
                print(json.dumps({k: v for k, v in row.items() if k != "memory"}), flush=True)
                results.append(row)
                if dim == 128 and mode == "memory":
                    opts = (r["memory"] or {}).get("options", [])
                    for o in opts:
                        print("  option", json.dumps(o), flush=True)
                    plan = r["memory"].get("patch_plan")
                    extra["b_fused_conv_pool_128"] = fused_conv_pool_estimate(
                        (tmp / "out128int8False" / "model.tflite").read_bytes(), plan)
                    print("  (b)", json.dumps(extra["b_fused_conv_pool_128"]), flush=True)
            if dim == 128:
                rows_c = []
                for b1 in (16, 8):
                    m = lighter_block1_model(data, dim, b1)
                    for mode in ("int8", "memory"):
                        out = tmp / f"out{dim}b1_{b1}{mode}"
                        r, err, sec = _run(quantize, m, data, out, optimize=mode)
                        row = _row(r, emb_dim=dim, block1_filters=b1, mode=mode, error=err, seconds=sec)
                        print("  (c)", json.dumps({k: v for k, v in row.items() if k != "memory"}),
                              flush=True)
                        rows_c.append(row)
                extra["c_lighter_block1_128"] = {
                    "note": "block 1 with fewer filters (default 32): a different network that needs "
                            "retraining; memory figures measured in TFLM, cosine = int8 vs float of "
                            "the untrained variant (not a fidelity claim for a trained one)",
                    "rows": rows_c}
    import numpy, tensorflow  # noqa: E401
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "python": platform.python_version(), "numpy": numpy.__version__,
                       "tensorflow": tensorflow.__version__},
           "note": "random-initialised students, BN statistics from synthetic-audio log-mels, "
                   "a few Adam steps; arena = TFLM host (x86-64) figures; memory mode arena = "
                   "max(stage A + stitched map, stage B); memory.options = every configuration "
                   "the memory mode measured (patch int8, int4 ungrouped, int4 in G output-channel "
                   "groups), 'chosen' marks the one used; flash goal 500,000 B, arena goal 98,304 B; "
                   "TFLM ms on a shared, loaded host",
           "results": results, "options": extra}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
