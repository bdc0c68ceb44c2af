"""Downstream evaluation on SONYC-UST-layout data (``sea evaluate``) [ref (g)].

Reads ``annotations.csv`` (``split``, ``audio_filename``, ``<class>_presence``
columns; the class set is read from the coarse presence columns, so any set in
this layout works) and an audio folder; embeds every clip's windows with each
model; trains the reference's multi-label MIL classifier (per-window Dense
layers -> per-window sigmoid -> AutoPool over time) on ``train``, selects the
checkpoint on ``validate`` and reports micro/macro AUPRC, micro-F1 and
per-class AUPRC on ``test`` and on ``validate`` (the paper scored on
``validate``; both are labelled). A mean-pooled logistic-regression baseline
is reported beside it.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sea_core.datasets.layout import SPLITS
from sea_core.errors import DataError, ParameterError
from sea_core.params import DOWNSTREAM, DOWNSTREAM_QUICK, DownstreamParams

__all__ = ["LabelledSet", "read_annotations", "metrics", "embed_clips", "int8_embedder", "train_mil",
           "evaluate", "main"]

log = logging.getLogger(__name__)

_COARSE = re.compile(r"^(?:(\d+)_)?([A-Za-z][\w\-]*)_presence$")
_FINE = re.compile(r"^\d+-\d+_")


@dataclass
class LabelledSet:
    """Clips with multi-hot labels, per split."""

    classes: list[str]
    files: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    """split -> [n_clips, n_classes] float32 0/1"""
    annotations: str


def read_annotations(path: str | Path) -> LabelledSet:
    """Parse a SONYC-UST-layout ``annotations.csv``.

    Aggregation (reference §(g)): when a clip has rows of the verified annotator
    (``annotator_id == 0``), those decide; otherwise a class is present when any
    annotator marked it present. Without an ``annotator_id`` column each row is a
    clip (a later duplicate row of the same clip is OR-ed in).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotations file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    for required in ("split", "audio_filename"):
        if required not in header:
            raise DataError(f"{path}: missing column '{required}' (columns: {', '.join(header)})")
    class_cols = [(c, _COARSE.match(c)) for c in header if not _FINE.match(c) and _COARSE.match(c)]
    if not class_cols:
        raise DataError(f"{path}: no '<class>_presence' columns")
    class_cols.sort(key=lambda cm: (int(cm[1].group(1)) if cm[1].group(1) else 0, cm[0]))
    classes = [m.group(2) for _, m in class_cols]
    has_annotator = "annotator_id" in header
    clips: dict[str, dict] = {}
    for i, row in enumerate(rows, start=2):
        name = row["audio_filename"]
        split = row["split"]
        if split not in SPLITS:
            raise DataError(f"{path}:{i}: split {split!r} is not one of {SPLITS}")
        values = []
        for col, _ in class_cols:
            raw = (row.get(col) or "").strip()
            try:
                values.append(float(raw) if raw else np.nan)
            except ValueError:
                raise DataError(f"{path}:{i}: column '{col}' has non-numeric value {raw!r}") from None
        clip = clips.setdefault(name, {"split": split, "verified": [], "any": np.zeros(len(classes))})
        if clip["split"] != split:
            raise DataError(f"{path}:{i}: clip {name} appears in splits {clip['split']} and {split}")
        vec = np.array(values)
        if has_annotator and str(row["annotator_id"]).strip() in ("0", "0.0"):
            clip["verified"].append(vec)
        clip["any"] = np.maximum(clip["any"], np.nan_to_num(vec, nan=0.0) > 0)
    files = {s: [] for s in SPLITS}
    labels = {s: [] for s in SPLITS}
    for name in sorted(clips):
        clip = clips[name]
        if clip["verified"]:
            label = (np.nan_to_num(np.max(clip["verified"], axis=0), nan=0.0) > 0).astype(np.float32)
        else:
            label = clip["any"].astype(np.float32)
        files[clip["split"]].append(name)
        labels[clip["split"]].append(label)
    labels_arr = {s: np.array(v, dtype=np.float32).reshape(-1, len(classes)) for s, v in labels.items()}
    return LabelledSet(classes=classes, files=files, labels=labels_arr, annotations=str(path))


