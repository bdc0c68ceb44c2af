"""Trainer reliability (issue 13): crash-safe checkpoint swap under a real SIGKILL at every
step of a save, and argument validation with one-line errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.job.cli import main as sea_main
from sea_core.checkpoint import (CHECKPOINTS_DIR, KILL_AT_ENV, SAVE_STEPS, _load_checkpoint,
                                 _save_checkpoint, checkpoint_dir)

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import os, sys
from pathlib import Path
import keras, numpy as np
from sea_core.checkpoint import KILL_AT_ENV, _save_checkpoint
out, step = Path(sys.argv[1]), sys.argv[2]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
opt = keras.optimizers.Adam(1e-3)
opt.build(model.trainable_variables)
model.layers[0].kernel.assign(np.zeros((4, 3), np.float32))
_save_checkpoint(out, "latest", model, opt, {"n": 1})
os.environ[KILL_AT_ENV] = step          # SIGKILL ourselves at this step of the next save
model.layers[0].kernel.assign(np.ones((4, 3), np.float32))
_save_checkpoint(out, "latest", model, opt, {"n": 2})
print("not killed")
"""


def _model():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    opt = keras.optimizers.Adam(1e-3)
    opt.build(model.trainable_variables)
    return model, opt


@pytest.mark.parametrize("step", SAVE_STEPS)
def test_checkpoint_swap_survives_sigkill_at_every_step(step, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "save.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(KILL_AT_ENV, None)
    proc = subprocess.run([sys.executable, str(script), str(out), step], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr[-2000:]
    # whatever the step, exactly one complete checkpoint is current: the old or the new one
    latest = checkpoint_dir(out)
    assert latest is not None
    expect = 2 if SAVE_STEPS.index(step) >= SAVE_STEPS.index("pointer") else 1
    model, opt = _model()
    state = _load_checkpoint(latest, model, opt)
    assert state == {"n": expect}
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(),
                                  np.full((4, 3), float(expect == 2), np.float32))
    # the next save works and leaves one directory, no temp pointer
    _save_checkpoint(out, "latest", model, opt, {"n": 3})
    assert json.loads((checkpoint_dir(out) / "state.json").read_text()) == {"n": 3}
    assert len(list((out / CHECKPOINTS_DIR).glob("latest-*"))) == 1
    assert not list(out.glob(".*.tmp*"))


def test_pointer_publish_killed_half_way_leaves_the_old_checkpoint(tmp_path):
    """The pointer is published by sea_core.storage (temp file beside it, then moved): a kill
    between the two leaves a hidden temp file that readers ignore and the next save removes."""
    model, opt = _model()
    first = _save_checkpoint(tmp_path, "latest", model, opt, {"n": 1})
    stale = tmp_path / ".latest.json.tmp-0123456789abcdef"    # what publish_json leaves behind
    stale.write_text('{"dir": "checkpoints/latest-99')         # torn
    assert checkpoint_dir(tmp_path) == first
    _save_checkpoint(tmp_path, "latest", model, opt, {"n": 2})
    assert not stale.exists() and not list(tmp_path.glob(".*.tmp*"))
    assert json.loads((checkpoint_dir(tmp_path) / "state.json").read_text()) == {"n": 2}


@pytest.mark.parametrize("flag,value,message", [
    ("--steps-per-epoch", "-1", "--steps-per-epoch must be a positive integer, got -1"),
    ("--batch-size", "0", "--batch-size must be a positive integer, got 0"),
    ("--checkpoint-every", "0", "--checkpoint-every must be a positive integer, got 0"),
    ("--epochs", "0", "--epochs must be a positive integer, got 0"),
    ("--validation-steps", "-3", "--validation-steps must be a positive integer"),
    ("--lr", "nan", "--lr must be a positive number"),
])
def test_train_arguments_validated(flag, value, message, tmp_path, capsys):
    rc = sea_main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_train_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert sea_main(["train", "--data", str(tmp_path), "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and is not a directory" in err[0]
