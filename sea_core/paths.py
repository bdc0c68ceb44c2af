"""Where `sea` keeps things on disk: the model store and the weights cache."""
from __future__ import annotations

import os
from pathlib import Path

from sea_core.params import API

__all__ = ["sea_home", "cache_dir", "models_dir"]


def sea_home() -> Path:
    """``$SEA_HOME`` (default ``~/.cache/sea``): root of the local model store."""
    return Path(os.environ.get(API.sea_home_env) or os.path.expanduser(API.sea_home_default))


def cache_dir() -> Path:
    """``$SEA_CACHE_DIR`` (default ``$SEA_HOME/cache``): downloaded and converted weights."""
    env = os.environ.get("SEA_CACHE_DIR")
    return Path(env) if env else sea_home() / "cache"


def models_dir() -> Path:
    """Registered student models: ``$SEA_HOME/models/<model_id>/``."""
    return sea_home() / "models"
