"""The local model store (``$SEA_HOME/models``) and ``sea models list|show|import``.

Every trained student is registered with what produced it: teacher id,
embedding dim, head, window, PCA artifact and dataset fingerprint.
``get_embedding(model_type='sea', emb_dim=D)`` loads the newest registered
student for ``D``; with none, a :class:`ModelNotFoundError` says how to get one.
Entries are published file by file (``sea_core.storage``), ``meta.json`` last: an
entry is listed only once its ``meta.json`` exists.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sea_core.errors import ModelError, ModelNotFoundError, ParameterError
from sea_core.params import STUDENT_EMB_DIMS, STUDENT_MEL64
from sea_core.paths import models_dir
from sea_core.storage import publish_bytes, publish_text, sha256_file

__all__ = ["StoreEntry", "register", "list_entries", "get_entry", "latest", "load_student",
           "load_keras_student", "import_file", "check_model_id", "main"]

MODEL_FILE = "model.keras"
META_FILE = "meta.json"
STORE_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class StoreEntry:
    """One registered student."""

    model_id: str
    emb_dim: int
    head: str
    window_seconds: float
    teacher_id: str
    source: str
    sequence: int
    pca_artifact: str | None = None
    dataset_fingerprint: str | None = None
    extra: dict = field(default_factory=dict)
    version: int = STORE_VERSION

    def __post_init__(self):
        check_model_id(self.model_id)

    @property
    def path(self) -> Path:
        return models_dir() / self.model_id / MODEL_FILE


_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_model_id(model_id, where: str = "model_id") -> str:
    """A store id is one safe path component (no '/', '..', leading dot); else ModelError."""
    if not isinstance(model_id, str) or not _SAFE_ID.match(model_id) or ".." in model_id:
        raise ModelError(f"{where}: invalid model id {model_id!r} (one path component of "
                         f"letters, digits, '.', '_' or '-'); refusing to use it")
    return model_id


def list_entries() -> list[StoreEntry]:
    """All entries, oldest first (by registration sequence).

    Raises
    ------
    ModelError
        A ``meta.json`` that cannot be read (the message names it).
    """
    root = models_dir()
    entries = []
    if root.is_dir():
        for meta in root.glob(f"*/{META_FILE}"):
            try:
                doc = json.loads(meta.read_text())
                if not isinstance(doc, dict):
                    raise ValueError("not a JSON object")
                check_model_id(doc.get("model_id"), str(meta))
                if doc["model_id"] != meta.parent.name:
                    raise ModelError(f"{meta}: model_id {doc['model_id']!r} does not match its "
                                     f"directory {meta.parent.name!r}; remove its directory")
                entries.append(StoreEntry(**doc))
            except ModelError:
                raise
            except (OSError, ValueError, TypeError, KeyError) as exc:
                raise ModelError(f"{meta}: unreadable store entry ({type(exc).__name__}: {exc}); "
                                 f"remove its directory") from exc
    return sorted(entries, key=lambda e: (e.sequence, e.model_id))


def get_entry(model_id: str) -> StoreEntry:
    """The entry with id ``model_id``, or the only one whose id starts with it.

    Raises
    ------
    ModelNotFoundError
        No such entry.
    ParameterError
        The prefix matches several entries (the message lists them).
    """
    entries = list_entries()
    for entry in entries:
        if entry.model_id == model_id:
            return entry
    matches = [e for e in entries if model_id and e.model_id.startswith(model_id)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ParameterError(f"model id prefix {model_id!r} is ambiguous: "
                             f"{[e.model_id for e in matches]}")
    raise ModelNotFoundError(f"no model {model_id!r} in the store {models_dir()}; "
                             f"`sea models list` shows what is registered")


def latest(emb_dim: int) -> StoreEntry:
    """Newest registered student for ``emb_dim``."""
    if emb_dim not in STUDENT_EMB_DIMS:
        raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_EMB_DIMS)}, got {emb_dim!r}")
    found = [e for e in list_entries() if e.emb_dim == emb_dim and not e.extra.get("kind")]  # not `sea prune`'s
    if not found:
        raise ModelNotFoundError(
            f"no SEA student with emb_dim={emb_dim} is registered in {models_dir()}. "
            f"Get one by training it (`make demo`, or `sea run --emb-dim {emb_dim} --out DIR`, "
            f"which trains and registers a student), or import a file "
            f"(`sea models import PATH --emb-dim {emb_dim}`, e.g. the authors' SEA-64 h5 for 64). "
            f"sea never falls back to random weights.")
    return found[-1]


def register(model_path: str | os.PathLike, *, emb_dim: int, head: str, window_seconds: float,
             teacher_id: str, source: str, pca_artifact: str | None = None,
             dataset_fingerprint: str | None = None, extra: dict | None = None) -> StoreEntry:
    """Copy a saved ``.keras`` student (with its front-end) into the store.

    Registering the same file twice returns the existing entry. The newest
    entry for a dim (highest ``sequence``) is what ``get_embedding(model_type='sea',
    emb_dim=D)`` uses.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelNotFoundError(f"{model_path}: no such model file to register")
    if isinstance(emb_dim, bool) or emb_dim not in STUDENT_EMB_DIMS:
        raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_EMB_DIMS)}, got {emb_dim!r}")
    if head not in ("relu", "linear"):
        raise ParameterError(f"head must be 'relu' or 'linear', got {head!r}")
    digest = sha256_file(model_path)
    model_id = f"sea{emb_dim}-{head}-{digest[:12]}"
    existing = [e for e in list_entries() if e.model_id == model_id]
    if existing:
        return existing[0]
    sequence = max([e.sequence for e in list_entries()], default=0) + 1
    entry = StoreEntry(model_id=model_id, emb_dim=int(emb_dim), head=head,
                       window_seconds=float(window_seconds), teacher_id=teacher_id, source=source,
                       sequence=sequence, pca_artifact=pca_artifact,
                       dataset_fingerprint=dataset_fingerprint, extra=dict(extra or {}))
    target = models_dir() / model_id
    publish_bytes(target / MODEL_FILE, model_path.read_bytes())
    publish_text(target / META_FILE, json.dumps(asdict(entry), indent=2, sort_keys=True))  # last
    return entry


