"""Shared test fixtures: paths to ../shared, small synthetic signals, temp SEA_HOME."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

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
