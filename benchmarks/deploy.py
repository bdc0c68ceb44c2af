"""Deployment figures of the four SEA students: flash, arena, RAM, MACs, latency, int8 fidelity.

Students are TRAINED 1-s students (64 x 50 log-mel of 1 s at 8 kHz), one per dim
(512/256/128/64), trained briefly (``--epochs``, default 3) on the demo's data: the
frames of a finished ``sea run`` (``--run DIR``, default teacher window 1 s) get one PCA
over all their windows for every dim and a training set with every target
(``pipelines.build_training_set``); each student is trained with ``sea_core.train``.
Each size is run through ``sea_core.deploy.quantize`` in the plain int8 mode and in the
memory mode (patch-based inference in ONE arena; int4 filters split into output-channel
groups when the flash goal needs them -- every option it measured is kept in
``memory.options``), and the 128-d student also with ungrouped int4 filters on the
unpatched model. Extra for the 128-d student: (b) fused conv+pool, an activation-byte
*estimate* (no TFLM kernel exists, not measured).

Writes ``benchmarks/results/deploy.json``.

    sea run --out /tmp/demo            # once (make demo)
    python benchmarks/deploy.py --run /tmp/demo [--dims 512 256 128 64] [--epochs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _row(r: dict, **extra) -> dict:
    return {**extra,
            "flash_model_bytes": r["flash"]["model_bytes"], "flash_total_bytes": r["flash"]["total_bytes"],
            "arena_bytes": r["ram"]["arena_bytes"], "ram_total_bytes": r["ram"]["total_bytes"],
            "macs": r["macs"], "cosine": r["fidelity"], "latency": r.get("latency"),
            "window_seconds": r.get("window_seconds"), "goals_met": r["goals"],
            "tflm_ms_per_window": r["verification"]["tflm_ms_per_window"], "memory": r["memory"]}


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
    from sea_core.deploy.graph import unpack
    from sea_core.deploy.patch import _sizes, graph_layers

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


def _trainset_all_dims(run: Path, tmp: Path, dims) -> Path:
    """One PCA over all frames of ``run`` for every dim + a training set with all the targets."""
    import numpy as np

    from pipelines.build_training_set import build_training_set
    from sea_core.datasets.frames import fixed_list_to_numpy, list_partitions, read_partition
    from sea_core.reduction import fit_reduction

    frames = run / "embed"
    embs, teachers = [], set()
    for part in list_partitions(frames):
        t = read_partition(part, ["teacher_emb", "teacher_id"])
        embs.append(fixed_list_to_numpy(t.column("teacher_emb")).astype(np.float64))
        teachers.update(t.column("teacher_id").to_pylist())
    x = np.concatenate(embs)
    dims = tuple(d for d in sorted(dims, reverse=True) if d <= len(x))
    art = fit_reduction(x, dims=dims, sampling_method="all-windows (benchmark)",
                        teacher_id=",".join(sorted(teachers)))
    art.save(str(tmp / "pca"))
    build_training_set(frames=str(frames), pca=str(tmp / "pca"), output=str(tmp / "trainset"),
                       dims=dims)
    return tmp / "trainset"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="a finished `sea run --out DIR` (its embed/ frames)")
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 64, 256, 512])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "deploy.json"))
    args = ap.parse_args(argv)

    from sea_core.deploy import quantize
    from sea_core.params import RUN
    from sea_core.train import TrainConfig, train

    results, extra, training = [], {}, {}
    run = Path(args.run)

    def save(done: bool) -> None:
        """Write what is measured so far (a long run on a shared machine keeps partial results)."""
        import numpy, tensorflow  # noqa: E401
        out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "complete": done,
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "python": platform.python_version(), "numpy": numpy.__version__,
                           "tensorflow": tensorflow.__version__, "load_average": os.getloadavg()},
               "note": f"TRAINED 1-s students ({args.epochs} epochs on the demo data of {run}: PCA "
                       "over all its windows, every dim); arena = TFLM host (x86-64) figures; "
                       "memory mode: both stages run in sequence in ONE arena = max(stage A, stage "
                       "B), RAM = max(arena, front-end scratch) + int8 log-mel + stitched map; "
                       "memory.options = every configuration measured (unpatched int8, patch int8, "
                       "int4 ungrouped, int4 in G output-channel groups), 'chosen' marks the one "
                       "used; goals: flash <= 500,000 B, arena <= 98,304 B, RAM <= 102,500 B; "
                       "latency = MACs / (480 MHz x MACs/cycle); TFLM ms on a shared, loaded host",
               "training": training, "results": results, "options": extra}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.time()
        data = _trainset_all_dims(run, tmp, args.dims)
        card = json.loads((data / "dataset_card.json").read_text())
        training["trainset"] = {"counts": card["counts"], "student_samples": card["student_samples"],
                                "teacher_id": card.get("teacher_id"),
                                "seconds": round(time.time() - t0, 1)}
        for dim in args.dims:
            t0 = time.time()
            summ = train(TrainConfig(data=str(data), out=str(tmp / f"train{dim}"), emb_dim=dim,
                                     epochs=args.epochs, batch_size=RUN.batch_size,
                                     learning_rate=RUN.learning_rate, seed=RUN.seed,
                                     register=False, progress=False))
            model = tmp / f"train{dim}" / "model.keras"
            training[str(dim)] = {"epochs": summ["epochs_run"], "seconds": round(time.time() - t0, 1),
                                  "best_val_loss": summ["best_val_loss"],
                                  "train_rows": summ["train_rows"]}
            print(json.dumps({"trained": dim, **training[str(dim)]}), flush=True)
            variants = [("int8", False), ("memory", False)] + ([("int8", True)] if dim == 128 else [])
            for mode, int4 in variants:
                out = tmp / f"out{dim}{mode}{int4}"
                r, err, sec = _run(quantize, model, data, out, optimize=mode, int4=int4, emb_dim=dim)
                row = _row(r, emb_dim=dim, mode=mode, int4=int4, error=err, seconds=sec)
                print(json.dumps({k: v for k, v in row.items() if k != "memory"}), flush=True)
                results.append(row)
                save(False)
                if dim == 128 and mode == "memory":
                    plan = (r["memory"] or {}).get("patch_plan")
                    extra["b_fused_conv_pool_128"] = fused_conv_pool_estimate(
                        (tmp / "out128int8False" / "model.tflite").read_bytes(), plan)
    save(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
