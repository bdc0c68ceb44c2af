"""A user's teacher: a Keras ``.keras`` / ``.h5`` file or a SavedModel directory, with or
without one of our front-ends (``get_teacher(path, ...)``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from sea_core.errors import ModelError, ModelNotFoundError, ParameterError, WeightsError
from sea_core.models.teacher_base import Teacher
from sea_core.params import (AISFX_FRONTEND, L3_MEL256, STUDENT_EMB_DIMS, STUDENT_MEL64,
                             TEACHER_BATCH_SIZE, TEACHERS, StudentSpec, TeacherSpec)
from sea_core.storage import sha256_file

__all__ = ["KerasFileTeacher", "FRONTENDS"]

FRONTENDS = ("none", "l3", "aisfx", "student")
"""Front-ends a user's Keras teacher can be given ('none': the model takes audio)."""


_FRONTEND_SPECS = {
    "l3": (TEACHERS["l3"].sample_rate, TEACHERS["l3"].window_samples),
    "aisfx": (TEACHERS["aisfx"].sample_rate, TEACHERS["aisfx"].window_samples),
    "student": (STUDENT_MEL64.sample_rate, StudentSpec(emb_dim=STUDENT_EMB_DIMS[-1]).window_samples),
}
"""(sample rate, window samples) a user's model behind each front-end takes: the registry's
teacher windows, and the student's default 1 s at 8 kHz."""


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
                 name: str | None = None, batch_size: int = TEACHER_BATCH_SIZE,
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
        digest = sha256_file(path)
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
            if not path.exists() or sha256_file(path) != self.weights_sha256:
                raise WeightsError(f"{path}: missing or changed since the teacher was created "
                                   f"({self.teacher_id})")
            model = _load_keras(path)
        if self.frontend == "none":
            return model
        inp = keras.Input((self.spec.window_samples,), name="audio")
        return keras.Model(inp, model(_frontend_layer(self.frontend)(inp)), name="user_teacher")
