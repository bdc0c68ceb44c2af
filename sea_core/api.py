"""edgel3-compatible embedding API: ``get_embedding``, ``process_file(s)`` and ``sea embed``.

Differences from edgel3 (each is one of its bugs, reference §(h)): every
documented call works with only ``(audio, sr)`` / ``(filepath)`` (bug 1); the
sample rate and window come from the model that is actually used, never from a
default ``model_type`` (bug 2); the CLI forwards ``--model-type`` (bug 2); no
``collections.Iterable`` (bug 3); every released sparsity is accepted (bug 4);
no weights are downloaded except through the package registry (bug 5);
``center=False`` really disables centring (bug 6).
"""
from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sea_core.errors import ModelNotFoundError, ParameterError, SeaError
from sea_core.models.teacher_base import Teacher, check_batch_size
from sea_core.params import (API, SPARSE_L3_SPARSITIES, STUDENT_EMB_DIMS, STUDENT_MEL64,
                             TEACHER_NAMES)
from sea_core.storage import publish_bytes

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
    is_random: bool = False


def _keras_embedder(model, model_id: str, batch_size: int) -> Embedder:
    """A Keras student ``(B, S) 8-kHz audio -> (B, D)`` (the form saved by ``sea train``)."""
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if len(in_shape) != 2 or not isinstance(in_shape[1], int) or len(out_shape) != 2:
        raise ParameterError(f"{model_id}: model= must be a SEA student taking fixed-length 8-kHz "
                             f"audio windows (B, S) -> (B, D); this one maps {in_shape} -> "
                             f"{out_shape} (build it with with_frontend=True)")
    window = int(in_shape[1])
    dim = int(out_shape[1])

    def embed(windows: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(windows, dtype=np.float32)
        out = np.empty((x.shape[0], dim), np.float32)
        for i in range(0, x.shape[0], batch_size):
            # Keras compiles one predict function per model (no per-call retracing)
            out[i:i + batch_size] = np.asarray(model.predict_on_batch(x[i:i + batch_size]))
        return out

    return Embedder(model_id=model_id, sample_rate=STUDENT_MEL64.sample_rate, window_samples=window,
                    emb_dim=dim, embed=embed)


def _teacher_embedder(teacher, batch_size: int) -> Embedder:
    def embed(windows: np.ndarray) -> np.ndarray:
        return teacher.embed(windows, batch_size=batch_size)

    return Embedder(model_id=teacher.teacher_id, sample_rate=teacher.spec.sample_rate,
                    window_samples=teacher.spec.window_samples, emb_dim=teacher.spec.emb_dim,
                    embed=embed, is_random=teacher.is_random)


def _l3_teacher(model_type: str, teacher_weights):
    from sea_core.models.teachers import get_teacher

    try:
        return get_teacher("l3", weights=teacher_weights)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(
            f"model_type={model_type!r} needs trained L3-Net audio (mel256) weights, which are "
            f"not available: pass teacher_weights='/path/to/openl3_audio_mel256_music.h5' "
            f"(`sea embed --teacher-weights PATH`) or install the openl3 package, which ships that "
            f"file. For a random stand-in use model_type='l3-random' (or "
            f"model=sparse_teacher(get_teacher('l3-random'), sparsity) for a pruned one). "
            f"[{exc}]") from exc


def load_embedder(*, model_type: str = API.default_model_type, emb_dim: int = API.default_emb_dim,
                  model: Any = None, sparsity: float = 95.45, batch_size: int = API.default_batch_size,
                  teacher_weights: str | os.PathLike | None = None) -> Embedder:
    """Resolve ``model_type`` / ``model`` to an :class:`Embedder`.

    Parameters
    ----------
    model_type : {'sea', 'sparse', 'aisfx', 'l3', 'l3-random'}
        Ignored when ``model`` is given.
    emb_dim : int
        Student dimension for ``'sea'`` (512, 256, 128 or 64).
    model : None, str, path, keras.Model, Teacher or Embedder
        A store id (or unique prefix), a ``.keras`` student file, a loaded Keras
        student, a teacher name ('aisfx', 'l3', 'l3-random') or a Teacher. When
        given, ITS own sample rate and window are used, whatever ``model_type`` says.
    sparsity : float
        For ``'sparse'``: one of ``SPARSE_L3_SPARSITIES``.
    batch_size : int
        Windows per forward pass.
    teacher_weights : path, optional
        openl3-layout L3 weights for ``'l3'`` and ``'sparse'``.

    Raises
    ------
    ParameterError
        Unknown model_type, emb_dim, sparsity or model object.
    ModelNotFoundError
        No registered student for ``emb_dim``, unknown store id, or missing
        teacher weights; the message says how to get them.
    """
    from sea_core.models.teachers import get_teacher

    batch_size = check_batch_size(batch_size)
    if model is not None:
        if isinstance(model, Embedder):
            return model
        if isinstance(model, Teacher):
            return _teacher_embedder(model, batch_size)
        if isinstance(model, (str, os.PathLike)):
            if str(model) in TEACHER_NAMES:
                return load_embedder(model_type=str(model), batch_size=batch_size,
                                     teacher_weights=teacher_weights)
            path = Path(model)
            if path.suffix.lower() in (".keras", ".h5", ".hdf5"):
                if not path.is_file():
                    raise ModelNotFoundError(f"{path}: no such model file")
                if path.suffix.lower() != ".keras":
                    raise ParameterError(f"{path}: model= takes a .keras student; register the "
                                         f"authors' SEA-64 h5 first with `sea models import "
                                         f"{path} --emb-dim 64`")
                from sea_core.models.store import load_keras_student
                return _keras_embedder(load_keras_student(path), str(path), batch_size)
            from sea_core.models import store
            entry = store.get_entry(str(model))
            if entry.extra.get("kind") == "sparse":  # `sea prune` output (issue 18)
                from sea_core.prune import load_sparse_teacher
                return _teacher_embedder(load_sparse_teacher(entry), batch_size)
            return _keras_embedder(store.load_student(entry), entry.model_id, batch_size)
        if hasattr(model, "predict") and hasattr(model, "input_shape"):
            return _keras_embedder(model, getattr(model, "name", "keras-model"), batch_size)
        raise ParameterError(f"model must be a store id, a .keras path, a Keras model, a teacher "
                             f"name or a Teacher; got {type(model).__name__}")
    if model_type not in API.valid_model_types:
        raise ParameterError(f"model_type must be one of {API.valid_model_types}, got {model_type!r}")
    if model_type == "sea":
        if isinstance(emb_dim, bool) or emb_dim not in STUDENT_EMB_DIMS:
            raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_EMB_DIMS)}, got {emb_dim!r}")
        from sea_core.models import store
        entry = store.latest(int(emb_dim))
        return _keras_embedder(store.load_student(entry), entry.model_id, batch_size)
    if model_type == "sparse":
        try:
            s = float(sparsity)
        except (TypeError, ValueError):
            s = None
        if s is None or s not in SPARSE_L3_SPARSITIES:
            raise ParameterError(f"sparsity must be one of {SPARSE_L3_SPARSITIES}, got {sparsity!r}")
        from sea_core.prune import latest_sparse, load_sparse_teacher
        stored = latest_sparse(s)  # newest `sea prune` result of this sparsity (issue 18)
        if stored is not None:
            return _teacher_embedder(load_sparse_teacher(stored), batch_size)
        from sea_core.models.sparse import sparse_teacher
        return _teacher_embedder(sparse_teacher(_l3_teacher("sparse", teacher_weights), s),
                                 batch_size)
    if model_type == "l3":
        return _teacher_embedder(_l3_teacher("l3", teacher_weights), batch_size)
    return _teacher_embedder(get_teacher(model_type), batch_size)


