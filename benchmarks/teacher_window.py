"""The aisfx teacher at 1-s vs 2.30-s windows: does it keep its meaning on the students' window?

1. ``../shared`` SONYC-UST clips (``sonyc_ust_mini``: real 10-s recordings with coarse labels):
   every clip embedded at hop 0.5 s (centred) with both windows.

   * ``knn_overlap``: windows at the same centre time, pooled over clips; mean overlap of
     the k = 5 nearest neighbours (cosine) in the 1-s space and in the 2.30-s space.
   * ``label_agreement``: for every window, its nearest window of ANOTHER clip; the mean
     Jaccard similarity of the two clips' coarse label sets (higher = neighbours share labels).
2. ``--demo DIR`` (a finished ``sea run``): the teacher's downstream micro-AUPRC (MIL
   classifier, quick schedule) on the demo's labelled set at both windows.

Writes ``benchmarks/results/teacher_window.json``.

    python benchmarks/teacher_window.py [--demo /tmp/demo]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SEA_SHARED_DIR", ROOT.parent / "shared"))
SONYC = SHARED / "data" / "sonyc_ust_mini"
CLASSES = ("engine", "machinery-impact", "non-machinery-impact", "powered-saw", "alert-signal",
           "music", "human-voice", "dog")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def sonyc_agreement(k: int = 5) -> dict:
    from sea_core.api import get_embedding
    from sea_core.audio.io import read_audio
    from sea_core.models.teachers import get_teacher

    rows = list(csv.DictReader(open(SONYC / "labels.csv")))
    labels = {r["filename"]: {c for c in CLASSES if r[c] == "1"} for r in rows}
    per_window = {}
    for window in ("1s", "2.30s"):
        teacher = get_teacher("aisfx", window=window)
        per_window[window] = {}
        for name in sorted(labels):
            audio, sr = read_audio(str(SONYC / "audio" / name))
            emb, ts = get_embedding(audio, sr, model=teacher, hop_size=0.5, center=True)
            per_window[window][name] = dict(zip(np.round(ts, 3).tolist(), emb))
    emb = {w: [] for w in per_window}
    clip = []
    for name in sorted(labels):
        common = sorted(set(per_window["1s"][name]) & set(per_window["2.30s"][name]))
        for t in common:
            for w in per_window:
                emb[w].append(per_window[w][name][t])
            clip.append(name)
    clip = np.array(clip)
    out = {"clips": len(labels), "windows": int(len(clip)), "k": k, "label_agreement": {}}
    nn = {}
    for w, e in emb.items():
        u = _unit(np.asarray(e, np.float64))
        sim = u @ u.T
        np.fill_diagonal(sim, -np.inf)
        nn[w] = np.argsort(-sim, axis=1)[:, :k]
        other = np.where(clip[None, :] != clip[:, None], sim, -np.inf)
        j = np.argmax(other, axis=1)
        jac = [len(labels[clip[i]] & labels[clip[m]]) / max(len(labels[clip[i]] | labels[clip[m]]), 1)
               for i, m in enumerate(j)]
        out["label_agreement"][w] = float(np.mean(jac))
    out["knn_overlap"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nn["1s"], nn["2.30s"])]))
    return out


def demo_auprc(demo: Path) -> dict:
    from sea_core.api import load_embedder
    from sea_core.evaluate import evaluate
    from sea_core.models.teachers import get_teacher
    from sea_core.params import DOWNSTREAM_QUICK

    ann = demo / "corpus" / "downstream" / "annotations.csv"
    audio = demo / "corpus" / "downstream" / "audio"
    emb = {f"teacher {w}": load_embedder(model=get_teacher("aisfx", window=w)) for w in ("1s", "2.30s")}
    res = evaluate(annotations=str(ann), audio_dir=str(audio), models=[], embedders=emb,
                   params=DOWNSTREAM_QUICK, seed=0)
    return {label: {"test": e["mil"]["test"]["micro_auprc"],
                    "validate": e["mil"]["validate"]["micro_auprc"],
                    "windows_per_clip": e["windows_per_clip"]}
            for label, e in res["models"].items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", help="a finished `sea run --out DIR` for the downstream AUPRC")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "teacher_window.json"))
    args = ap.parse_args(argv)
    t0 = time.time()
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if SONYC.is_dir():
        result["sonyc_ust_mini"] = sonyc_agreement()
        print(json.dumps(result["sonyc_ust_mini"]), flush=True)
    else:
        result["sonyc_ust_mini"] = f"skipped: {SONYC} is absent"
    if args.demo:
        result["demo_teacher_micro_auprc"] = demo_auprc(Path(args.demo))
        print(json.dumps(result["demo_teacher_micro_auprc"]), flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
