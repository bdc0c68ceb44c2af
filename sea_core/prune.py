"""``sea prune``: a sparse teacher, optionally fine-tuned by distillation (edgel3's ``kd`` flavour).

1. Magnitude pruning of the teacher's conv kernels to ``--sparsity`` percent
   (:func:`sea_core.models.sparse.prune_model`).
2. ``--retrain kd``: the pruned network is trained toward the *unpruned*
   teacher's embeddings (MSE) on windows of the upstream corpus, with the
   sparsity mask kept fixed (pruned weights are re-zeroed after every step;
   BatchNorm statistics are frozen).
3. The result is registered in the model store (``$SEA_HOME/models``) with its
   lineage (base teacher, sparsity, retrain, frames, windows, epochs, losses)
   and served by ``load_embedder(model_type='sparse', sparsity=S)`` /
   ``sea embed --model-type sparse``.

Where the teacher's audio comes from: the frames hold only the 8-kHz student
audio, so the windows are **re-decoded** from each row's ``uri`` at the
teacher's own rate, cut with the embed run's hop/centring (``run_summary.json``
settings) and taken at the row's ``window_index``; the file's sha256 must still
equal the row's ``recording_id`` (else a :class:`DataError` names the file).
Nothing extra is stored by the embed stage.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from sea_core.errors import DataError, ParameterError
from sea_core.params import TEACHER_BATCH_SIZE, TEACHER_NAMES

__all__ = ["teacher_windows_from_frames", "distill_sparse", "prune_teacher", "register_sparse",
           "load_sparse_teacher", "RETRAIN", "main"]

log = logging.getLogger(__name__)

RETRAIN = ("none", "kd")
WEIGHTS_FILE = "model.weights.h5"


# --------------------------------------------------------------------------- data
def _embed_settings(frames: Path) -> dict:
    path = Path(frames) / "run_summary.json"
    if not path.is_file():
        raise DataError(f"{path}: not found (--frames must be a `sea pipeline embed` output)")
    doc = json.loads(path.read_text())
    settings = doc.get("settings") or {}
    for key in ("hop_seconds", "center"):
        if key not in settings:
            raise DataError(f"{path}: settings lack {key!r}")
    return settings


def teacher_windows_from_frames(frames, teacher, *, max_windows: int, seed: int = 0) -> np.ndarray:
    """``[N, teacher window]`` float32 windows of ``N <= max_windows`` seeded random frames rows,
    re-decoded from their source files at the teacher's sample rate."""
    import pyarrow as pa

    from sea_core.datasets.frames import list_partitions, read_partition
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import decode_bytes, resample

    frames = Path(frames)
    settings = _embed_settings(frames)
    parts = list_partitions(frames)
    if not parts:
        raise DataError(f"{frames}: no frames partitions")
    table = pa.concat_tables([read_partition(p, ["uri", "recording_id", "window_index"]) for p in parts])
    rng = np.random.default_rng(seed)
    n = table.num_rows
    rows = np.sort(rng.choice(n, size=min(int(max_windows), n), replace=False))
    uris = np.asarray(table.column("uri").to_pylist(), dtype=object)[rows]
    rids = np.asarray(table.column("recording_id").to_pylist(), dtype=object)[rows]
    widx = table.column("window_index").to_numpy()[rows]
    spec = teacher.spec
    out = np.empty((rows.size, spec.window_samples), np.float32)
    for uri in sorted(set(uris)):
        sel = np.flatnonzero(uris == uri)
        try:
            with open(uri, "rb") if "://" not in uri else _fs_open(uri) as f:
                data = f.read()
        except OSError as exc:
            raise DataError(f"{uri}: cannot re-decode the teacher audio ({exc})") from exc
        if hashlib.sha256(data).hexdigest() != rids[sel[0]]:
            raise DataError(f"{uri}: changed since it was embedded (sha256 != recording_id); "
                            "re-run the embed stage")
        audio, sr = decode_bytes(data, uri)
        audio = resample(audio, sr, spec.sample_rate)
        win, _ = frame_audio(audio, sr=spec.sample_rate, window_samples=spec.window_samples,
                             hop_seconds=float(settings["hop_seconds"]), center=bool(settings["center"]),
                             uri=uri)
        if int(widx[sel].max()) >= win.shape[0]:
            raise DataError(f"{uri}: window_index {int(widx[sel].max())} beyond its {win.shape[0]} windows")
        out[sel] = win[widx[sel]]
    return out


def _fs_open(uri: str):
    import fsspec

    return fsspec.open(uri, "rb").open()


