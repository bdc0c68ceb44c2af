"""Sparse teacher at 95.45 % with and without distillation (``sea prune --retrain kd``) on a demo corpus.

Writes ``benchmarks/results/prune_kd.json``: cosine to the dense teacher on held-out upstream
windows, downstream micro-AUPRC (MIL and logreg, DOWNSTREAM_QUICK) of the dense teacher and
both sparse teachers, and wall times. Small on purpose (shared 2-core machine):

    PYTHONPATH=$PWD python -m benchmarks.prune_kd --work /tmp/prune_kd
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--teacher", default="aisfx")
    ap.add_argument("--sparsity", type=float, default=95.45)
    ap.add_argument("--max-windows", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    a = ap.parse_args(argv)
    from pipelines.embed_corpus import parse_args as embed_args, run as run_embed
    from sea_core.api import load_embedder
    from sea_core.evaluate import evaluate
    from sea_core.params import DOWNSTREAM_QUICK, SYNTH
    from sea_core.prune import load_sparse_teacher, prune_teacher
    from sea_core.models import store
    from sea_core.synth import synthesize

    work = Path(a.work)
    times = {}
    t = time.perf_counter()
    corpus = work / "corpus"
    if not (corpus / "corpus_card.json").exists():
        synthesize(corpus, dataclasses.replace(SYNTH, sensors=3, days=1, clips_per_day=6, labelled_clips=60),
                   overwrite=True)
    times["synth"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    frames = work / "embed"
    if not (frames / "_SUCCESS").exists():
        run_embed(*embed_args(["--input", str(corpus / "upstream"), "--output", str(frames),
                               "--teacher", a.teacher, "--hop-seconds", "0.5"]))
    times["embed"] = round(time.perf_counter() - t, 1)
    recs = {}
    for retrain in ("none", "kd"):
        recs[retrain] = prune_teacher(teacher=a.teacher, sparsity=a.sparsity, retrain=retrain,
                                      frames=str(frames), max_windows=a.max_windows, epochs=a.epochs,
                                      batch_size=16, learning_rate=a.lr, seed=0)
        times[f"prune_{retrain}"] = recs[retrain]["wall_seconds"]
    embedders = {f"teacher:{a.teacher}": load_embedder(model_type=a.teacher)}
    for retrain, rec in recs.items():
        emb = load_embedder(model=load_sparse_teacher(store.get_entry(rec["model_id"])))
        embedders[f"sparse{a.sparsity:g}-{retrain}"] = emb
    t = time.perf_counter()
    res = evaluate(annotations=str(corpus / "downstream" / "annotations.csv"),
                   audio_dir=str(corpus / "downstream" / "audio"), models=[], embedders=embedders,
                   params=DOWNSTREAM_QUICK, seed=0)
    times["evaluate"] = round(time.perf_counter() - t, 1)
    table = []
    for label, e in res["models"].items():
        row = {"model": label}
        for clf in ("mil", "logreg"):
            split = e[clf].get("test") or e[clf]["validate"]
            row[f"{clf}_micro_auprc"] = round(split["micro_auprc"], 4)
        key = label.split("-")[-1] if label.startswith("sparse") else None
        if key:
            row["cosine_to_dense"] = round(recs[key]["cosine_after"], 4)
            row["cosine_before_kd"] = round(recs[key]["cosine_before"], 4)
        table.append(row)
    out = {"teacher": a.teacher, "sparsity": a.sparsity, "max_windows": a.max_windows, "epochs": a.epochs,
           "learning_rate": a.lr, "clips": res["clips"], "table": table, "wall_seconds": times,
           "prune": {k: {kk: v[kk] for kk in ("model_id", "teacher_id", "windows", "train_windows",
                                                "holdout_windows", "cosine_before", "cosine_after")
                         if kk in v} | {"losses": v.get("losses"),
                                        "achieved_sparsity": v["prune"]["achieved"]}
                     for k, v in recs.items()}}
    dest = Path(__file__).parent / "results" / "prune_kd.json"
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
