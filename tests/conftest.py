"""Shared test fixtures: paths to ../shared, small synthetic signals, temp SEA_HOME."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sea_core.params import TeacherSpec

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEA_SHARED_DIR", ROOT.parent / "shared"))
SHARED_MODELS = SHARED / "models"
SHARED_DATA = SHARED / "data"
AISFX_GOLDEN = SHARED_MODELS / "aisfx_teacher_golden.npz"
SEA64_H5 = SHARED_MODELS / "edgel3_sea_ust_audio_emb_64.h5"
SONYC_MINI = SHARED_DATA / "sonyc_ust_mini"
URBAN_OGG = SHARED_DATA / "urban" / "city_gezortenplotz_fs44796.ogg"


def need_shared(path: Path) -> Path:
    """Skip the calling test with a reason when a ../shared file is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is not part of a user's clone)")
    return path


# Downloaded/converted weights (the aisfx wheel) are cached once per machine, not per test.
os.environ.setdefault("SEA_CACHE_DIR", str(Path.home() / ".cache" / "sea" / "cache"))


@pytest.fixture(autouse=True)
def _isolated_sea_home(tmp_path_factory, monkeypatch):
    """Each test gets its own model store so tests never see a user's models."""
    if "SEA_HOME_KEEP" not in os.environ:
        monkeypatch.setenv("SEA_HOME", str(tmp_path_factory.mktemp("sea_home")))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def sine(freq: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, sr: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    k = (f1 - f0) / seconds
    return (amplitude * np.sin(2 * np.pi * (f0 * t + 0.5 * k * t * t))).astype(np.float32)


# --------------------------------------------------------------------------- tiny real teacher
TINY_SR = 16_000
"""Sample rate of the tiny teacher (1-s windows of 16-kHz audio)."""


def make_tiny_teacher(path: Path, *, hidden: int = 32, dim: int = 16) -> Path:
    """A small real Keras teacher saved to ``path``: 1-s 16-kHz audio -> ``dim``-d (frontend 'none')."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((TINY_SR,))
    x = keras.layers.Reshape((100, TINY_SR // 100))(inp)
    x = keras.layers.Dense(hidden, activation="tanh")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(dim)(x)
    keras.Model(inp, out).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_teacher(request, tmp_path_factory) -> Path:
    """The tiny teacher; a test module sets ``TINY_TEACHER_UNITS = (hidden, dim)`` (default (32, 16))."""
    hidden, dim = getattr(request.module, "TINY_TEACHER_UNITS", (32, 16))
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny.keras", hidden=hidden, dim=dim)


def save_student(path: Path, emb_dim: int = 64, seed: int = 5) -> Path:
    """A seeded student with its log-mel frontend (8-kHz audio in), saved to ``path`` (``.keras``)."""
    import keras

    from sea_core.models.students import build_student
    from sea_core.params import StudentSpec

    keras.utils.set_random_seed(seed)
    build_student(StudentSpec(emb_dim=emb_dim), with_frontend=True).save(path)
    return path


@pytest.fixture(scope="module")
def student_file(tmp_path_factory) -> Path:
    """A seeded 64-d student saved to a ``.keras`` file."""
    return save_student(tmp_path_factory.mktemp("student") / "s64.keras")


# --------------------------------------------------------------------------- small real recordings
CLIP_SR = 16_000
CLIP_BASE = 1551708000  # 2019-03-04 09:00 America/New_York (the relevance time zone)
CLIP_TEACHER = TeacherSpec(name="clip", sample_rate=CLIP_SR, window_samples=CLIP_SR, emb_dim=16)
"""A 1-s window at the clips' rate: the framing of the small real recordings."""


def write_clip(root: Path, sensor: str, ts: int | str, *, seconds: float = 2.0, sr: int = CLIP_SR,
               seed: int = 0, ext: str = "wav", day: str = "2019-03-04") -> Path:
    """A real 16-bit WAV (tone + seeded noise) at ``root/sensor_<sensor>/<day>/<ts>.<ext>``."""
    import soundfile as sf

    p = Path(root) / f"sensor_{sensor}" / day / f"{ts}.{ext}"
    p.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(seed).standard_normal(t.size)
    y = 0.1 * (1 + seed % 3) * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.01 * noise
    sf.write(p, y.astype(np.float32), sr, subtype="PCM_16")
    return p


def decoded_recordings(root: Path, sensors=("aa01",), per_sensor: int = 2, seconds: float = 2.0):
    """Framed :class:`Recording` s of real WAV clips (``decode_recording``, teacher rate 16 kHz, 1-s hop)."""
    from pipelines.transforms.decode import FramingConfig, decode_recording
    from pipelines.transforms.records import InputFile

    cfg = FramingConfig(teacher=CLIP_TEACHER, hop_seconds=1.0)
    recs = []
    for s_i, sensor in enumerate(sensors):
        for i in range(per_sensor):
            p = write_clip(root, sensor, CLIP_BASE + 600 * i, seconds=seconds, seed=3 * s_i + i)
            recs.append(decode_recording(InputFile(str(p)), cfg))
    return recs