# --------------------------------------------------------------------------- metrics
def metrics(y_true: np.ndarray, y_score: np.ndarray, classes: list[str], *,
            threshold: float = DOWNSTREAM.threshold) -> dict:
    """micro/macro AUPRC (scikit-learn average precision), micro-F1 at ``threshold``, per class.

    Macro and per-class AUPRC use the classes with at least one positive (AP is
    undefined otherwise; those are listed as ``null``).
    """
    from sklearn.metrics import average_precision_score, f1_score

    y_true = np.asarray(y_true, dtype=np.int64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 2:
        raise ParameterError(f"labels {y_true.shape} and scores {y_score.shape} must be equal 2-D shapes")
    per_class = {}
    for j, name in enumerate(classes):
        per_class[name] = (float(average_precision_score(y_true[:, j], y_score[:, j]))
                           if y_true[:, j].any() else None)
    defined = [v for v in per_class.values() if v is not None]
    micro = float(average_precision_score(y_true.ravel(), y_score.ravel())) if y_true.any() else None
    return {"micro_auprc": micro, "macro_auprc": float(np.mean(defined)) if defined else None,
            "micro_f1": float(f1_score(y_true.ravel(), (y_score.ravel() >= threshold).astype(int),
                                       zero_division=0.0)),
            "per_class_auprc": per_class, "n_clips": int(len(y_true))}


# --------------------------------------------------------------------------- embeddings
def embed_clips(embedder, audio_dir: str | Path, files: list[str], *, hop_seconds: float,
                center: bool, progress: bool = False, desc: str | None = None) -> np.ndarray:
    """[n_clips, T, D] window embeddings, truncated to the shortest clip (reference).

    ``progress`` shows a tqdm bar on stderr (one per model and split).
    """
    from tqdm import tqdm

    from sea_core.api import _embed_one
    from sea_core.audio.io import read_audio

    out = []
    for name in tqdm(files, desc=desc or f"embed ({embedder.model_id})", unit="clip",
                     file=sys.stderr, disable=not progress):
        uri = str(Path(audio_dir) / name)
        audio, sr = read_audio(uri)
        emb, _ = _embed_one(audio, sr, embedder, hop_size=hop_seconds, center=center, uri=uri)
        out.append(emb)
    if not out:
        return np.zeros((0, 0, embedder.emb_dim), np.float32)
    t = min(e.shape[0] for e in out)
    return np.stack([e[:t] for e in out]).astype(np.float32)


def int8_embedder(tflite_path: str | Path, *, window_samples: int | None = None):
    """An Embedder running a full-int8 student trunk in the TFLite interpreter.

    The log-mel front-end is computed as on the device (numpy reference of the
    student front-end), quantised with the model's input scale / zero point; the
    int8 output is dequantised. Reference kernels (bit-exact with TFLite-Micro).
    ``window_samples`` (8-kHz samples per window) defaults to the one recorded in
    ``deploy_report.json`` beside the model.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from sea_core.api import Embedder
    from sea_core.deploy.graph import dequantize_output, inspect_model, quantize_input
    from sea_core.frontends import kapre_logmel
    from sea_core.params import STUDENT_MEL64

    path = Path(tflite_path)
    if not path.is_file():
        raise DataError(f"{path}: no such TFLite model")
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    if inp["dtype"] != np.int8 or outp["dtype"] != np.int8:
        raise ParameterError(f"{path}: not a full-int8 model (input {inp['dtype']}, output {outp['dtype']})")
    n_frames = int(inp["shape"][2])
    if window_samples is None:
        report = path.parent / "deploy_report.json"
        window_samples = (json.loads(report.read_text()).get("window_samples")
                          if report.is_file() else None)
        if window_samples is None:
            raise DataError(f"{path}: window length unknown; pass window_samples or keep "
                            f"deploy_report.json (with 'window_samples') beside the model")
    window = int(window_samples)
    if STUDENT_MEL64.n_frames(window) != n_frames:
        raise ParameterError(f"{path}: takes {n_frames} frames but {window} samples give "
                             f"{STUDENT_MEL64.n_frames(window)}")
    info = inspect_model(path.read_bytes())

    def embed(windows: np.ndarray) -> np.ndarray:
        q = quantize_input(kapre_logmel(np.asarray(windows, np.float32), STUDENT_MEL64), info.input)
        out = np.empty((len(q), int(outp["shape"][-1])), np.float32)
        for i in range(len(q)):
            interp.set_tensor(inp["index"], q[i].reshape(inp["shape"]))
            interp.invoke()
            out[i] = dequantize_output(interp.get_tensor(outp["index"]).reshape(-1), info.output)
        return out

    return Embedder(model_id=f"int8:{path.name}", sample_rate=STUDENT_MEL64.sample_rate,
                    window_samples=window, emb_dim=int(outp["shape"][-1]), embed=embed)


# --------------------------------------------------------------------------- classifiers
def _autopool_layer():
    import keras
    from keras import ops

    class AutoPool1D(keras.layers.Layer):
        """Adaptive pooling over time (McFee et al. 2018): softmax(alpha*x)-weighted mean."""

        def build(self, input_shape):
            self.alpha = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="alpha")

        def call(self, x):
            weights = ops.softmax(x * self.alpha, axis=1)
            return ops.sum(x * weights, axis=1)

    return AutoPool1D()


def train_mil(x: dict[str, np.ndarray], y: dict[str, np.ndarray], *, params: DownstreamParams,
              seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Train the MIL classifier on train, keep the best validate loss; returns scores per split."""
    import keras
    from sklearn.preprocessing import StandardScaler

    keras.utils.set_random_seed(seed)
    t, d = x["train"].shape[1:]
    scaler = StandardScaler().fit(x["train"].reshape(-1, d))
    xs = {s: scaler.transform(v.reshape(-1, d)).reshape(v.shape).astype(np.float32)
          for s, v in x.items() if len(v)}
    n_classes = y["train"].shape[1]
    inputs = keras.Input((t, d))
    h = inputs
    for units in params.hidden_units:
        h = keras.layers.TimeDistributed(keras.layers.Dense(
            units, activation="relu", kernel_regularizer=keras.regularizers.l2(params.l2)))(h)
    h = keras.layers.TimeDistributed(keras.layers.Dense(n_classes, activation="sigmoid"))(h)
    model = keras.Model(inputs, _autopool_layer()(h))
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss="binary_crossentropy")
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience,
                                         restore_best_weights=True)
    hist = model.fit(xs["train"], y["train"], validation_data=(xs["validate"], y["validate"]),
                     epochs=params.epochs, batch_size=params.batch_size, callbacks=[stop], verbose=0,
                     shuffle=True)
    scores = {s: model.predict(v, verbose=0) for s, v in xs.items()}
    return scores, {"epochs_run": len(hist.history["loss"]),
                    "best_val_loss": float(min(hist.history["val_loss"]))}


