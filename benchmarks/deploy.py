"""Deployment figures of the four SEA students: flash, arena, MACs, int8 fidelity, TFLM ms/window.

Students are random-initialised with BatchNorm statistics set from realistic
inputs (log-mels of varied synthetic audio: tones, chirps, modulated noise,
clicks), so fidelity is measured on a network whose activations have realistic
ranges. Each size is run through ``sea_core.deploy.quantize`` in the plain int8
mode and in the memory mode (patch-based inference), and the 128-d student also
with int4 filters. Writes ``benchmarks/results/deploy.json``.

    python benchmarks/deploy.py [--dims 512 256 128 64]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 256, 128, 64])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "deploy.json"))
    args = ap.parse_args(argv)
    from test_deploy import _trained_student, _write_training_set  # noqa: E402  (same generators)

    from sea_core.deploy import quantize
    from sea_core.errors import SeaError

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "trainset"
        _write_training_set(data, {"train": 510, "validate": 8, "test": 100}, 64)
        for dim in args.dims:
            model = tmp / f"s{dim}.keras"
            _trained_student(model, data, emb_dim=dim)
            variants = [("int8", False), ("memory", False)] + ([("memory", True)] if dim == 128 else [])
            for mode, int4 in variants:
                t0 = time.time()
                try:
                    r = quantize(model, data, tmp / f"out{dim}{mode}{int4}", optimize=mode, int4=int4)
                    err = None
                except SeaError as exc:
                    r, err = json.loads((tmp / f"out{dim}{mode}{int4}" / "deploy_report.json")
                                        .read_text()), str(exc)
                row = {"emb_dim": dim, "mode": mode, "int4": int4, "error": err,
                       "flash_model_bytes": r["flash"]["model_bytes"],
                       "flash_total_bytes": r["flash"]["total_bytes"],
                       "arena_bytes": r["ram"]["arena_bytes"], "ram_total_bytes": r["ram"]["total_bytes"],
                       "macs": r["macs"], "cosine": r["fidelity"],
                       "tflm_ms_per_window": r["verification"]["tflm_ms_per_window"],
                       "memory": r["memory"], "seconds": round(time.time() - t0, 1)}
                print(json.dumps({k: v for k, v in row.items() if k != "memory"}), flush=True)
                results.append(row)
    import numpy, tensorflow  # noqa: E401
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"platform": platform.platform(), "processor": platform.processor(),
                       "python": platform.python_version(), "numpy": numpy.__version__,
                       "tensorflow": tensorflow.__version__},
           "note": "random-initialised students, BN statistics from synthetic-audio log-mels, "
                   "a few Adam steps; arena = TFLM host (x86-64) figures; memory mode arena = "
                   "max(stage A + stitched map, stage B)",
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