def load_keras_student(path: str | os.PathLike):
    """Load a ``.keras`` student (audio windows in, embeddings out).

    Raises
    ------
    ModelNotFoundError
        No such file.
    ModelError
        The file cannot be loaded by Keras.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such model file")
    import zipfile

    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        # Keras would say "File not found" for a file that exists
        raise ModelError(f"{path}: cannot load the Keras model (not a .keras archive: not a "
                         f"valid zip file; corrupt or not a model)")
    import keras

    from sea_core.models import layers  # noqa: F401  registers the front-end layers

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad archive
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(f"{path}: cannot load the Keras model ({type(exc).__name__}: {first})") \
            from exc


def load_student(entry: StoreEntry):
    """Load a registered student (audio windows in, embeddings out)."""
    if not entry.path.is_file():
        raise ModelNotFoundError(f"store entry {entry.model_id}: {entry.path} is missing; "
                                 f"register the model again")
    return load_keras_student(entry.path)


def import_file(path: str | os.PathLike, *, emb_dim: int, head: str = "relu") -> StoreEntry:
    """Register a user's weights file: a ``.keras`` student, or the authors' SEA-64 ``.h5``."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such file")
    from sea_core.models.students import build_student, load_sea64_h5
    from sea_core.params import L3_TEACHER, student_spec

    if path.suffix == ".keras":
        from sea_core.models.students import PROJECTION_LAYER

        model = load_keras_student(path)
        in_shape, out_shape = tuple(model.input_shape), tuple(model.output_shape)
        if len(in_shape) != 2 or not isinstance(in_shape[1], int) or len(out_shape) != 2:
            raise ParameterError(f"{path}: a student must map 8-kHz audio windows (B, S) to "
                                 f"(B, D); this model maps {in_shape} -> {out_shape}")
        dim = int(out_shape[1])
        if dim != emb_dim:
            raise ParameterError(f"{path}: model outputs {dim}-d embeddings, --emb-dim says {emb_dim}")
        names = {layer.name for layer in model.layers}
        head = "linear" if PROJECTION_LAYER in names else "relu"
        window_seconds = float(in_shape[1]) / STUDENT_MEL64.sample_rate
        return register(path, emb_dim=emb_dim, head=head, window_seconds=window_seconds,
                        teacher_id="unknown", source=f"import:{path.name}")
    if path.suffix in (".h5", ".hdf5"):
        if emb_dim != 64 or head != "relu":
            raise ParameterError(f"{path}: only the authors' SEA-64 h5 (emb_dim 64, relu head) "
                                 f"can be imported from HDF5")
        spec = student_spec(64, L3_TEACHER, head="relu")
        model = build_student(spec, with_frontend=True)
        load_sea64_h5(model, path)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / MODEL_FILE
            model.save(out)
            return register(out, emb_dim=64, head="relu", window_seconds=spec.window_seconds,
                            teacher_id="l3-openl3 (SONYC upstream, authors' release)",
                            source=f"import:{path.name}",
                            extra={"license": "MIT, Copyright (c) 2019 Sangeeta Kumari (edgel3)"})
    raise ParameterError(f"{path}: unsupported model file type {path.suffix!r} (.keras or .h5)")


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sea models", description="Manage the local model store.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list registered students")
    show = sub.add_parser("show", help="show one entry")
    show.add_argument("model_id")
    imp = sub.add_parser("import", help="register a .keras student or the authors' SEA-64 .h5")
    imp.add_argument("path")
    imp.add_argument("--emb-dim", type=int, required=True, choices=STUDENT_EMB_DIMS)
    imp.add_argument("--head", default="relu", choices=("relu", "linear"),
                     help="for .h5 only (a .keras file's head is read from the model)")
    args = parser.parse_args(argv)
    if args.action == "list":
        entries = list_entries()
        if not entries:
            print(f"no models registered in {models_dir()}")
        for e in entries:
            print(f"{e.model_id}\temb_dim={e.emb_dim}\thead={e.head}\twindow={e.window_seconds:.3f}s"
                  f"\tteacher={e.teacher_id}\tsource={e.source}")
    elif args.action == "show":
        print(json.dumps(asdict(get_entry(args.model_id)), indent=2, sort_keys=True))
    else:
        entry = import_file(args.path, emb_dim=args.emb_dim, head=args.head)
        print(f"registered {entry.model_id} ({entry.path})")
    return 0
