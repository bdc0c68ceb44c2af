"""Trainer: loss decreases, kill + resume == uninterrupted, bad-input errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sea_core.checkpoint import checkpoint_dir
from sea_core.errors import DataError, SchemaError
from sea_core.train import TrainConfig, train
from sea_core.datasets.trainset import training_table, write_card, write_shard

SAMPLES = 8000  # 1-s windows at 8 kHz
DIM = 64


def _make_split(rng, n: int):
    """Sines at random frequencies + noise; targets a smooth function of the frequency."""
    freqs = rng.uniform(100, 3500, size=n)
    t = np.arange(SAMPLES) / 8000.0
    audio = 0.3 * np.sin(2 * np.pi * freqs[:, None] * t) + 0.01 * rng.standard_normal((n, SAMPLES))
    centres = np.linspace(100, 3500, DIM)
    targets = np.exp(-0.5 * ((freqs[:, None] - centres) / 300.0) ** 2) * 3.0 - 1.0
    return (audio * 32767).astype(np.int16), targets.astype(np.float32)


def make_training_set(root: Path, *, n_train=192, n_val=64, seed=0, shards=2) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("validate", n_val), ("test", n_val)):
        audio, targets = _make_split(rng, n)
        for s, idx in enumerate(np.array_split(np.arange(n), shards)):
            table = training_table(window_ids=[f"{split}:{i}" for i in idx], sensors=["s0"] * len(idx),
                                   days=["2019-01-01"] * len(idx), audio_int16=audio[idx],
                                   targets={DIM: targets[idx]})
            write_shard(root / split / f"part-{s:05d}.parquet", table)
    write_card(root, dims=[DIM], student_samples=SAMPLES, teacher_id="test-generated",
               sampling_method="none")
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_training_set(tmp_path_factory.mktemp("trainset"))


def _weights(model_path: Path):
    import keras

    from sea_core.models import layers  # noqa: F401
    return keras.models.load_model(model_path, compile=False).get_weights()


def test_loss_decreases_and_exports(dataset, tmp_path):
    summary = train(TrainConfig(data=str(dataset), out=str(tmp_path / "run"), emb_dim=DIM,
                                head="linear", learning_rate=1e-3, batch_size=32, epochs=4,
                                progress=False, register=True))
    history = summary["history"]
    assert len(history) == 4
    assert history[-1]["loss"] < 0.8 * history[0]["loss"], history
    assert history[-1]["val_loss"] < history[0]["val_loss"], history
    assert (tmp_path / "run" / "model.keras").is_file()
    assert (tmp_path / "run" / "saved_model" / "saved_model.pb").is_file()
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == history
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    from sea_core.models import store
    assert store.latest(DIM).model_id == summary["model_id"]


def test_two_processes_give_identical_weights(dataset, tmp_path):
    """Same data, same seed, separate processes: bit-identical weights (multi-threaded CPU)."""
    args = ["--data", str(dataset), "--emb-dim", str(DIM), "--lr", "1e-3", "--batch-size", "32",
            "--epochs", "1", "--steps-per-epoch", "6", "--seed", "3", "--no-register", "--quiet"]
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-m", "pipelines", "train", *args, "--out", str(tmp_path / name)],
                       check=True, capture_output=True)
    for wa, wb in zip(_weights(tmp_path / "a" / "model.keras"), _weights(tmp_path / "b" / "model.keras")):
        np.testing.assert_array_equal(wa, wb)


def test_kill_and_resume_gives_same_weights(dataset, tmp_path):
    args = ["--data", str(dataset), "--emb-dim", str(DIM), "--head", "linear", "--lr", "1e-3",
            "--batch-size", "16", "--epochs", "2", "--steps-per-epoch", "8",
            "--checkpoint-every", "2", "--seed", "7", "--no-register", "--quiet"]
    train(TrainConfig(data=str(dataset), out=str(tmp_path / "a"), emb_dim=DIM, head="linear",
                      learning_rate=1e-3, batch_size=16, epochs=2, steps_per_epoch=8,
                      checkpoint_every=2, seed=7, register=False, progress=False))
    out_b = tmp_path / "b"
    log = open(tmp_path / "train.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "train", *args, "--out", str(out_b)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and checkpoint_dir(out_b) is None:
        time.sleep(0.05)
    latest = checkpoint_dir(out_b)
    killed_at = json.loads((latest / "state.json").read_text()) if latest else None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (
        "training ended before it could be killed:\n" + (tmp_path / "train.log").read_text()[-2000:])
    assert killed_at is not None and killed_at["epoch"] == 0 and 0 < killed_at["step"] < 8
    train(TrainConfig(data=str(dataset), out=str(out_b), emb_dim=DIM, head="linear",
                      learning_rate=1e-3, batch_size=16, epochs=2, steps_per_epoch=8,
                      checkpoint_every=2, seed=7, register=False, progress=False))
    for wa, wb in zip(_weights(tmp_path / "a" / "model.keras"), _weights(out_b / "model.keras")):
        np.testing.assert_array_equal(wa, wb)
    # the interrupted-then-resumed epoch reports the loss of all its steps (issue 13.4)
    assert json.loads((out_b / "history.json").read_text()) == \
        json.loads((tmp_path / "a" / "history.json").read_text())


def test_missing_card(tmp_path):
    with pytest.raises(DataError, match="dataset_card.json"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "o"), emb_dim=DIM))


def test_corrupt_shard_named(tmp_path):
    root = make_training_set(tmp_path / "ds", n_train=16, n_val=8, shards=1)
    bad = root / "train" / "part-00001.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="part-00001.parquet"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "o"), emb_dim=DIM, progress=False))


def test_schema_version_mismatch_named(tmp_path):
    root = make_training_set(tmp_path / "ds", n_train=16, n_val=8, shards=1)
    path = root / "validate" / "part-00000.parquet"
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"sea.schema_version"] = b"0"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(SchemaError, match=r"validate/part-00000.parquet.*version"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "o"), emb_dim=DIM, progress=False))


def test_target_dim_missing_named(tmp_path):
    root = make_training_set(tmp_path / "ds", n_train=16, n_val=8, shards=1)
    with pytest.raises(SchemaError, match="target_128"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "o"), emb_dim=128, progress=False))


def test_empty_split_named(tmp_path):
    root = make_training_set(tmp_path / "ds", n_train=16, n_val=8, shards=1)
    for f in (root / "validate").glob("*.parquet"):
        f.unlink()
    with pytest.raises(DataError, match="validate"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "o"), emb_dim=DIM, progress=False))


def test_bf16_training_two_processes_identical_and_exports_float32(dataset, tmp_path):
    """mixed_bfloat16 training: still bit-identical across processes for the fixed precision;
    the saved student is plain float32 (front-end, weights, every layer's policy)."""
    import keras

    from sea_core.models.layers import walk_layers

    args = ["--data", str(dataset), "--emb-dim", str(DIM), "--lr", "1e-3", "--batch-size", "32",
            "--epochs", "1", "--steps-per-epoch", "6", "--seed", "3", "--no-register", "--quiet",
            "--precision", "bf16"]
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-m", "pipelines", "train", *args, "--out", str(tmp_path / name)],
                       check=True, capture_output=True)
    for wa, wb in zip(_weights(tmp_path / "a" / "model.keras"), _weights(tmp_path / "b" / "model.keras")):
        np.testing.assert_array_equal(wa, wb)
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["precision"] == "bf16"
    model = keras.models.load_model(tmp_path / "a" / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in walk_layers(model)} == {"float32"}
    assert keras.mixed_precision.global_policy().name == "float32"
    # and it really trained differently from fp32 (the bf16 path ran)
    subprocess.run([sys.executable, "-m", "pipelines", "train", *args[:-2], "--precision", "fp32",
                    "--out", str(tmp_path / "c")], check=True, capture_output=True)
    assert any(not np.array_equal(wa, wc) for wa, wc in
               zip(_weights(tmp_path / "a" / "model.keras"), _weights(tmp_path / "c" / "model.keras")))
