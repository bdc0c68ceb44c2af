"""`sea train` in fp32 vs mixed_bfloat16 (float32 output layer and loss) on a training set.

Writes ``benchmarks/results/train_precision.json``: per run the seconds per epoch
(``train_seconds / epochs_run``: steps, validation, checkpoints) and the final
validation MSE; runs alternate fp32 / bf16 (ABBA...) because the cores are shared,
and the figures compared are the per-pair ratios of neighbouring runs.

Adoption rule (issue 17): bf16 becomes the default on bf16-capable CPUs when it is
>= 1.3x faster per epoch and its final validation MSE is within 2 % of fp32's.

Run: ``.venv/bin/python benchmarks/train_precision.py --data OUT/trainset [--rounds 2]``
(the demo's training set is ``sea run``'s ``OUT/trainset``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "train_precision.json"

SPEEDUP_GOAL = 1.3
VAL_MSE_TOLERANCE = 0.02


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training set directory (dataset_card.json)")
    ap.add_argument("--rounds", type=int, default=2, help="fp32/bf16 pairs (alternated ABBA)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the demo's (RUN.epochs)")
    ap.add_argument("--emb-dim", type=int, default=None, help="default: the set's first dim")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from sea_core.params import RUN
    from sea_core.precision import cpu_bf16_flags
    from sea_core.train import TrainConfig, train

    card = json.loads((Path(args.data) / "dataset_card.json").read_text())
    emb_dim = args.emb_dim or int(card["dims"][0])
    epochs = args.epochs or RUN.epochs
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")
            for p in order:
                s = train(TrainConfig(data=args.data, out=f"{tmp}/{p}-{r}", emb_dim=emb_dim,
                                      head=RUN.head, learning_rate=RUN.learning_rate,
                                      batch_size=RUN.batch_size, epochs=epochs, seed=RUN.seed,
                                      register=False, progress=False, precision=p))
                rec = {"round": r, "precision": s["precision"], "epochs_run": s["epochs_run"],
                       "train_seconds": round(s["train_seconds"], 2),
                       "seconds_per_epoch": round(s["train_seconds"] / s["epochs_run"], 3),
                       "final_val_mse": s["history"][-1]["val_loss"],
                       "best_val_mse": s["best_val_loss"],
                       "load_1m": round(os.getloadavg()[0], 2)}
                runs.append(rec)
                print(json.dumps(rec), flush=True)
    pairs = [(a, b) for a, b in zip(runs[0::2], runs[1::2])]
    pairs = [(a, b) if a["precision"] == "fp32" else (b, a) for a, b in pairs]
    speedups = [f["seconds_per_epoch"] / b["seconds_per_epoch"] for f, b in pairs]
    fp = [f["final_val_mse"] for f, _ in pairs]
    bf = [b["final_val_mse"] for _, b in pairs]
    speedup = statistics.median(speedups)
    val_rel = abs(statistics.median(bf) - statistics.median(fp)) / statistics.median(fp)
    adopt = speedup >= SPEEDUP_GOAL and val_rel <= VAL_MSE_TOLERANCE
    result = {
        "benchmark": "train_precision",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": args.data, "train_rows": card["counts"]["train"], "emb_dim": emb_dim,
        "epochs": epochs, "batch_size": RUN.batch_size, "learning_rate": RUN.learning_rate,
        "runs": runs,
        "speedup_per_epoch": {"median": round(speedup, 3),
                              "per_pair": [round(x, 3) for x in speedups],
                              "goal": f">= {SPEEDUP_GOAL}"},
        "final_val_mse": {"fp32_median": statistics.median(fp), "bf16_median": statistics.median(bf),
                          "relative_difference": round(val_rel, 4),
                          "goal": f"<= {VAL_MSE_TOLERANCE}"},
        "adopt_bf16_default": adopt,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "cpu_bf16_flags": list(cpu_bf16_flags()),
                    "note": "shared machine: compare the per-pair ratios"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("speedup_per_epoch", "final_val_mse",
                                             "adopt_bf16_default")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