def _check_sr(sr, uri: str) -> int:
    ok = (not isinstance(sr, bool) and isinstance(sr, (int, float, np.integer, np.floating))
          and math.isfinite(sr) and sr > 0 and float(sr) == int(sr))
    if not ok:
        raise ParameterError(f"{uri}: sample rate must be a positive integer (Hz), got {sr!r}")
    return int(sr)


def _check_hop(hop_size) -> float:
    try:
        hop = float(hop_size)
    except (TypeError, ValueError):
        hop = float("nan")
    if isinstance(hop_size, bool) or not (math.isfinite(hop) and hop > 0):
        raise ParameterError(f"hop_size must be a positive number of seconds, got {hop_size!r}")
    return hop


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_options(*, hop_size, center, batch_size=API.default_batch_size,
                   verbose=False) -> tuple[float, bool, int]:
    """The one check of the embedding options' types and ranges -> (hop, center, batch_size).

    ``center='invalid'`` is refused (edgel3 raises a parameter error; a truthy
    string must not silently mean True).
    """
    _check_bool(verbose, "verbose")
    return _check_hop(hop_size), _check_bool(center, "center"), check_batch_size(batch_size)


def _as_float_audio(arr: np.ndarray, uri: str) -> np.ndarray:
    """Integer PCM -> float in [-1, 1) as soundfile reads it (int16 / 32768, uint8 centred)."""
    if arr.dtype == bool:
        raise ParameterError(f"{uri}: audio must be numeric samples, got a boolean array")
    if np.issubdtype(arr.dtype, np.signedinteger):
        return arr.astype(np.float64) / float(2 ** (8 * arr.dtype.itemsize - 1))
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        half = float(2 ** (8 * arr.dtype.itemsize - 1))
        return (arr.astype(np.float64) - half) / half
    return arr


