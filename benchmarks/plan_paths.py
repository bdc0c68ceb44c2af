"""The embed run's plan and finalize steps: in the launcher vs as Beam jobs, on the default runner.

Writes ``benchmarks/results/plan_paths.json``. On the default local runner
(in-process FnApiRunner) ``sea pipeline embed`` evaluates the plan and finalize
steps in the launcher (``run_plan_in_process`` / ``run_finalize_in_process``);
``run(..., beam_jobs=True)`` runs them as Beam jobs, as on a distributed runner.
Per round, both paths (order alternated: the cores are shared) do a full run of
a corpus of deterministic 10-s clips (``make_clip`` of
``benchmarks/embed_pipeline.py``) and an ``--incremental`` refresh after adding
2 clips to the same days; ``run_summary["timings_s"]`` (list / pipeline /
finalize / total) of each is recorded, with medians per path and the refresh /
full ratio. A warm-up run (not recorded) builds the teacher network first.

Run: ``.venv/bin/python benchmarks/plan_paths.py [--clips 24] [--rounds 3]``
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
RESULTS = ROOT / "benchmarks" / "results" / "plan_paths.json"
PATHS = {"in_process": False, "beam_jobs": True}
"""Path name -> ``run(beam_jobs=...)``."""
STEPS = ("list", "pipeline", "finalize", "total")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--new", type=int, default=2, help="clips added before the refresh")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--teacher", default="aisfx")
    ap.add_argument("--hop-seconds", type=float, default=0.5)
    ap.add_argument("--output", default=str(RESULTS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.embed_pipeline import make_clip
    from pipelines.embed_corpus import parse_args, run

    runs: dict = {p: {"full": [], "refresh": []} for p in PATHS}
    load = [round(os.getloadavg()[0], 2)]
    with tempfile.TemporaryDirectory() as tmp:
        up = Path(tmp) / "upstream"
        for i in range(args.clips):
            make_clip(up, i, args.seconds)

        def embed(out: Path, beam_jobs: bool, *extra: str) -> dict:
            return run(*parse_args(["--input", str(up), "--output", str(out), "--teacher",
                                    args.teacher, "--hop-seconds", str(args.hop_seconds),
                                    *extra]), beam_jobs=beam_jobs)

        embed(Path(tmp) / "warm-up", False)  # the teacher network is built once per process
        precision = None
        for r in range(args.rounds):
            for path in (list(PATHS) if r % 2 == 0 else list(PATHS)[::-1]):
                out = Path(tmp) / f"out-{path}-{r}"
                full = embed(out, PATHS[path])
                new = [make_clip(up, i, args.seconds) for i in range(args.clips,
                                                                     args.clips + args.new)]
                refresh = embed(out, PATHS[path], "--incremental")
                assert refresh["counts"]["inputs"] == args.new and refresh["balanced"]
                for p in new:  # the next full run lists the same corpus
                    p.unlink()
                precision = full["teacher_precision"]
                runs[path]["full"].append(full["timings_s"])
                runs[path]["refresh"].append(refresh["timings_s"])
                print(f"round {r} {path}: full {full['timings_s']}, refresh "
                      f"{refresh['timings_s']}", flush=True)

    def medians(timings: list[dict]) -> dict:
        return {k: round(statistics.median(t[k] for t in timings), 3) for k in STEPS}

    summary = {p: {"full": medians(v["full"]), "refresh": medians(v["refresh"]),
                   "refresh_ratio": round(statistics.median(
                       b["total"] / a["total"] for a, b in zip(v["full"], v["refresh"])), 3)}
               for p, v in runs.items()}
    result = {
        "benchmark": "plan_paths",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_1m_start_end": load + [round(os.getloadavg()[0], 2)]},
        "corpus": {"clips": args.clips, "seconds": args.seconds, "new_clips": args.new,
                   "teacher": args.teacher, "teacher_precision": precision,
                   "hop_seconds": args.hop_seconds},
        "rounds": args.rounds,
        "median": summary,
        "in_process_vs_beam_jobs_s": {
            kind: {k: round(summary["beam_jobs"][kind][k] - summary["in_process"][kind][k], 3)
                   for k in STEPS} for kind in ("full", "refresh")},
        "runs": runs,
        "note": "timings_s of run_summary.json; 'list' includes the plan step and the launcher's "
                "set-up, 'finalize' the finalize step, the manifest publish and the summary",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"], indent=2))
    return result


if __name__ == "__main__":
    main()
