"""The named teachers (aisfx, L3-Net with openl3 or seeded random weights) and ``get_teacher``.

``get_teacher`` reads the one teacher registry (``sea_core.params.TEACHERS`` /
``TEACHER_NAMES`` / ``TEACHER_OPTIONS``); any other argument is a path to a user's
Keras model (:class:`~sea_core.models.keras_teacher.KerasFileTeacher`). Every
teacher is a :class:`~sea_core.models.teacher_base.Teacher`.

>>> t = get_teacher("l3-random", seed=0)         # doctest: +SKIP
>>> t.embed(windows)                               # [N, 48000] -> [N, 512]
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sea_core.errors import ModelNotFoundError, ParameterError, WeightsError
from sea_core.models.keras_teacher import KerasFileTeacher
from sea_core.models.teacher_base import Teacher
from sea_core.params import (AISFX_NATIVE_WINDOW, AISFX_WEIGHTS, L3_TEACHER, OPENL3_WEIGHTS,
                             TEACHER_BATCH_SIZE, TEACHER_NAMES, TEACHER_OPTIONS,
                             aisfx_teacher_spec, teacher_window_name)
from sea_core.storage import sha256_file

__all__ = ["AisfxTeacher", "L3Teacher", "get_teacher"]


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

    graph_revision = 2
    """2: rfft front-end and BatchNorm folded into the convs (1: DFT product, separate BatchNorm)."""

    def __init__(self, *, weights: str | os.PathLike | None = None,
                 batch_size: int = TEACHER_BATCH_SIZE, window: str | float = AISFX_NATIVE_WINDOW,
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
        return aisfx.build_aisfx_network(arrays, with_frontend=True, fold_batchnorm=True,
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
                 batch_size: int = TEACHER_BATCH_SIZE, precision: str = "fp32"):
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
        digest = sha256_file(path)
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
        if not path.is_file() or sha256_file(path) != self.weights_sha256:
            raise WeightsError(f"{path}: missing or changed since the teacher was created "
                               f"({self.teacher_id})")
        model = l3.build_l3_network()
        l3.load_openl3_weights(model, path)
        return model



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
    key = str(name_or_path)
    if key in TEACHER_NAMES:
        allowed = TEACHER_OPTIONS[key]
        unknown = set(options) - allowed
        if unknown:
            raise ParameterError(f"teacher {key!r} takes options {sorted(allowed)}, "
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
    raise ParameterError(f"unknown teacher {key!r}: use {', '.join(map(repr, TEACHER_NAMES))} or a "
                         "path to a .keras / .h5 model file or SavedModel directory")