def train_logreg(x: dict[str, np.ndarray], y: dict[str, np.ndarray], *, seed: int):
    """Mean-pooled embeddings -> scaler -> one logistic regression per class (C chosen on validate)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.preprocessing import StandardScaler

    pooled = {s: v.mean(axis=1) for s, v in x.items() if len(v)}
    scaler = StandardScaler().fit(pooled["train"])
    pooled = {s: scaler.transform(v) for s, v in pooled.items()}
    scores = {s: np.zeros((len(v), y["train"].shape[1])) for s, v in pooled.items()}
    chosen = []
    for j in range(y["train"].shape[1]):
        ytr = y["train"][:, j]
        if ytr.min() == ytr.max():  # a class absent (or always present) in train: constant score
            for s in scores:
                scores[s][:, j] = ytr[0]
            chosen.append(None)
            continue
        best = None
        for c in (0.01, 0.1, 1.0, 10.0):
            clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(pooled["train"], ytr)
            val = clf.predict_proba(pooled["validate"])[:, 1]
            ap = average_precision_score(y["validate"][:, j], val) if y["validate"][:, j].any() else 0
            if best is None or ap > best[0]:
                best = (ap, c, clf)
        chosen.append(best[1])
        for s in scores:
            scores[s][:, j] = best[2].predict_proba(pooled[s])[:, 1]
    return scores, {"C": chosen}


# --------------------------------------------------------------------------- orchestration
def parse_model_spec(spec: str, *, batch_size: int = 64):
    """'teacher[:NAME]' | 'student:PATH_OR_ID' | 'int8:PATH.tflite' -> (label, Embedder)."""
    from sea_core.api import load_embedder

    kind, _, arg = spec.partition(":")
    if kind == "teacher":
        return f"teacher:{arg or 'aisfx'}", load_embedder(model_type=arg or "aisfx", batch_size=batch_size)
    if kind == "student":
        if not arg:
            raise ParameterError("student:PATH needs a .keras path or a store id")
        return f"student:{Path(arg).name}", load_embedder(model=arg, batch_size=batch_size)
    if kind == "int8":
        if not arg:
            raise ParameterError("int8:PATH needs a .tflite path")
        return f"int8:{Path(arg).name}", int8_embedder(arg)
    raise ParameterError(f"model spec {spec!r}: expected teacher[:NAME], student:PATH or int8:PATH")


def evaluate(*, annotations: str, audio_dir: str, models: list[str], out: str | None = None,
             params: DownstreamParams = DOWNSTREAM_QUICK, seed: int = 0,
             embedders: dict | None = None, progress: bool = False) -> dict:
    """Evaluate each model; returns (and writes ``OUT/evaluation.json``) the AUPRC table.

    ``progress``: a tqdm bar per model and split while its clips are embedded.
    """
    data = read_annotations(annotations)
    if not data.files["train"] or not data.files["validate"]:
        raise DataError(f"{annotations}: needs clips in both 'train' and 'validate' splits "
                        f"(have {', '.join(f'{s}={len(v)}' for s, v in data.files.items())})")
    missing = [f for s in SPLITS for f in data.files[s] if not (Path(audio_dir) / f).exists()]
    if missing:
        raise DataError(f"{audio_dir}: {len(missing)} annotated clip(s) missing, e.g. {missing[0]}")
    embedders = dict(embedders or {})
    for spec in models:
        label, emb = parse_model_spec(spec)
        embedders[label] = emb
    results = {"annotations": str(annotations), "audio_dir": str(audio_dir), "classes": data.classes,
               "clips": {s: len(v) for s, v in data.files.items()},
               "params": {"hop_seconds": params.eval_hop_seconds, "center": params.eval_center,
                          "epochs": params.epochs, "learning_rate": params.learning_rate,
                          "patience": params.patience}, "models": {}}
    for label, embedder in embedders.items():
        start = time.perf_counter()
        x = {s: embed_clips(embedder, audio_dir, data.files[s], hop_seconds=params.eval_hop_seconds,
                            center=params.eval_center, progress=progress,
                            desc=f"{label} [{s}]") for s in SPLITS}
        embed_seconds = time.perf_counter() - start
        mil_scores, mil_info = train_mil(x, data.labels, params=params, seed=seed)
        lr_scores, lr_info = train_logreg(x, data.labels, seed=seed)
        entry = {"model_id": embedder.model_id, "emb_dim": embedder.emb_dim,
                 "windows_per_clip": int(x["train"].shape[1]), "embed_seconds": embed_seconds,
                 "mil": {"train_info": mil_info}, "logreg": {"train_info": lr_info}}
        for split in ("validate", "test"):
            if len(data.files[split]):
                entry["mil"][split] = metrics(data.labels[split], mil_scores[split], data.classes)
                entry["logreg"][split] = metrics(data.labels[split], lr_scores[split], data.classes)
        results["models"][label] = entry
        log.info("%s: MIL micro-AUPRC test %s validate %s", label,
                 entry["mil"].get("test", {}).get("micro_auprc"),
                 entry["mil"]["validate"]["micro_auprc"])
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "evaluation.json").write_text(json.dumps(results, indent=2))
        (Path(out) / "evaluation.md").write_text(table_markdown(results))
    return results


def table_markdown(results: dict) -> str:
    lines = ["| model | dim | classifier | split | micro-AUPRC | macro-AUPRC | micro-F1 |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for label, entry in results["models"].items():
        for clf in ("mil", "logreg"):
            for split in ("test", "validate"):
                if split in entry[clf]:
                    m = entry[clf][split]
                    lines.append(f"| {label} | {entry['emb_dim']} | {clf} | {split} | "
                                 f"{fmt(m['micro_auprc'])} | {fmt(m['macro_auprc'])} | {fmt(m['micro_f1'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sea evaluate",
                                     description="Downstream SONYC-UST-layout evaluation.")
    parser.add_argument("--annotations", required=True)
    parser.add_argument("--audio-dir", required=True)
    parser.add_argument("--models", required=True,
                        help="comma list: teacher[:aisfx|l3|l3-random], student:PATH_OR_ID, int8:PATH")
    parser.add_argument("--out", required=True)
    parser.add_argument("--hop", type=float, default=DOWNSTREAM_QUICK.eval_hop_seconds)
    parser.add_argument("--epochs", type=int, default=DOWNSTREAM_QUICK.epochs)
    parser.add_argument("--lr", type=float, default=DOWNSTREAM_QUICK.learning_rate)
    parser.add_argument("--patience", type=int, default=DOWNSTREAM_QUICK.patience)
    parser.add_argument("--reference", action="store_true",
                        help="the authors' schedule: hop 0.1 s uncentred, 1500 epochs at lr 1e-5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.reference:
        params = DOWNSTREAM
    else:
        from dataclasses import replace
        params = replace(DOWNSTREAM_QUICK, eval_hop_seconds=args.hop, epochs=args.epochs,
                         learning_rate=args.lr, patience=args.patience)
    results = evaluate(annotations=args.annotations, audio_dir=args.audio_dir,
                       models=[m for m in args.models.split(",") if m], out=args.out,
                       params=params, seed=args.seed, progress=not args.quiet)
    print(table_markdown(results))
    return 0
