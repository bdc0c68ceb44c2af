"""Teachers: one interface over aisfx, L3-Net (openl3 weights or seeded random) and users' models.

A :class:`Teacher` is a small picklable description (spec, weights location,
``teacher_id``); the Keras network is built lazily, once per process (a
module-level cache keyed by class and ``teacher_id``), and is dropped when the
teacher is pickled so Beam / dask can ship it to workers.

>>> t = get_teacher("l3-random", seed=0)         # doctest: +SKIP
>>> t.embed(windows)                               # [N, 48000] -> [N, 512]
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from sea_core.errors import ModelError, ModelNotFoundError, ParameterError, WeightsError
from sea_core.params import (AISFX_FRONTEND, AISFX_NATIVE_WINDOW, AISFX_WEIGHTS, L3_MEL256,
                             L3_TEACHER, OPENL3_WEIGHTS, STUDENT_MEL64, TeacherSpec,
                             aisfx_teacher_spec, teacher_window_name)

__all__ = ["Teacher", "AisfxTeacher", "L3Teacher", "KerasFileTeacher", "get_teacher",
           "clear_model_cache", "FRONTENDS", "DEFAULT_BATCH_SIZE"]

DEFAULT_BATCH_SIZE = 32
"""Windows per forward pass of :meth:`Teacher.embed`."""

FRONTENDS = ("none", "l3", "aisfx", "student")
"""Front-ends a user's Keras teacher can be given ('none': the model takes audio)."""

log = logging.getLogger(__name__)

_CACHE: dict[tuple, tuple] = {}
_CACHE_LOCK = threading.RLock()  # re-entrant: a SparseTeacher builds its base inside


