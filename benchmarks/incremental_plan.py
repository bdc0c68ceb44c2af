"""Launcher memory of an ``--incremental`` refresh vs manifest size (issue 15, the Beam join).

For each N a corpus of N small files (``sensor_<i>/<day>/<ts>.flac``, 50 sensors x
28 days) and an output whose ``manifest.parquet`` already lists every one of them
(status ok, same size and mtime: a scheduled refresh that finds nothing new). Then,
in a separate launcher process each:

* ``beam``: ``sea pipeline embed --incremental --runner=DaskRunner`` against a
  LocalCluster (2 worker processes) started by this benchmark - the plan job
  (listing x manifest CoGroupByKey), then the finalize job rewriting the manifest
  shards; the embed job is skipped (nothing to do).
* ``launcher_plan``: what the launcher held before issue 15's last point: the listing
  (``list_inputs``), the previous manifest (``read_manifest``) and ``plan_run`` in the
  launcher process.

Recorded: the launcher's peak RSS (``VmHWM``) and wall time per N, the growth of
each from the smallest to the largest N, and the serialized sizes of the three job
graphs. Writes ``benchmarks/results/incremental_plan.json``.

    PYTHONPATH=$PWD python -m benchmarks.incremental_plan --sizes 100,100000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "incremental_plan.json"
SENSORS, DAYS = 50, 28

_CHILD = r"""
import json, sys, time
mode, corpus, out = sys.argv[1:4]
extra = sys.argv[4:]
t0 = time.perf_counter()
if mode == "beam":
    from pipelines.embed_corpus import parse_args, run
    s = run(*parse_args(["--input", corpus, "--output", out, "--teacher", "l3-random", "--incremental"] + extra))
    info = {k: s["counts"][k] for k in ("listed", "unchanged", "inputs", "removed")}
    info["timings_s"] = s["timings_s"]
else:
    from pipelines.transforms.list_inputs import list_inputs
    from pipelines.transforms.manifest import plan_run, read_manifest
    from pipelines.transforms.write import OutputLayout
    listed = list_inputs(corpus)
    previous, _ = read_manifest(out + "/manifest.parquet")
    plan = plan_run(listed, previous, incremental=True,
                    keys_on_disk=OutputLayout(out, 1, 1).frames_keys_on_disk())
    info = {"listed": len(listed), "unchanged": len(plan.unchanged), "inputs": len(plan.process),
            "removed": len(plan.removed)}
hwm = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        hwm = int(line.split()[1]) * 1024
info.update(peak_rss_bytes=hwm, wall_s=round(time.perf_counter() - t0, 2))
print("RESULT " + json.dumps(info))
"""


def _make(work: Path, n: int) -> tuple[str, str]:
    from pipelines.embed_config import EmbedConfig, _resolve
    from pipelines.transforms.list_inputs import list_inputs
    from pipelines.transforms.manifest import ManifestRow, write_manifest

    corpus, out = work / f"corpus{n}", work / f"out{n}"
    for i in range(n):
        d = corpus / f"sensor_{i % SENSORS}" / f"2019-03-{1 + (i // SENSORS) % DAYS:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{1551700000 + 60 * i}.flac").write_bytes(b"x")
    cfg = EmbedConfig(input=str(corpus), output=str(out), teacher="l3-random", incremental=True)
    settings = _resolve(cfg).settings(cfg)
    rows = {f.uri: ManifestRow(uri=f.uri, size=f.size, version=f.version, content_hash="h",
                               run_id="r0", status="ok", sensor=f.uri.split("/")[-3][7:],
                               day=f.uri.split("/")[-2], windows=10)
            for f in list_inputs(str(corpus))}
    write_manifest(str(out / "manifest.parquet"), rows, settings)
    return str(corpus), str(out)


def _child(mode: str, corpus: str, out: str, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-c", _CHILD, mode, corpus, out, *extra], env=env,
                       capture_output=True, text=True, timeout=3600)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    if r.returncode or not line:
        raise RuntimeError(f"{mode} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(line[-1][len("RESULT "):])


def _graphs(work: Path, n: int) -> dict:
    """Serialized plan / embed / finalize graphs for the output of size n."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.embed_config import EmbedConfig, _resolve
    from pipelines.embed_corpus import build
    from pipelines.transforms.diff import PlanRefresh, StagedPlan
    from pipelines.transforms.finalize import FinalizeManifest

    out = work / f"out{n}"
    cfg = EmbedConfig(input=str(work / f"corpus{n}"), output=str(out), teacher="l3-random",
                      incremental=True)
    res = _resolve(cfg)
    st = StagedPlan(staging=str(work / "staging"), counts={}, incremental=True, manifest_rows=n)
    sizes = {}
    for job in ("plan", "embed", "finalize"):
        p = beam.Pipeline(options=PipelineOptions([]))
        if job == "plan":
            p | PlanRefresh(cfg.input, f"{out}/manifest.parquet", str(out), st.staging,
                            incremental=True, shard_size=16, settings=res.settings(cfg))
        elif job == "embed":
            build(p, cfg, run_plan=st, resolved=res)
        else:
            p | FinalizeManifest(st.units_url, st.keep_url, res.layout, st.staging, run_id="r",
                                 settings=res.settings(cfg), n_shards=1)
        sizes[job] = len(p.to_runner_api().SerializeToString())
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,100000")
    ap.add_argument("--work", default="/tmp/sea-incremental-plan")
    a = ap.parse_args(argv)
    import distributed

    sizes = [int(x) for x in a.sizes.split(",")]
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = []
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster:
            for n in sizes:
                t0 = time.perf_counter()
                corpus, out = _make(work, n)
                made = time.perf_counter() - t0
                beam_run = _child("beam", corpus, out, [
                    "--runner=DaskRunner", f"--dask_client_address={cluster.scheduler_address}"])
                old = _child("launcher_plan", corpus, out, [])
                results.append({"n": n, "setup_s": round(made, 1), "beam": beam_run,
                                "launcher_plan": old, "graph_bytes": _graphs(work, n)})
                print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lo, hi = results[0], results[-1]
    summary = {
        "beam_launcher_peak_rss_ratio": round(hi["beam"]["peak_rss_bytes"]
                                              / lo["beam"]["peak_rss_bytes"], 3),
        "launcher_plan_peak_rss_ratio": round(hi["launcher_plan"]["peak_rss_bytes"]
                                              / lo["launcher_plan"]["peak_rss_bytes"], 3),
        "beam_launcher_peak_rss_growth_mb": round((hi["beam"]["peak_rss_bytes"]
                                                   - lo["beam"]["peak_rss_bytes"]) / 1e6, 1),
        "launcher_plan_peak_rss_growth_mb": round((hi["launcher_plan"]["peak_rss_bytes"]
                                                   - lo["launcher_plan"]["peak_rss_bytes"]) / 1e6, 1),
        "graph_bytes_max_relative_difference": round(max(
            abs(hi["graph_bytes"][j] - lo["graph_bytes"][j]) / lo["graph_bytes"][j]
            for j in lo["graph_bytes"]), 5),
    }
    doc = {"benchmark": "incremental_plan", "date": datetime.now(timezone.utc).isoformat(),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_1min_at_end": os.getloadavg()[0]},
           "runner": "DaskRunner, LocalCluster 2 worker processes x 1 thread",
           "results": results, "summary": summary}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