# --------------------------------------------------------------------------- distillation
def _masks(model, report) -> list[tuple[object, np.ndarray]]:
    from sea_core.models.layers import walk_layers

    names = {s.layer for s in report.layers}
    return [(l.kernel, (np.asarray(l.kernel.numpy()) != 0).astype(np.float32))
            for l in walk_layers(model) if l.name in names]


def distill_sparse(pruned, masks, windows: np.ndarray, targets: np.ndarray, *, epochs: int,
                   batch_size: int, learning_rate: float, seed: int) -> list[float]:
    """Train ``pruned`` toward ``targets`` (MSE), re-applying ``masks`` after every step.

    BatchNormalization layers are frozen (inference statistics). Returns the loss per epoch.
    """
    import keras

    from sea_core.models.layers import walk_layers

    keras.utils.set_random_seed(int(seed))
    for layer in walk_layers(pruned):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False

    class _KeepMask(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for var, m in masks:
                var.assign(var * m)

    pruned.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    hist = pruned.fit(windows, targets, epochs=int(epochs), batch_size=int(batch_size), shuffle=True,
                      verbose=0, callbacks=[_KeepMask()])
    for var, m in masks:   # exact zeros whatever the last step did
        var.assign(var * m)
    return [float(v) for v in hist.history["loss"]]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    return float(np.mean(np.sum(a[ok] * b[ok], axis=1) / (na[ok] * nb[ok]))) if ok.any() else 0.0


def _predict(model, x: np.ndarray, batch: int = TEACHER_BATCH_SIZE) -> np.ndarray:
    return np.concatenate([np.asarray(model(x[i:i + batch], training=False))
                           for i in range(0, len(x), batch)], axis=0)


def prune_teacher(*, teacher: str, sparsity: float, retrain: str = "none", frames=None,
                  teacher_options: dict | None = None, max_windows: int = 256, epochs: int = 3,
                  batch_size: int = 16, learning_rate: float = 1e-4, seed: int = 0,
                  holdout: float = 0.25, register: bool = True) -> dict:
    """Prune ``teacher`` to ``sparsity`` %, optionally distil (``retrain='kd'``), register it.

    Returns a record: prune report, cosine to the dense teacher on held-out windows
    before / after distillation, losses, wall seconds, and the store entry id.
    """
    from sea_core.models.sparse import prune_model
    from sea_core.models.teachers import get_teacher

    if retrain not in RETRAIN:
        raise ParameterError(f"--retrain must be one of {RETRAIN}, got {retrain!r}")
    if retrain == "kd" and not frames:
        raise ParameterError("--retrain kd needs --frames (a `sea pipeline embed` output)")
    for name, v, lo in (("max_windows", max_windows, 2), ("epochs", epochs, 1), ("batch_size", batch_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ParameterError(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")
    t0 = time.perf_counter()
    options = dict(teacher_options or {})
    base = get_teacher(teacher, **options)
    dense = base.keras_model()
    pruned, report = prune_model(dense, sparsity, allow_any=True, copy=True)
    record = {"base": str(teacher), "base_options": options, "base_teacher_id": base.teacher_id,
              "sparsity": float(sparsity), "retrain": retrain, "prune": report.to_dict(),
              "frames": str(frames) if frames else None, "seed": int(seed)}
    if frames:
        windows = teacher_windows_from_frames(frames, base, max_windows=max_windows, seed=seed)
        targets = _predict(dense, windows)
        n_hold = max(1, int(round(holdout * len(windows))))
        x_tr, y_tr, x_ho, y_ho = windows[n_hold:], targets[n_hold:], windows[:n_hold], targets[:n_hold]
        record.update(windows=int(len(windows)), train_windows=int(len(x_tr)), holdout_windows=n_hold,
                      cosine_before=_cosine(_predict(pruned, x_ho), y_ho))
        if retrain == "kd":
            masks = _masks(pruned, report)
            t1 = time.perf_counter()
            record["losses"] = distill_sparse(pruned, masks, x_tr, y_tr, epochs=epochs,
                                              batch_size=batch_size, learning_rate=learning_rate,
                                              seed=seed)
            record.update(epochs=int(epochs), learning_rate=float(learning_rate),
                          distill_seconds=round(time.perf_counter() - t1, 2))
            nz = sum(int(np.count_nonzero(v.numpy())) for v, _ in masks)
            kept = sum(int(m.sum()) for _, m in masks)
            if nz > kept:
                raise RuntimeError(f"sparsity mask not kept: {nz} non-zero > {kept} kept")
        record["cosine_after"] = _cosine(_predict(pruned, x_ho), y_ho)
    record["teacher_id"] = (f"sparse({base.teacher_id},sparsity={float(sparsity):g},retrain={retrain}"
                            + (f",seed={seed})" if retrain == "kd" else ")"))
    if register:
        entry = register_sparse(pruned, base, record)
        record["model_id"] = entry.model_id
    record["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return record


# --------------------------------------------------------------------------- store
def register_sparse(model, base, record: dict):
    """Store the pruned weights as a ``kind='sparse'`` entry (lineage in ``extra``)."""
    from dataclasses import asdict

    from sea_core.models.store import META_FILE, StoreEntry, list_entries
    from sea_core.paths import models_dir
    from sea_core.storage import publish_bytes, publish_text, sha256_file

    root = models_dir()
    with tempfile.TemporaryDirectory(prefix="sea-prune-") as tmp:  # Keras saves to a local file
        local = Path(tmp) / WEIGHTS_FILE
        model.save_weights(local)
        h = sha256_file(local)
        model_id = f"sparse{record['sparsity']:g}-{record['retrain']}-{h[:12]}".replace(".", "p")
        existing = [e for e in list_entries() if e.model_id == model_id]
        if existing:
            return existing[0]
        sequence = max([e.sequence for e in list_entries()], default=0) + 1
        entry = StoreEntry(model_id=model_id, emb_dim=int(base.spec.emb_dim), head="linear",
                           window_seconds=base.spec.window_seconds,
                           teacher_id=record["teacher_id"], source=f"sea prune {record['base']}",
                           sequence=sequence, dataset_fingerprint=record.get("frames"),
                           extra={"kind": "sparse", **{k: v for k, v in record.items()
                                                       if k not in ("prune",)},
                                  "prune": {k: v for k, v in record["prune"].items()
                                            if k != "layers"}})
        publish_bytes(root / model_id / WEIGHTS_FILE, local.read_bytes())
    # meta.json last: the store lists an entry only once its meta.json exists
    publish_text(root / model_id / META_FILE, json.dumps(asdict(entry), indent=2, sort_keys=True))
    return entry


def load_sparse_teacher(entry):
    """A Teacher for a ``kind='sparse'`` store entry (base network + stored pruned weights)."""
    from sea_core.models.teacher_base import Teacher
    from sea_core.models.teachers import get_teacher

    x = entry.extra
    base = get_teacher(x["base"], **dict(x.get("base_options") or {}))
    weights = Path(entry.path).parent / WEIGHTS_FILE
    if not weights.is_file():
        from sea_core.errors import ModelNotFoundError
        raise ModelNotFoundError(f"store entry {entry.model_id}: {weights} is missing")

    class _Stored(Teacher):
        def _build_model(self):
            import keras

            model = keras.models.clone_model(base.keras_model())
            model.load_weights(weights)
            return model

    return _Stored(spec=base.spec, teacher_id=entry.teacher_id, is_random=base.is_random,
                   batch_size=base.batch_size)


def latest_sparse(sparsity: float):
    """Newest ``kind='sparse'`` store entry of ``sparsity`` (None if there is none)."""
    from sea_core.models.store import list_entries

    found = [e for e in list_entries() if e.extra.get("kind") == "sparse"
             and float(e.extra.get("sparsity", -1)) == float(sparsity)]
    return found[-1] if found else None


# --------------------------------------------------------------------------- CLI
def _options(pairs) -> dict:
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ParameterError(f"--teacher-opt takes KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sea prune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True,
                    help=f"{' | '.join(TEACHER_NAMES)} | a .keras teacher file")
    ap.add_argument("--teacher-opt", action="append", metavar="KEY=VALUE")
    ap.add_argument("--sparsity", type=float, required=True, help="percent of conv kernel zeros")
    ap.add_argument("--retrain", default="none", choices=RETRAIN)
    ap.add_argument("--frames", help="`sea pipeline embed` output (needed by --retrain kd)")
    ap.add_argument("--max-windows", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the record as JSON here")
    a = ap.parse_args(argv)
    rec = prune_teacher(teacher=a.teacher, teacher_options=_options(a.teacher_opt), sparsity=a.sparsity,
                        retrain=a.retrain, frames=a.frames, max_windows=a.max_windows, epochs=a.epochs,
                        batch_size=a.batch_size, learning_rate=a.lr, seed=a.seed)
    if a.out:
        from sea_core.storage import publish_text
        publish_text(a.out, json.dumps(rec, indent=2, sort_keys=True))
    cos = (f"; cosine to dense {rec['cosine_before']:.4f} -> {rec['cosine_after']:.4f}"
           if "cosine_after" in rec else "")
    print(f"sea prune: {rec['model_id']} ({rec['teacher_id']}), {rec['prune']['achieved']:.2f} % zeros"
          f"{cos}; {rec['wall_seconds']:.1f} s")
    return 0