def clear_model_cache() -> None:
    """Forget the networks built in this process (they are rebuilt on next use)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names + bytes, sorted)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if path.is_dir():
            h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class Teacher:
    """A teacher network: audio windows -> embeddings.

    Attributes
    ----------
    spec : TeacherSpec
        Name, sample rate, window length and embedding dim.
    teacher_id : str
        Identifies the network *and its weights* (recorded in every output),
        e.g. ``'aisfx-0.1.2/45f'`` (1-s window), ``'l3-random(seed=0)'``.
    is_random : bool
        True when the weights are random (a stand-in, not a trained teacher).
    batch_size : int
        Default windows per forward pass.
    precision : {'fp32', 'bf16'}
        The arithmetic the network runs in. The constructors take ``'fp32'``
        (default: exact), ``'bf16'`` or ``'auto'`` (resolved at creation: bf16 on
        CPUs with AMX-BF16 / AVX512-BF16, see :mod:`sea_core.precision`; the
        pipelines' default). Not part of ``teacher_id``: same network, same weights.
    """

    def __init__(self, *, spec: TeacherSpec, teacher_id: str, is_random: bool = False,
                 batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"):
        from sea_core.precision import resolve_precision

        self.spec = spec
        self.teacher_id = str(teacher_id)
        self.is_random = bool(is_random)
        self.batch_size = _check_batch_size(batch_size)
        self.precision = resolve_precision(precision)
        self._model = None
        self._infer = None

    # -- subclasses ---------------------------------------------------------------------------
    def _build_model(self):
        """Build the audio -> embedding Keras model with its weights (once per process)."""
        raise NotImplementedError

    def _cache_key(self) -> tuple:
        return (type(self).__qualname__, self.teacher_id, self.spec, self.precision)

    # -- public -------------------------------------------------------------------------------
    def keras_model(self):
        """The Keras model ``(B, window_samples) -> (B, emb_dim)`` (built on first call).

        The model is shared by every teacher with the same ``teacher_id`` in
        this process: copy it before changing its weights.
        """
        self._ensure()
        return self._model

    def embed(self, windows: np.ndarray, *, batch_size: int | None = None) -> np.ndarray:
        """Embeddings of audio windows.

        Parameters
        ----------
        windows : np.ndarray
            [N, window_samples] float audio at ``spec.sample_rate`` (N may be 0).
        batch_size : int, optional
            Windows per forward pass; default ``self.batch_size``.

        Returns
        -------
        np.ndarray
            [N, emb_dim] float32.

        Raises
        ------
        ParameterError
            Wrong shape, non-float or non-finite input, bad batch size.
        """
        bs = self.batch_size if batch_size is None else _check_batch_size(batch_size)
        x = np.asarray(windows)
        if x.ndim != 2 or x.shape[1] != self.spec.window_samples:
            raise ParameterError(f"{self.teacher_id}: windows must have shape "
                                 f"[N, {self.spec.window_samples}], got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ParameterError(f"{self.teacher_id}: windows must be float audio, got {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ParameterError(f"{self.teacher_id}: windows hold NaN or infinite samples")
        out = np.empty((x.shape[0], self.spec.emb_dim), np.float32)
        if x.shape[0] == 0:
            return out
        self._ensure()
        for i in range(0, x.shape[0], bs):
            y = self._infer(x[i:i + bs])
            out[i:i + bs] = np.asarray(y, dtype=np.float32).reshape(-1, self.spec.emb_dim)
        return out

    # -- machinery ----------------------------------------------------------------------------
    def _ensure(self) -> None:
        if self._model is not None:
            return
        key = self._cache_key()
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is None:
                model = self._build_model()
                if self.precision != "fp32":
                    from sea_core.precision import apply_precision
                    apply_precision(model, self.precision)
                log.info("teacher %s: %s network built (%s)", self.teacher_id, self.precision,
                         _cpu_line())
                hit = (model, _make_infer(model, self.spec.window_samples))
                _CACHE[key] = hit
        self._model, self._infer = hit

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_infer"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(teacher_id={self.teacher_id!r}, "
                f"sample_rate={self.spec.sample_rate}, window_samples={self.spec.window_samples}, "
                f"emb_dim={self.spec.emb_dim}, is_random={self.is_random}, "
                f"precision={self.precision!r})")


def _cpu_line() -> str:
    from sea_core.precision import describe_cpu
    return describe_cpu()


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _make_infer(model, window_samples: int):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, window_samples], tf.float32)],
                 reduce_retracing=True)
    def infer(x):
        return tf.cast(model(x, training=False), tf.float32)  # bf16 networks: float32 out

    return lambda x: infer(tf.constant(x)).numpy()


# --------------------------------------------------------------------------- aisfx
class AisfxTeacher(Teacher):
    """The aisfx 512-d sound-effects teacher (Ma & Lerch 2022; weights CC BY 4.0).

    Parameters
    ----------
    weights : path-like, optional
        A converted npz, the ``aisfx-0.1.2`` wheel or its ``checkpoint.pth``;
        default: fetched with ``pip download`` into the cache on first use.
    batch_size : int
    window : str or float
        Analysis window, a name of ``params.AISFX_WINDOWS`` or its seconds: ``'2.30s'``
        (default, aisfx's native 100-frame block) or ``'1s'`` (45 frames, the distillation
        default of the pipelines). The block length in frames is part of ``teacher_id``
        (``aisfx-0.1.2/45f``), so embeddings of different windows are never mixed.
    """

    def __init__(self, *, weights: str | os.PathLike | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, window: str | float = AISFX_NATIVE_WINDOW,
                 precision: str = "fp32"):
        from sea_core.models import aisfx

        spec = aisfx_teacher_spec(teacher_window_name(window))
        npz = self._resolve(weights)
        arrays = aisfx.load_weights_npz(npz)
        digest = aisfx.arrays_sha256(arrays)
        tid = (AISFX_WEIGHTS.teacher_id if digest == AISFX_WEIGHTS.arrays_sha256
               else f"aisfx(weights=sha256:{digest[:12]})") + f"/{spec.block_frames}f"
        super().__init__(spec=spec, teacher_id=tid, batch_size=batch_size, precision=precision)
        self.weights_path = str(npz)
        self.weights_sha256 = digest
        self._user_weights = weights is not None

    @staticmethod
    def _resolve(weights) -> Path:
        from sea_core.models import aisfx

        if weights is None:
            return aisfx.fetch_weights()
        p = Path(weights)
        if not p.exists():
            raise ModelNotFoundError(f"{p}: no such aisfx weights file")
        if p.suffix in (".whl", ".pth"):
            return aisfx.fetch_weights(source=p)
        return p

    def _build_model(self):
        from sea_core.models import aisfx

        path = Path(self.weights_path)
        if not path.exists() and not self._user_weights:
            path = aisfx.fetch_weights()  # a worker with its own cache
        arrays = aisfx.load_weights_npz(path)
        if aisfx.arrays_sha256(arrays) != self.weights_sha256:
            raise WeightsError(f"{path}: aisfx weights changed since the teacher was created "
                               f"({self.teacher_id})")
        return aisfx.build_aisfx_network(arrays, with_frontend=True,
                                         window_samples=self.spec.window_samples)


# --------------------------------------------------------------------------- L3
class L3Teacher(Teacher):
    """L3-Net audio (mel256, 512-d) with openl3 weights or seeded random weights.

    Parameters
    ----------
    weights : path-like, optional
        openl3-layout ``.h5``; default: the installed openl3 package's file.
        Ignored when ``seed`` is given.
    seed : int, optional
        Random weights (``'l3-random'``).
    content_type : {'music', 'env'}
        Which installed openl3 file to use.
    batch_size : int

    Raises
    ------
    ModelNotFoundError
        No weights given and openl3 is not installed.
    WeightsError
        The file is not an L3 mel256 audio network.
    """

    def __init__(self, *, weights: str | os.PathLike | None = None, seed: int | None = None,
                 content_type: str = OPENL3_WEIGHTS.default_content_type,
                 batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32"):
        from sea_core.models import l3

        if seed is not None:
            if weights is not None:
                raise ParameterError("give either weights= (trained L3) or seed= (random L3)")
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ParameterError(f"seed must be an int, got {seed!r}")
            super().__init__(spec=L3_TEACHER, teacher_id=f"l3-random(seed={int(seed)})",
                             is_random=True, batch_size=batch_size, precision=precision)
            self.seed = int(seed)
            self.weights_path = None
            return
        path = l3.require_openl3_weights(weights, content_type=content_type)
        l3.validate_openl3_file(path)
        digest = _sha256(path)
        super().__init__(spec=L3_TEACHER, teacher_id=f"l3({path.name}@sha256:{digest[:12]})",
                         batch_size=batch_size, precision=precision)
        self.seed = None
        self.weights_path = str(path)
        self.weights_sha256 = digest

    def _build_model(self):
        from sea_core.models import l3

        if self.seed is not None:
            return l3.build_l3_network(seed=self.seed)
        path = Path(self.weights_path)
        if not path.is_file() or _sha256(path) != self.weights_sha256:
            raise WeightsError(f"{path}: missing or changed since the teacher was created "
                               f"({self.teacher_id})")
        model = l3.build_l3_network()
        l3.load_openl3_weights(model, path)
        return model


# --------------------------------------------------------------------------- users' models
_FRONTEND_SPECS = {
    "l3": (L3_MEL256.sample_rate, L3_TEACHER.window_samples),
    "aisfx": (AISFX_FRONTEND.sample_rate, AISFX_FRONTEND.window_samples),
    "student": (STUDENT_MEL64.sample_rate, STUDENT_MEL64.sample_rate),
}


def _frontend_output_shape(name: str, window_samples: int) -> tuple[int, ...]:
    if name == "aisfx":
        return (AISFX_FRONTEND.block_frames, AISFX_FRONTEND.n_mels, 1)
    p = L3_MEL256 if name == "l3" else STUDENT_MEL64
    return (p.n_mels, p.n_frames(window_samples), 1)


def _frontend_layer(name: str):
    from sea_core.models.layers import AisfxLogMel, KapreLogMel

    if name == "l3":
        return KapreLogMel(L3_MEL256, name="l3_frontend")
    if name == "aisfx":
        return AisfxLogMel(AISFX_FRONTEND, name="aisfx_frontend")
    return KapreLogMel(STUDENT_MEL64, name="student_frontend")  # == student_frontend()


def _read_frontend_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(f"{path}: cannot read the front-end JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ParameterError(f"{path}: the front-end JSON must be an object")
    allowed = {"frontend", "sample_rate", "window_samples", "window_seconds", "name"}
    unknown = set(cfg) - allowed
    if unknown:
        raise ParameterError(f"{path}: unknown front-end key(s) {sorted(unknown)}; "
                             f"allowed: {sorted(allowed)}")
    return cfg


def _load_keras(path: Path):
    import keras

    import sea_core.models.layers  # noqa: F401  (registers the sea front-end layers)

    try:
        if path.is_dir():
            layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
            import tensorflow as tf
            sig = tf.saved_model.load(str(path)).signatures["serving_default"]
            specs = list(sig.structured_input_signature[1].values())
            if len(specs) != 1:
                raise ModelError(f"{path}: the SavedModel must take one input, got {len(specs)}")
            inp = keras.Input(tuple(specs[0].shape[1:]), name="input")
            out = layer(inp)
            if isinstance(out, dict):
                if len(out) != 1:
                    raise ModelError(f"{path}: the SavedModel must return one output, got "
                                     f"{sorted(out)}")
                out = next(iter(out.values()))
            return keras.Model(inp, out, name="user_teacher")
        return keras.models.load_model(str(path), compile=False)
    except (ModelError, ParameterError):
        raise
    except Exception as exc:
        raise ModelError(f"{path}: cannot load the Keras model ({type(exc).__name__}: {exc})") from exc


class KerasFileTeacher(Teacher):
    """A user's teacher: a Keras ``.keras`` / ``.h5`` file or a SavedModel directory.

    Parameters
    ----------
    path : path-like
        The model. Input ``(B, S)`` audio (``frontend='none'``) or a log-mel of
        one of our front-ends; output ``(B, D)``.
    frontend : {'none', 'l3', 'aisfx', 'student'} or path-like, optional
        The front-end placed before the model, or a JSON file with
        ``frontend``, ``sample_rate`` and ``window_samples`` (or
        ``window_seconds``). Default: inferred from the model's input shape
        (a log-mel shape of one of our front-ends, or 1-D audio, which then
        needs ``sample_rate``).
    sample_rate, window_samples : int, optional
        For ``frontend='none'``.
    name : str, optional
        ``spec.name``; default the file stem.
    batch_size : int

    Raises
    ------
    ModelNotFoundError
        ``path`` does not exist.
    ParameterError
        The front-end does not fit the model's input, or settings are missing.
    ModelError
        The file cannot be loaded or its output is not ``(B, D)``.
    """

    def __init__(self, path: str | os.PathLike, *, frontend: str | os.PathLike | None = None,
                 sample_rate: int | None = None, window_samples: int | None = None,
                 name: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 precision: str = "fp32"):
        path = Path(path)
        if not path.exists():
            raise ModelNotFoundError(f"{path}: no such teacher model (expected a .keras / .h5 "
                                     "file or a SavedModel directory)")
        cfg: dict = {}
        if frontend is not None and str(frontend) not in FRONTENDS:
            fpath = Path(frontend)
            if fpath.suffix.lower() != ".json" or not fpath.is_file():
                raise ParameterError(f"frontend must be one of {FRONTENDS} or a JSON file, "
                                     f"got {frontend!r}")
            cfg = _read_frontend_config(fpath)
            frontend = cfg.get("frontend")
            if frontend is not None and frontend not in FRONTENDS:
                raise ParameterError(f"{fpath}: frontend must be one of {FRONTENDS}, got "
                                     f"{frontend!r}")
        sample_rate = sample_rate if sample_rate is not None else cfg.get("sample_rate")
        if window_samples is None:
            window_samples = cfg.get("window_samples")
            if window_samples is None and cfg.get("window_seconds") is not None:
                if sample_rate is None:
                    raise ParameterError("window_seconds needs sample_rate")
                window_samples = int(round(float(cfg["window_seconds"]) * int(sample_rate)))
        name = name or cfg.get("name") or path.stem

        model = _load_keras(path)
        in_shape = tuple(model.inputs[0].shape[1:])
        out_shape = tuple(model.outputs[0].shape[1:])
        if len(model.inputs) != 1 or len(out_shape) != 1 or out_shape[0] is None:
            raise ModelError(f"{path}: a teacher needs one input and a (B, D) output; this model "
                             f"maps {in_shape} -> {out_shape}")
        frontend = self._match_frontend(path, frontend, in_shape)
        if frontend == "none":
            if sample_rate is None:
                raise ParameterError(f"{path}: the model takes raw audio {in_shape}; give "
                                     "sample_rate= (or a front-end JSON with 'sample_rate')")
            if len(in_shape) != 1 or in_shape[0] is None:
                raise ParameterError(f"{path}: with frontend='none' the model input must be "
                                     f"(B, S) audio with a static S, got {in_shape}")
            window = in_shape[0]
            if window_samples is not None and int(window_samples) != window:
                raise ParameterError(f"{path}: window_samples={window_samples} but the model "
                                     f"takes {window} samples")
            sr = int(sample_rate)
        else:
            sr, window = _FRONTEND_SPECS[frontend]
            if sample_rate is not None and int(sample_rate) != sr:
                raise ParameterError(f"frontend {frontend!r} runs at {sr} Hz, not {sample_rate}")
            if window_samples is not None and int(window_samples) != window:
                raise ParameterError(f"frontend {frontend!r} takes {window}-sample windows, not "
                                     f"{window_samples}")
        digest = _sha256(path)
        spec = TeacherSpec(name=str(name), sample_rate=sr, window_samples=window,
                           emb_dim=int(out_shape[0]))
        tid = f"keras:{path.name}@sha256:{digest[:12]}" + ("" if frontend == "none"
                                                           else f"+{frontend}")
        if path.is_dir() and precision not in ("auto", "fp32"):
            raise ParameterError(f"{path}: a SavedModel teacher runs in fp32 only (its graph is "
                                 f"fixed); got precision={precision!r}")
        super().__init__(spec=spec, teacher_id=tid, batch_size=batch_size,
                         precision="fp32" if path.is_dir() else precision)
        self.path = str(path)
        self.frontend = frontend
        self.weights_sha256 = digest
        self._loaded = model  # used once by _build_model in this process

    @staticmethod
    def _match_frontend(path: Path, frontend, in_shape) -> str:
        window_of = {k: v[1] for k, v in _FRONTEND_SPECS.items()}
        if frontend is None:
            if len(in_shape) == 1:
                return "none"
            for cand in ("l3", "aisfx", "student"):
                if in_shape == _frontend_output_shape(cand, window_of[cand]):
                    return cand
            raise ParameterError(
                f"{path}: model input {in_shape} is neither (S,) audio nor a log-mel of our "
                f"front-ends ({ {k: _frontend_output_shape(k, w) for k, w in window_of.items()} }); "
                "pass frontend=")
        if frontend != "none":
            want = _frontend_output_shape(frontend, window_of[frontend])
            if in_shape != want:
                raise ParameterError(f"{path}: frontend {frontend!r} produces {want} but the "
                                     f"model takes {in_shape}")
        return frontend

    def __getstate__(self):
        state = super().__getstate__()
        state["_loaded"] = None
        return state

    def _build_model(self):
        import keras

        model = self._loaded
        self._loaded = None
        path = Path(self.path)
        if model is None:
            if not path.exists() or _sha256(path) != self.weights_sha256:
                raise WeightsError(f"{path}: missing or changed since the teacher was created "
                                   f"({self.teacher_id})")
            model = _load_keras(path)
        if self.frontend == "none":
            return model
        inp = keras.Input((self.spec.window_samples,), name="audio")
        return keras.Model(inp, model(_frontend_layer(self.frontend)(inp)), name="user_teacher")


# --------------------------------------------------------------------------- factory
def get_teacher(name_or_path: str | os.PathLike, **options) -> Teacher:
    """A teacher by name or by model path.

    Parameters
    ----------
    name_or_path : str or path-like
        ``'aisfx'`` (default teacher; options ``weights``, ``window``), ``'l3'`` (options
        ``weights``, ``content_type``), ``'l3-random'`` (option ``seed``,
        default 0), or a path to a Keras ``.keras`` / ``.h5`` file or a
        SavedModel directory (options ``frontend``, ``sample_rate``,
        ``window_samples``, ``name``; see :class:`KerasFileTeacher`).
    **options
        Keyword options as above, plus ``batch_size`` and ``precision``
        (``'fp32'`` default, ``'bf16'``, ``'auto'``) for all.

    Returns
    -------
    Teacher

    Raises
    ------
    ParameterError
        Unknown name or option.
    ModelNotFoundError
        Weights / file not available; the message says how to supply them.
    WeightsError
        Weights that do not match the network.
    """
    allowed = {
        "aisfx": {"weights", "batch_size", "window", "precision"},
        "l3": {"weights", "content_type", "batch_size", "precision"},
        "l3-random": {"seed", "batch_size", "precision"},
    }
    key = str(name_or_path)
    if key in allowed:
        unknown = set(options) - allowed[key]
        if unknown:
            raise ParameterError(f"teacher {key!r} takes options {sorted(allowed[key])}, "
                                 f"got {sorted(unknown)}")
        if key == "aisfx":
            return AisfxTeacher(**options)
        if key == "l3":
            if options.get("weights") is None:
                options.pop("weights", None)
            return L3Teacher(**options)
        return L3Teacher(seed=options.pop("seed", 0), **options)
    path = Path(key)
    if path.suffix.lower() in (".keras", ".h5", ".hdf5") or path.is_dir():
        unknown = set(options) - {"frontend", "sample_rate", "window_samples", "name", "batch_size",
                                  "precision"}
        if unknown:
            raise ParameterError(f"a Keras-file teacher takes options frontend, sample_rate, "
                                 f"window_samples, name, batch_size, precision; got "
                                 f"{sorted(unknown)}")
        return KerasFileTeacher(path, **options)
    raise ParameterError(f"unknown teacher {key!r}: use 'aisfx', 'l3', 'l3-random' or a path to a "
                         ".keras / .h5 model file or SavedModel directory")
