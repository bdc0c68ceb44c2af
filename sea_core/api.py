"""edgel3-compatible embedding API: ``get_embedding``, ``process_file(s)`` and ``sea embed``.

Differences from edgel3 (each is one of its bugs, reference §(h)): the sample
rate and window come from the model that is actually used, never from a
default ``model_type`` (bug 2); the CLI forwards ``--model-type`` (bug 2);
``center=False`` really disables centring (bug 6); every documented sparsity
is accepted (bug 4); no weights are downloaded except through the package
registry (bug 5).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sea_core.errors import ParameterError, SeaError
from sea_core.params import API, SPARSE_L3_SPARSITIES, STUDENT_EMB_DIMS, STUDENT_MEL64

__all__ = ["Embedder", "load_embedder", "get_embedding", "process_file", "process_files", "main"]

log = logging.getLogger(__name__)


@dataclass
class Embedder:
    """Anything that maps fixed-length audio windows to embeddings."""

    model_id: str
    sample_rate: int
    window_samples: int
    emb_dim: int
    embed: Callable[[np.ndarray], np.ndarray]
    """windows [N, window_samples] float32 -> [N, emb_dim] float32"""


def _keras_embedder(model, model_id: str, batch_size: int) -> Embedder:
    window = model.input_shape[-1]
    if not isinstance(window, int):
        raise ParameterError(f"{model_id}: the model must take fixed-length audio windows "
                             f"(input shape {model.input_shape})")

    def embed(windows: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(windows, batch_size=batch_size, verbose=0), dtype=np.float32)

    return Embedder(model_id=model_id, sample_rate=STUDENT_MEL64.sample_rate, window_samples=window,
                    emb_dim=int(model.output_shape[-1]), embed=embed)


def _teacher_embedder(teacher, batch_size: int) -> Embedder:
    def embed(windows: np.ndarray) -> np.ndarray:
        return teacher.embed(windows, batch_size=batch_size)

    return Embedder(model_id=teacher.teacher_id, sample_rate=teacher.spec.sample_rate,
                    window_samples=teacher.spec.window_samples, emb_dim=teacher.spec.emb_dim,
                    embed=embed)


def load_embedder(*, model_type: str = API.default_model_type, emb_dim: int = API.default_emb_dim,
                  model: Any = None, sparsity: float = 95.45, batch_size: int = API.default_batch_size,
                  teacher_weights: str | None = None) -> Embedder:
    """Resolve ``model_type`` / ``model`` to an :class:`Embedder`.

    Parameters
    ----------
    model_type : {'sea', 'sparse', 'aisfx', 'l3', 'l3-random'}
    emb_dim : int
        Student dimension for ``'sea'`` (512, 256, 128 or 64).
    model : None, str, keras.Model or Teacher
        A store id, a ``.keras`` file, a loaded Keras model or a teacher. When given,
        its own sample rate and window are used, whatever ``model_type`` says.
    """
    from sea_core.models.teachers import Teacher, get_teacher

    if model is not None:
        if isinstance(model, Embedder):
            return model
        if isinstance(model, Teacher):
            return _teacher_embedder(model, batch_size)
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            if path.suffix == ".keras" and path.is_file():
                from sea_core.models import layers  # noqa: F401
                import keras
                return _keras_embedder(keras.models.load_model(path, compile=False), str(path),
                                       batch_size)
            from sea_core.models import store
            entry = store.get_entry(str(model))
            return _keras_embedder(store.load_student(entry), entry.model_id, batch_size)
        if hasattr(model, "predict") and hasattr(model, "input_shape"):
            return _keras_embedder(model, getattr(model, "name", "keras-model"), batch_size)
        raise ParameterError(f"model must be a store id, a .keras path, a Keras model or a Teacher; "
                             f"got {type(model).__name__}")
    if model_type not in API.valid_model_types:
        raise ParameterError(f"model_type must be one of {API.valid_model_types}, got {model_type!r}")
    if model_type == "sea":
        if emb_dim not in STUDENT_EMB_DIMS:
            raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_EMB_DIMS)}, got {emb_dim!r}")
        from sea_core.models import store
        entry = store.latest(emb_dim)
        return _keras_embedder(store.load_student(entry), entry.model_id, batch_size)
    if model_type == "sparse":
        if sparsity not in SPARSE_L3_SPARSITIES:
            raise ParameterError(f"sparsity must be one of {SPARSE_L3_SPARSITIES}, got {sparsity!r}")
        from sea_core.models.sparse import sparse_teacher
        base = get_teacher("l3", weights=teacher_weights) if teacher_weights else get_teacher("l3")
        return _teacher_embedder(sparse_teacher(base, sparsity), batch_size)
    options = {"weights": teacher_weights} if (model_type == "l3" and teacher_weights) else {}
    return _teacher_embedder(get_teacher(model_type, **options), batch_size)


def _embed_one(audio: np.ndarray, sr: int, embedder: Embedder, *, hop_size: float,
               center: bool, uri: str) -> tuple[np.ndarray, np.ndarray]:
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import check_audio, resample, to_mono

    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"{uri}: sample rate must be a positive integer, got {sr!r}")
    if hop_size <= 0:
        raise ParameterError(f"hop_size must be > 0, got {hop_size!r}")
    mono = check_audio(to_mono(np.asarray(audio), uri=uri), uri)
    if sr != embedder.sample_rate:
        mono = resample(mono, int(sr), embedder.sample_rate)
    frames, ts = frame_audio(mono, sr=embedder.sample_rate, window_samples=embedder.window_samples,
                             hop_seconds=hop_size, center=center, uri=uri)
    return embedder.embed(frames), ts


def get_embedding(audio, sr, *, model_type: str = API.default_model_type,
                  emb_dim: int = API.default_emb_dim, hop_size: float = API.default_hop_seconds,
                  center: bool = True, batch_size: int = API.default_batch_size, model: Any = None,
                  sparsity: float = 95.45, verbose: bool = False):
    """Embeddings of audio with a SEA student or a teacher (edgel3-compatible).

    Parameters
    ----------
    audio : np.ndarray or list of np.ndarray
        Shape ``(N,)``, ``(N, C)`` or ``(C, N)``; a list gives a batch.
    sr : int or list of int
        Sample rate of each array; resampled to the model's own rate.
    model_type, emb_dim, model, sparsity
        See :func:`load_embedder`.
    hop_size : float
        Seconds between windows.
    center : bool
        Prepend half a window of zeros (timestamps then mark window centres).

    Returns
    -------
    emb : np.ndarray [T, D] (or a list)
    ts : np.ndarray [T] seconds (or a list)

    Raises
    ------
    SeaError
        Empty, too-short or non-finite audio, unknown model, no registered student.
    """
    embedder = load_embedder(model_type=model_type, emb_dim=emb_dim, model=model,
                             sparsity=sparsity, batch_size=batch_size)
    if isinstance(audio, (list, tuple)):
        srs = sr if isinstance(sr, (list, tuple)) else [sr] * len(audio)
        if len(srs) != len(audio):
            raise ParameterError(f"got {len(audio)} arrays but {len(srs)} sample rates")
        out = [_embed_one(a, s, embedder, hop_size=hop_size, center=center, uri=f"<array {i}>")
               for i, (a, s) in enumerate(zip(audio, srs))]
        return [e for e, _ in out], [t for _, t in out]
    return _embed_one(audio, sr, embedder, hop_size=hop_size, center=center, uri="<array>")


def _output_path(path: str, output_dir: str | None, suffix: str | None) -> Path:
    stem = Path(path).stem + (f"_{suffix}" if suffix else "")
    directory = Path(output_dir) if output_dir else Path(path).parent
    return directory / f"{stem}.npz"


def process_file(filepath: str, *, output_dir: str | None = None, suffix: str | None = None,
                 model_type: str = API.default_model_type, emb_dim: int = API.default_emb_dim,
                 hop_size: float = API.default_hop_seconds, center: bool = True,
                 batch_size: int = API.default_batch_size, model: Any = None,
                 sparsity: float = 95.45) -> Path:
    """Embed one file and write ``<name>.npz`` with ``embedding`` and ``timestamps``."""
    return process_files([filepath], output_dir=output_dir, suffix=suffix, model_type=model_type,
                         emb_dim=emb_dim, hop_size=hop_size, center=center, batch_size=batch_size,
                         model=model, sparsity=sparsity, raise_errors=True)[0]


def process_files(filepaths, *, output_dir: str | None = None, suffix: str | None = None,
                  model_type: str = API.default_model_type, emb_dim: int = API.default_emb_dim,
                  hop_size: float = API.default_hop_seconds, center: bool = True,
                  batch_size: int = API.default_batch_size, model: Any = None,
                  sparsity: float = 95.45, raise_errors: bool = False, progress: bool = False):
    """Embed many files with one loaded model.

    Returns the written paths; with ``raise_errors=False`` a bad file is logged and
    yields ``None`` in its place after the good files are written, so the caller
    can report every failure.
    """
    from sea_core.audio.io import read_audio

    embedder = load_embedder(model_type=model_type, emb_dim=emb_dim, model=model,
                             sparsity=sparsity, batch_size=batch_size)
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = []
    iterator = filepaths
    if progress:
        from tqdm import tqdm
        iterator = tqdm(filepaths, desc=f"embed ({embedder.model_id})", unit="file")
    for path in iterator:
        try:
            audio, sr = read_audio(str(path))
            emb, ts = _embed_one(audio, sr, embedder, hop_size=hop_size, center=center,
                                 uri=str(path))
        except SeaError as exc:
            if raise_errors:
                raise
            log.error("%s", exc)
            written.append(None)
            continue
        out = _output_path(str(path), output_dir, suffix)
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, embedding=emb, timestamps=ts)
        os.replace(tmp, out)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    """``sea embed PATH... --output-dir DIR --model-type ... --emb-dim ... --hop-size ...``."""
    parser = argparse.ArgumentParser(prog="sea embed",
                                     description="Embed audio files; writes <name>.npz per file.")
    parser.add_argument("inputs", nargs="+", help="audio files (any fsspec URL)")
    parser.add_argument("--output-dir", "-o", default=None)
    parser.add_argument("--suffix", "-x", default=None)
    parser.add_argument("--model-type", default=API.default_model_type, choices=API.valid_model_types)
    parser.add_argument("--emb-dim", type=int, default=API.default_emb_dim, choices=STUDENT_EMB_DIMS)
    parser.add_argument("--model", default=None, help="store id or .keras file (overrides the newest)")
    parser.add_argument("--sparsity", type=float, default=95.45, choices=SPARSE_L3_SPARSITIES)
    parser.add_argument("--hop-size", type=float, default=API.default_hop_seconds)
    parser.add_argument("--no-centering", action="store_true")
    parser.add_argument("--batch-size", type=int, default=API.default_batch_size)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    written = process_files(args.inputs, output_dir=args.output_dir, suffix=args.suffix,
                            model_type=args.model_type, emb_dim=args.emb_dim, model=args.model,
                            sparsity=args.sparsity, hop_size=args.hop_size,
                            center=not args.no_centering, batch_size=args.batch_size,
                            progress=not args.quiet)
    failed = [p for p, w in zip(args.inputs, written) if w is None]
    for path in failed:
        print(f"sea embed: failed: {path}", file=sys.stderr)
    print(f"sea embed: {len(written) - len(failed)} written, {len(failed)} failed")
    return 1 if failed else 0