def _check_frames_size(n_samples: int, sr: int, embedder: Embedder, hop: float, uri: str) -> None:
    """Refuse a hop that would make an absurd number of windows (hop_size=1e-7: TiB of frames)."""
    hop_samples = hop * embedder.sample_rate
    if hop_samples < 1:
        raise ParameterError(f"hop_size={hop!r} s is less than one sample at the model's "
                             f"{embedder.sample_rate} Hz (minimum {1 / embedder.sample_rate:.3g} s)")
    seconds = n_samples / sr
    n_windows = int(seconds / hop) + 2
    nbytes = n_windows * embedder.window_samples * 4
    if nbytes > API.max_frames_bytes:
        raise ParameterError(f"{uri}: hop_size={hop!r} s would cut {seconds:.1f} s of audio into "
                             f"{n_windows} windows ({nbytes / 2**30:.1f} GiB, more than "
                             f"{API.max_frames_bytes / 2**30:.0f} GiB); use a larger hop_size or "
                             f"shorter audio")


def _frames(audio, sr, embedder: Embedder, *, hop_size: float, center: bool,
            uri: str) -> tuple[np.ndarray, np.ndarray]:
    """Mono, resample to the model's rate, frame: -> windows [T, W], timestamps [T]."""
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import check_audio, resample, to_mono

    sr = _check_sr(sr, uri)
    try:
        arr = np.asarray(audio)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{uri}: audio must be a numeric array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ParameterError(f"{uri}: audio must be a numeric array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ParameterError(f"{uri}: audio must be real samples, got dtype {arr.dtype}")
    arr = _as_float_audio(arr, uri)
    mono = check_audio(to_mono(arr, uri=uri), uri)
    _check_frames_size(mono.size, sr, embedder, hop_size, uri)
    if sr != embedder.sample_rate:
        mono = resample(mono, sr, embedder.sample_rate)
    return frame_audio(mono, sr=embedder.sample_rate, window_samples=embedder.window_samples,
                       hop_seconds=hop_size, center=bool(center), uri=uri)


def _embed_one(audio, sr, embedder: Embedder, *, hop_size: float, center: bool,
               uri: str) -> tuple[np.ndarray, np.ndarray]:
    frames, ts = _frames(audio, sr, embedder, hop_size=hop_size, center=center, uri=uri)
    return embedder.embed(frames), ts


def get_embedding(audio, sr, *, model_type: str = API.default_model_type,
                  emb_dim: int = API.default_emb_dim, hop_size: float = API.default_hop_seconds,
                  center: bool = True, batch_size: int = API.default_batch_size, model: Any = None,
                  sparsity: float = 95.45, teacher_weights: str | os.PathLike | None = None,
                  verbose: bool = False):
    """Embeddings of audio with a SEA student or a teacher (edgel3-compatible).

    Parameters
    ----------
    audio : np.ndarray or list of np.ndarray
        Shape ``(N,)``, ``(N, C)`` or ``(C, N)`` (channels are averaged); a list
        gives a batch (all windows go through the model together).
    sr : int or list of int
        Sample rate of each array; resampled (soxr HQ) to the model's own rate.
    model_type : {'sea', 'sparse', 'aisfx', 'l3', 'l3-random'}
        'sea' = the newest registered student for ``emb_dim`` (8 kHz); the others
        give the teacher's 512-d embeddings with the teacher's rate and window.
    emb_dim, model, sparsity, teacher_weights
        See :func:`load_embedder`.
    hop_size : float
        Seconds between windows.
    center : bool
        Prepend half a window of zeros (timestamps then mark window centres);
        False: window ``i`` starts at ``i * hop_size``.
    batch_size : int
        Windows per forward pass.

    Returns
    -------
    emb : np.ndarray [T, D] float32 (a list of them for a list input)
    ts : np.ndarray [T] seconds, ``arange(T) * hop_size`` (or a list)

    Raises
    ------
    ParameterError
        Bad sample rate, hop, batch size, model type, emb_dim or sparsity.
    AudioError
        Empty, too-short, non-finite or more than 2-D audio (subclasses name the input).
    ModelNotFoundError
        No registered student for ``emb_dim`` / missing teacher weights (says how to get one).
    """
    hop, center, batch_size = _check_options(hop_size=hop_size, center=center,
                                             batch_size=batch_size, verbose=verbose)
    embedder = load_embedder(model_type=model_type, emb_dim=emb_dim, model=model,
                             sparsity=sparsity, batch_size=batch_size,
                             teacher_weights=teacher_weights)
    if isinstance(audio, (list, tuple)):
        srs = list(sr) if isinstance(sr, (list, tuple)) else [sr] * len(audio)
        if len(srs) != len(audio):
            raise ParameterError(f"got {len(audio)} arrays but {len(srs)} sample rates")
        framed = [_frames(a, s, embedder, hop_size=hop, center=center, uri=f"<array {i}>")
                  for i, (a, s) in enumerate(zip(audio, srs))]
        if not framed:
            return [], []
        emb = embedder.embed(np.concatenate([f for f, _ in framed]))
        bounds = np.cumsum([0] + [len(f) for f, _ in framed])
        return ([emb[bounds[i]:bounds[i + 1]] for i in range(len(framed))],
                [t for _, t in framed])
    return _embed_one(audio, sr, embedder, hop_size=hop, center=center, uri="<array>")


def _output_path(path: str, output_dir: str | os.PathLike | None, suffix: str | None) -> Path:
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    stem = Path(name).stem + (f"_{suffix}" if suffix else "")
    directory = Path(output_dir) if output_dir else Path(path).parent
    return directory / f"{stem}.npz"


def process_file(filepath: str, *, output_dir: str | os.PathLike | None = None,
                 suffix: str | None = None, model_type: str = API.default_model_type,
                 emb_dim: int = API.default_emb_dim, hop_size: float = API.default_hop_seconds,
                 center: bool = True, batch_size: int = API.default_batch_size, model: Any = None,
                 sparsity: float = 95.45, teacher_weights: str | os.PathLike | None = None) -> Path:
    """Embed one file and write ``<output_dir>/<name>[_<suffix>].npz``.

    The archive holds ``embedding`` [T, D] float32, ``timestamps`` [T] seconds and
    ``model_id`` (which student / teacher produced it). ``output_dir`` defaults
    to the file's directory. Raises the file's :class:`SeaError` on failure.
    """
    return process_files([filepath], output_dir=output_dir, suffix=suffix, model_type=model_type,
                         emb_dim=emb_dim, hop_size=hop_size, center=center, batch_size=batch_size,
                         model=model, sparsity=sparsity, teacher_weights=teacher_weights,
                         raise_errors=True)[0]


def _check_output_dir(output_dir) -> None:
    if output_dir and Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ParameterError(f"--output-dir {output_dir}: exists and is not a directory")


def expand_inputs(paths) -> list[str]:
    """Directories -> the audio files below them (sorted), as ``sea pipeline embed`` lists them."""
    import fsspec

    from sea_core.datasets.layout import AUDIO_SUFFIXES

    out: list[str] = []
    for p in paths:
        p = str(p)
        try:
            fs, path = fsspec.core.url_to_fs(p)
            is_dir = fs.isdir(path)
        except (ImportError, ValueError, OSError):
            is_dir = False
        if not is_dir:
            out.append(p)
            continue
        found = sorted(f for f in fs.find(path) if f.lower().endswith(AUDIO_SUFFIXES))
        if not found:
            raise ParameterError(f"{p}: directory holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        out += [fs.unstrip_protocol(f) if "://" in p else f for f in found]
    return out


def _run_files(filepaths, embedder: Embedder, *, output_dir, suffix, hop_size: float,
               center: bool, raise_errors: bool, progress: bool):
    """-> (written paths with None for failures, {path: error})."""
    from sea_core.audio.io import read_audio

    written: list[Path | None] = []
    errors: dict[str, SeaError] = {}
    iterator = filepaths
    if progress:
        from tqdm import tqdm
        iterator = tqdm(filepaths, desc=f"embed ({embedder.model_id})", unit="file",
                        file=sys.stderr)
    for path in iterator:
        try:
            audio, sr = read_audio(str(path))
            emb, ts = _embed_one(audio, sr, embedder, hop_size=hop_size, center=center,
                                 uri=str(path))
        except SeaError as exc:
            if raise_errors:
                raise
            log.error("%s", exc)
            errors[str(path)] = exc
            written.append(None)
            continue
        out = _output_path(str(path), output_dir, suffix)
        buf = io.BytesIO()
        np.savez(buf, embedding=emb, timestamps=ts, model_id=np.array(embedder.model_id))
        publish_bytes(out, buf.getvalue())
        written.append(out)
    return written, errors


def process_files(filepaths, *, output_dir: str | os.PathLike | None = None,
                  suffix: str | None = None, model_type: str = API.default_model_type,
                  emb_dim: int = API.default_emb_dim, hop_size: float = API.default_hop_seconds,
                  center: bool = True, batch_size: int = API.default_batch_size, model: Any = None,
                  sparsity: float = 95.45, teacher_weights: str | os.PathLike | None = None,
                  raise_errors: bool = False, progress: bool = False):
    """Embed many files with one loaded model (see :func:`process_file`).

    Returns the written paths in input order; with ``raise_errors=False`` a bad
    file is logged and yields ``None`` in its place while the remaining files
    are still written, so the caller can report every failure.
    """
    if isinstance(filepaths, (str, os.PathLike)):
        filepaths = [filepaths]
    hop, center, batch_size = _check_options(hop_size=hop_size, center=center,
                                             batch_size=batch_size)
    _check_output_dir(output_dir)
    filepaths = expand_inputs(filepaths)
    embedder = load_embedder(model_type=model_type, emb_dim=emb_dim, model=model,
                             sparsity=sparsity, batch_size=batch_size,
                             teacher_weights=teacher_weights)
    written, _ = _run_files(list(filepaths), embedder, output_dir=output_dir, suffix=suffix,
                            hop_size=hop, center=center, raise_errors=raise_errors,
                            progress=progress)
    return written


def main(argv: list[str] | None = None) -> int:
    """``sea embed PATH... --output-dir DIR --model-type ... --emb-dim ... --hop-size ...``."""
    parser = argparse.ArgumentParser(prog="sea embed",
                                     description="Embed audio files; writes <name>.npz per file "
                                                 "(keys embedding, timestamps, model_id).")
    parser.add_argument("inputs", nargs="+",
                        help="audio files or directories of them (any fsspec URL)")
    parser.add_argument("--output-dir", "-o", default=None,
                        help="where to write the .npz files (default: next to each input)")
    parser.add_argument("--suffix", "-x", default=None)
    parser.add_argument("--model-type", default=API.default_model_type, choices=API.valid_model_types)
    parser.add_argument("--emb-dim", type=int, default=API.default_emb_dim, choices=STUDENT_EMB_DIMS)
    parser.add_argument("--model", default=None,
                        help="store id or .keras student (overrides --model-type/--emb-dim)")
    parser.add_argument("--sparsity", type=float, default=95.45, choices=SPARSE_L3_SPARSITIES,
                        help="for --model-type sparse")
    parser.add_argument("--teacher-weights", default=None,
                        help="openl3-layout L3 weights (.h5) for --model-type l3 / sparse")
    parser.add_argument("--hop-size", type=float, default=API.default_hop_seconds)
    parser.add_argument("--no-centering", action="store_true")
    parser.add_argument("--batch-size", type=int, default=API.default_batch_size)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    hop = _check_hop(args.hop_size)
    check_batch_size(args.batch_size)
    _check_output_dir(args.output_dir)
    inputs = expand_inputs(args.inputs)
    embedder = load_embedder(model_type=args.model_type, emb_dim=args.emb_dim, model=args.model,
                             sparsity=args.sparsity, batch_size=args.batch_size,
                             teacher_weights=args.teacher_weights)
    written, errors = _run_files(inputs, embedder, output_dir=args.output_dir,
                                 suffix=args.suffix, hop_size=hop, center=not args.no_centering,
                                 raise_errors=False, progress=not args.quiet)
    for path, exc in errors.items():
        print(f"sea embed: failed: {path}: {exc}", file=sys.stderr)
    n_ok = sum(w is not None for w in written)
    print(f"sea embed: {n_ok} written, {len(errors)} failed (model {embedder.model_id})")
    return 1 if errors else 0
