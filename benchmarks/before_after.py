"""The embed benchmark of two checkouts side by side: this tree ("after") against another
("before", e.g. a worktree of an older commit), rounds alternated.

Runs ``benchmarks/embed_pipeline.py`` of each checkout in a child process (its own code on
``PYTHONPATH``; no mode, batch or thread sweeps), ``--precisions`` per side, and writes
``benchmarks/results/embed_before_after.json``: per side and precision the pipeline and bare
windows/s of every round, and the medians of the per-round speed-ups of each "after"
precision over the "before" fp32 (pipeline and bare inference).

Run: ``.venv/bin/python benchmarks/before_after.py --before /path/to/old/checkout [--clips 96]``
(``git worktree add --detach /tmp/old <commit>`` makes one).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "embed_before_after.json"


def _git_head(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def run_side(tree: Path, precisions: str, clips: int, out: Path) -> dict:
    """One round of ``tree``'s embed benchmark; returns {precision: {pipeline_wps, bare_wps}}."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(tree / "benchmarks" / "embed_pipeline.py"), "--clips", str(clips),
           "--rounds", "1", "--precisions", precisions, "--modes", "", "--sweep-batches", "",
           "--thread-settings", "", "--out", str(out)]
    subprocess.run(cmd, env=env, check=True, cwd=tree, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    return {p: {"pipeline_wps": v["pipeline"]["windows_per_s"], "bare_wps": v["bare"]["windows_per_s"],
                "load_1m": v["rounds"][0].get("load_1m")}
            for p, v in result["precisions"].items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="the other checkout (its repo root)")
    ap.add_argument("--before-precisions", default="fp32")
    ap.add_argument("--after-precisions", default="fp32,bf16")
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    sides = {"before": (Path(args.before).resolve(), args.before_precisions),
             "after": (ROOT, args.after_precisions)}
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            rec = {}
            for side in order:
                tree, precisions = sides[side]
                rec[side] = run_side(tree, precisions, args.clips, Path(tmp) / f"{side}-{r}.json")
                print(r, side, json.dumps(rec[side]), flush=True)
            rounds.append(rec)
    base = "fp32"
    speedups = {}
    for p in args.after_precisions.split(","):
        for what in ("pipeline_wps", "bare_wps"):
            per = [x["after"][p][what] / x["before"][base][what] for x in rounds]
            speedups[f"after_{p}_vs_before_{base}_{what.split('_')[0]}"] = {
                "median": round(statistics.median(per), 3), "per_round": [round(v, 3) for v in per]}
    result = {"benchmark": "embed_before_after",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "before": {"tree": str(sides["before"][0]), "commit": _git_head(sides["before"][0])},
              "after": {"tree": str(ROOT), "commit": _git_head(ROOT)},
              "clips": args.clips, "rounds": rounds, "speedups": speedups,
              "cpus": os.cpu_count(), "load_avg_1m_after": round(os.getloadavg()[0], 2)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(speedups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
