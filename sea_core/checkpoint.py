"""Crash-safe checkpoints of a training run (``sea train``).

Versioned directories ``OUT/checkpoints/<name>-<seq>/`` (weights, optimizer
variables, loop state) and one pointer file ``OUT/<name>.json`` per name
(``latest``, ``best``), replaced atomically (``sea_core.storage.publish_json``) once
the new directory is complete: a kill at any point leaves the old or the new
checkpoint current. Used by :mod:`sea_core.train`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sea_core.errors import DataError
from sea_core.storage import publish_json

__all__ = ["LATEST", "BEST", "STATE_FILE", "WEIGHTS_FILE", "OPTIMIZER_FILE", "CHECKPOINTS_DIR",
           "KILL_AT_ENV", "SAVE_STEPS", "checkpoint_dir"]

LATEST = "latest"
BEST = "best"
STATE_FILE = "state.json"
WEIGHTS_FILE = "model.weights.h5"
OPTIMIZER_FILE = "optimizer.npz"

CHECKPOINTS_DIR = "checkpoints"
"""Versioned checkpoint directories ``OUT/checkpoints/<name>-<seq>/``; ``OUT/<name>.json``
(a pointer replaced atomically) names the current one."""
KILL_AT_ENV = "SEA_TRAIN_KILL_AT"
"""Test hook: SIGKILL this process at the named step of a checkpoint save (tests/test_train.py)."""
SAVE_STEPS = ("dir", "weights", "optimizer", "state", "pointer", "cleaned")


def _kill_point(step: str) -> None:
    if os.environ.get(KILL_AT_ENV) == step:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def _pointer(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def checkpoint_dir(out: str | os.PathLike, name: str = LATEST) -> Path | None:
    """The current checkpoint ``name`` ('latest' / 'best') of a training output, or None.

    Raises
    ------
    DataError
        The pointer file is unreadable or names an incomplete directory.
    """
    out = Path(out)
    ptr = _pointer(out, name)
    if ptr.is_file():
        try:
            rel = json.loads(ptr.read_text())["dir"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{ptr}: unreadable checkpoint pointer ({exc}); delete it to start "
                            f"over") from exc
        d = out / rel
        if not (d / STATE_FILE).is_file():
            raise DataError(f"{ptr}: names {d}, which is not a complete checkpoint")
        return d
    legacy = out / name  # layout before versioned checkpoints
    return legacy if (legacy / STATE_FILE).is_file() else None


def _clean_checkpoints(out: Path, name: str, keep: Path | None) -> None:
    """Remove ``name``'s checkpoint dirs other than ``keep`` (partial ones of a killed save too)."""
    import shutil

    root = out / CHECKPOINTS_DIR
    for d in sorted(root.glob(f"{name}-*")) if root.is_dir() else ():
        if keep is None or d.resolve() != keep.resolve():
            shutil.rmtree(d, ignore_errors=True)
    for tmp in out.glob(f".{name}.json.tmp*"):  # a pointer publish killed half-way
        tmp.unlink()


def _save_checkpoint(out: Path, name: str, model, optimizer, state: dict) -> Path:
    """Write a new versioned checkpoint, then switch the pointer to it (crash-safe at any point).

    The new directory is complete before ``OUT/<name>.json`` is replaced
    (``sea_core.storage.publish_json``: a temp file moved onto it), so a kill leaves either the old or
    the new checkpoint current; unreferenced directories are removed afterwards
    (and by the next run).
    """
    root = out / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    seqs = [int(d.name.rsplit("-", 1)[1]) for d in root.glob(f"{name}-*")
            if d.name.rsplit("-", 1)[1].isdigit()]
    d = root / f"{name}-{max(seqs, default=0) + 1:08d}"
    d.mkdir()
    _kill_point("dir")
    model.save_weights(d / WEIGHTS_FILE)
    _kill_point("weights")
    np.savez(d / OPTIMIZER_FILE, *[v.numpy() for v in optimizer.variables])
    _kill_point("optimizer")
    (d / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True))
    _kill_point("state")
    publish_json(_pointer(out, name), {"dir": f"{CHECKPOINTS_DIR}/{d.name}"})
    _kill_point("pointer")
    _clean_checkpoints(out, name, keep=d)
    _kill_point("cleaned")
    return d


def _load_checkpoint(directory: Path, model, optimizer) -> dict:
    model.load_weights(directory / WEIGHTS_FILE)
    stored = np.load(directory / OPTIMIZER_FILE)
    values = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    if len(values) != len(optimizer.variables):
        raise DataError(f"{directory}: optimizer checkpoint has {len(values)} variables, "
                        f"expected {len(optimizer.variables)}")
    for var, value in zip(optimizer.variables, values):
        var.assign(value)
    return json.loads((directory / STATE_FILE).read_text())
