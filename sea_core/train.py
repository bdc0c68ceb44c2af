"""Train SEA students by streaming Parquet training sets (``sea train``).

Data: ``DIR/{train,validate}/part-*.parquet`` (``sea_core.datasets.schema.training_schema``):
8-kHz int16 audio per window and PCA targets per student dim. Row groups are
streamed with pyarrow into ``tf.data`` (file-level interleave, shuffle buffer,
prefetch); the whole set is never loaded, and peak memory does not grow with
the number of rows or shards (``benchmarks/train_input.py``).

The model trained is the student *with* its front-end layer
(``build_student(spec, with_frontend=True)``), so the one student front-end
function runs inside the model in training, in the exported ``.keras`` /
SavedModel and (as the trunk's input definition) in quantization.

Loss MSE, metric MAE, Adam; early stopping and reduce-LR-on-plateau with the
reference's settings [ref (f)], implemented in the loop so that their state is
checkpointed. Checkpoints (:mod:`sea_core.checkpoint`: ``latest`` every
``checkpoint_every`` steps and at each epoch end, ``best`` on validation loss)
hold weights, optimizer state and loop state; a killed run restarted with the
same arguments resumes from
``latest`` and ends with the same weights as an uninterrupted run (CPU, op
determinism, per-epoch seeded data order).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sea_core.checkpoint import (BEST, LATEST, WEIGHTS_FILE, _clean_checkpoints, _load_checkpoint,
                                 _save_checkpoint, checkpoint_dir)
from sea_core.datasets.layout import TRAINSET_CARD_FILE as CARD_FILE
from sea_core.datasets.schema import TRAINING_SCHEMA_VERSION, check_schema, target_column
from sea_core.errors import DataError, ParameterError, SchemaError
from sea_core.params import INT16_SCALE, STUDENT_EMB_DIMS, STUDENT_MEL64, TRAIN, StudentSpec

__all__ = ["TrainConfig", "TrainingSet", "make_dataset", "make_train_step", "train", "main"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that defines a training run (saved with its checkpoints)."""

    data: str
    out: str
    emb_dim: int = 128
    head: str = "relu"
    learning_rate: float = TRAIN.learning_rate
    batch_size: int = TRAIN.batch_size
    epochs: int = TRAIN.epochs
    steps_per_epoch: int | None = None
    """None = the default epoch (:func:`epoch_steps`): ``TRAIN.steps_per_epoch`` steps,
    or one pass over the training split when that is shorter."""
    validation_steps: int | None = None
    """None = the whole validation split."""
    seed: int = TRAIN.seed
    shuffle_buffer: int = TRAIN.shuffle_buffer
    checkpoint_every: int = 50
    early_stop_patience: int = TRAIN.early_stop_patience
    early_stop_min_delta: float = TRAIN.early_stop_min_delta
    reduce_lr_patience: int = TRAIN.reduce_lr_patience
    reduce_lr_factor: float = TRAIN.reduce_lr_factor
    register: bool = True
    progress: bool = True
    precision: str = "auto"
    """'fp32' | 'bf16' | 'auto': bf16 = Keras mixed_bfloat16 per layer (float32 weights, front-end,
    first conv, output layer and loss), see :func:`student_for_training`; 'auto' (default) = bf16
    on CPUs with AMX-BF16 / AVX512-BF16, else fp32. Adopted by issue 17's rule on the demo
    training set (``benchmarks/results/train_precision.json``: 1.43x per epoch, final validation
    MSE +1.1 %)."""

    def __post_init__(self):
        def positive_int(name, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                flag = "--" + name.replace("_", "-")
                raise ParameterError(f"{flag} must be a positive integer, got {v!r}")

        for name in ("batch_size", "epochs", "checkpoint_every", "shuffle_buffer",
                     "early_stop_patience", "reduce_lr_patience"):
            positive_int(name)
        positive_int("steps_per_epoch", allow_none=True)
        positive_int("validation_steps", allow_none=True)
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ParameterError(f"--lr must be a positive number, got {self.learning_rate!r}")
        if not 0 < self.reduce_lr_factor < 1:
            raise ParameterError(f"reduce_lr_factor must be in (0, 1), got {self.reduce_lr_factor!r}")
        if not self.early_stop_min_delta >= 0:
            raise ParameterError(f"early_stop_min_delta must be >= 0, got "
                                 f"{self.early_stop_min_delta!r}")
        if self.head not in ("relu", "linear"):
            raise ParameterError(f"--head must be 'relu' or 'linear', got {self.head!r}")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ParameterError(f"--out {self.out}: exists and is not a directory")


# --------------------------------------------------------------------------- data
class TrainingSet:
    """A Parquet training set on disk: split files, card, schema checks."""

    def __init__(self, root: str | os.PathLike):
        from sea_core import storage

        self.root = storage.absolute(root).rstrip("/")  # any fsspec URL (local, gs://, s3://)
        card = f"{self.root}/{CARD_FILE}"
        if not storage.isfile(card):
            raise DataError(f"{card}: missing dataset card (is {self.root} a training set built by "
                            f"`sea pipeline build-training-set`?)")
        try:
            self.card = json.loads(storage.read_text(card))
        except json.JSONDecodeError as exc:
            raise DataError(f"{card}: not valid JSON ({exc})") from exc
        version = str(self.card.get("schema_version"))
        if version != TRAINING_SCHEMA_VERSION:
            raise SchemaError(f"{card}: schema_version {version!r} is not supported "
                              f"(this sea reads {TRAINING_SCHEMA_VERSION!r})")
        self.student_samples = int(self.card["student_samples"])
        self.dims = [int(d) for d in self.card["dims"]]

    def files(self, split: str) -> list[str]:
        from sea_core import storage

        files = storage.glob(f"{self.root}/{split}/*.parquet")
        if not files:
            raise DataError(f"{self.root}/{split}: split '{split}' is empty (no Parquet shards)")
        return files

    def check_files(self, split: str, emb_dim: int) -> tuple[list[str], int]:
        """Open every shard's footer: schema version, fields; returns files and row count."""
        if emb_dim not in self.dims:
            raise SchemaError(f"{self.root}/{CARD_FILE}: field {target_column(emb_dim)} is not in "
                              f"this training set (dims {self.dims})")
        rows = 0
        files = self.files(split)
        for path in files:
            try:
                meta = _read_metadata(path)
                schema = meta.schema.to_arrow_schema()
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"{path}: unreadable Parquet shard ({exc})") from exc
            check_schema(schema, "training", TRAINING_SCHEMA_VERSION, where=str(path),
                         required=("student_audio", target_column(emb_dim)))
            rows += meta.num_rows
        if rows == 0:
            raise DataError(f"{self.root}/{split}: split '{split}' has no rows")
        return files, rows


READ_BUFFER_BYTES = 1 << 20
"""Shards are read through a buffered stream in chunks of this size rather than
whole column chunks at once (~13 MB of audio per 1024-row group), which keeps
each open shard reader at ~30 MB."""


def _read_metadata(url: str):
    from sea_core import storage

    fs, path = storage.url_to_fs(url)
    with fs.open(path, "rb") as f:
        return pq.read_metadata(f)


def _read_batches(path: str, target: str, batch_rows: int):
    """Yield (audio int16 [n, S], target float32 [n, d]) record batches of one shard (any fsspec URL)."""
    from sea_core import storage

    try:
        fs, fpath = storage.url_to_fs(path)
        source = fpath if "://" not in path or path.startswith("file://") else fs.open(fpath, "rb")
        handle = pq.ParquetFile(source, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)
        for batch in handle.iter_batches(batch_size=batch_rows, columns=["student_audio", target]):
            audio = batch.column(0)
            tgt = batch.column(1)
            n = len(batch)
            yield (audio.values.to_numpy(zero_copy_only=False).reshape(n, -1),
                   tgt.values.to_numpy(zero_copy_only=False).reshape(n, -1))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: corrupt Parquet shard ({exc})") from exc


def epoch_steps(train_rows: int, batch_size: int, steps_per_epoch: int | None = None) -> int:
    """Steps of one epoch: the corpus-scale definition shared by ``sea train`` and ``sea plan``.

    ``steps_per_epoch`` when given; otherwise ``min(TRAIN.steps_per_epoch, rows // batch)``
    (at least 1): a fixed number of steps at corpus scale, one pass for small sets.
    """
    if steps_per_epoch:
        return int(steps_per_epoch)
    return max(1, min(TRAIN.steps_per_epoch, int(train_rows) // int(batch_size)))


def make_dataset(files: list[Path], *, emb_dim: int, student_samples: int, batch_size: int,
                 shuffle: bool, seed: int, shuffle_buffer: int,
                 interleave: int = TRAIN.interleave_shards):
    """Stream shards into a batched ``tf.data.Dataset`` of (audio float32, target float32)."""
    import tensorflow as tf

    target = target_column(emb_dim)
    spec = (tf.TensorSpec([None, student_samples], tf.int16), tf.TensorSpec([None, emb_dim], tf.float32))
    paths = [str(p) for p in files]
    order = np.random.default_rng(seed).permutation(len(paths)) if shuffle else np.arange(len(paths))
    file_ds = tf.data.Dataset.from_tensor_slices([paths[i] for i in order])

    def shard(path):
        return tf.data.Dataset.from_generator(
            lambda p: _read_batches(p.decode(), target, 256), args=(path,), output_signature=spec)

    # Sequential interleave: exactly ``cycle_length`` shard readers are open at any
    # time, so memory does not depend on the number of shards (a parallel interleave
    # also opens ``cycle_length`` prefetched "future" readers once there are more
    # shards than the cycle). Same element order as the deterministic parallel one,
    # and fast enough: the input runs far ahead of the training step
    # (benchmarks/train_input.py).
    # Each epoch draws a new shard order (seeded), then reads ``interleave`` shards
    # round-robin (TRAIN.interleave_shards: many sensor-days at once) into the row
    # shuffle buffer.
    ds = file_ds.interleave(shard, cycle_length=max(1, min(interleave, len(paths))),
                            block_length=1).unbatch()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size).map(
        lambda a, t: (tf.cast(a, tf.float32) / INT16_SCALE, t), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- training
def student_for_training(spec, precision: str):
    """The student to train: float32, or bf16 compute with a float32 front-end, first conv and
    output layer (from the last weighted layer on), so the loss sees float32 predictions.

    Set per layer (:func:`sea_core.precision.apply_precision`): Keras' global policy is
    untouched, and ``apply_precision(model, 'fp32')`` turns it back into the plain float32
    model that is saved and exported.
    """
    from sea_core.models.layers import walk_layers
    from sea_core.models.students import build_student
    from sea_core.precision import apply_precision

    model = build_student(spec, with_frontend=True)
    if precision == "bf16":
        leaves = list(walk_layers(model))
        last = max(i for i, layer in enumerate(leaves) if layer.weights)
        apply_precision(model, "bf16", keep_float32=tuple(layer.name for layer in leaves[last:]))
    return model


def make_train_step(model, optimizer, strategy=None):
    """The compiled training step: MSE loss, Adam update; returns (loss, MAE) of the batch.

    Used by :func:`train` (and by ``benchmarks/train_input.py`` to time steps alone).
    """
    import keras
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    mse = keras.losses.MeanSquaredError(reduction="sum_over_batch_size")

    @tf.function
    def train_step(x, y):
        def step(x, y):
            with tf.GradientTape() as tape:
                pred = model(x, training=True)
                loss = mse(y, pred)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss, tf.reduce_mean(tf.abs(y - pred))
        loss, mae = strategy.run(step, args=(x, y))
        return (strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, mae, axis=None))

    return train_step


def train(config: TrainConfig) -> dict:
    """Train (or resume) a student; returns the run summary (also ``OUT/summary.json``)."""
    import keras
    import tensorflow as tf

    from sea_core.precision import apply_precision, describe_cpu, resolve_precision

    if config.emb_dim not in STUDENT_EMB_DIMS:
        raise ParameterError(f"emb_dim must be one of {sorted(STUDENT_EMB_DIMS)}, got {config.emb_dim}")
    data = TrainingSet(config.data)
    train_files, n_train = data.check_files("train", config.emb_dim)
    val_files, n_val = data.check_files("validate", config.emb_dim)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / "train_config.json"
    latest = checkpoint_dir(out, LATEST)
    precision = resolve_precision(config.precision)
    if latest is not None and config_file.exists():
        previous = json.loads(config_file.read_text())
        changed = {k for k, v in asdict(config).items()
                   if k not in ("progress", "epochs") and previous.get(k) != v}
        if previous.get("resolved_precision", precision) != precision:  # 'auto' on another CPU
            changed.add(f"precision ({previous['resolved_precision']} -> {precision} here)")
        if changed:
            raise ParameterError(f"{out}: holds a run with different settings ({', '.join(sorted(changed))}); "
                                 f"use another --out or the same arguments to resume")
    config_file.write_text(json.dumps(asdict(config) | {"resolved_precision": precision}, indent=2,
                                      sort_keys=True))

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    spec = StudentSpec(emb_dim=config.emb_dim, head=config.head,
                       window_seconds=data.student_samples / STUDENT_MEL64.sample_rate)
    if spec.window_samples != data.student_samples:
        raise DataError(f"{data.root}: student_samples {data.student_samples} is not a whole "
                        f"window at {STUDENT_MEL64.sample_rate} Hz")
    steps_per_epoch = epoch_steps(n_train, config.batch_size, config.steps_per_epoch)
    val_steps = config.validation_steps or max(1, math.ceil(n_val / config.batch_size))

    log.info("training in %s (--precision %s; %s)", precision, config.precision, describe_cpu())
    with strategy.scope():
        model = student_for_training(spec, precision)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
        optimizer.build(model.trainable_variables)
    train_step = make_train_step(model, optimizer, strategy)

    @tf.function
    def eval_step(x, y):
        pred = model(x, training=False)
        return tf.reduce_sum(tf.square(y - pred)), tf.reduce_sum(tf.abs(y - pred)), tf.size(y)

    state = {"epoch": 0, "step": 0, "best_val_loss": None, "es_wait": 0, "lr_wait": 0,
             "es_best": None, "lr_best": None, "learning_rate": config.learning_rate,
             "history": [], "stopped_early": False, "train_seconds": 0.0}
    for name in (LATEST, BEST):  # unreferenced / partial dirs of a killed save
        _clean_checkpoints(out, name, keep=checkpoint_dir(out, name))
    if latest is not None:
        state = _load_checkpoint(latest, model, optimizer)
        log.info("resuming from %s: epoch %d step %d", latest, state["epoch"], state["step"])
    optimizer.learning_rate.assign(state["learning_rate"])
    writer = tf.summary.create_file_writer(str(out / "tensorboard"))
    started = time.perf_counter()

    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        ds = make_dataset(train_files, emb_dim=config.emb_dim, student_samples=data.student_samples,
                          batch_size=config.batch_size, shuffle=True,
                          seed=config.seed + epoch, shuffle_buffer=config.shuffle_buffer)
        ds = ds.repeat().take(steps_per_epoch).skip(state["step"])
        bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["loss", "mae"],
                                  verbose=1 if config.progress else 0)
        # losses of the steps run before an interruption: the epoch's mean covers all its steps
        losses = list(state.get("epoch_losses", []))
        maes = list(state.get("epoch_maes", []))
        for x, y in ds:
            loss, mae = train_step(x, y)
            losses.append(float(loss))
            maes.append(float(mae))
            state["step"] += 1
            bar.update(state["step"], values=[("loss", losses[-1]), ("mae", maes[-1])])
            if state["step"] % config.checkpoint_every == 0 and state["step"] < steps_per_epoch:
                state["train_seconds"] += time.perf_counter() - started
                started = time.perf_counter()
                state["epoch_losses"], state["epoch_maes"] = losses, maes
                _save_checkpoint(out, LATEST, model, optimizer, state)
        state["epoch_losses"], state["epoch_maes"] = [], []
        # validation
        sq = ab = n = 0.0
        for x, y in make_dataset(val_files, emb_dim=config.emb_dim,
                                 student_samples=data.student_samples, batch_size=config.batch_size,
                                 shuffle=False, seed=config.seed,
                                 shuffle_buffer=config.shuffle_buffer).take(val_steps):
            s, a, c = eval_step(x, y)
            sq, ab, n = sq + float(s), ab + float(a), n + float(c)
        val_loss, val_mae = sq / n, ab / n
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else None,
                  "mae": float(np.mean(maes)) if maes else None, "val_loss": val_loss,
                  "val_mae": val_mae, "learning_rate": state["learning_rate"]}
        state["history"].append(record)
        log.info("epoch %d: loss %.5f val_loss %.5f lr %.2e", epoch + 1, record["loss"] or float("nan"),
                 val_loss, state["learning_rate"])
        with writer.as_default():
            for key in ("loss", "mae", "val_loss", "val_mae", "learning_rate"):
                if record[key] is not None:
                    tf.summary.scalar(key, record[key], step=epoch + 1)
        # best checkpoint, early stopping, reduce LR on plateau (Keras semantics)
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state["best_val_loss"] = val_loss
            _save_checkpoint(out, BEST, model, optimizer, state)
        if state["es_best"] is None or val_loss < state["es_best"] - config.early_stop_min_delta:
            state["es_best"], state["es_wait"] = val_loss, 0
        else:
            state["es_wait"] += 1
            state["stopped_early"] = state["es_wait"] >= config.early_stop_patience
        if state["lr_best"] is None or val_loss < state["lr_best"] - config.early_stop_min_delta:
            state["lr_best"], state["lr_wait"] = val_loss, 0
        else:
            state["lr_wait"] += 1
            if state["lr_wait"] >= config.reduce_lr_patience:
                state["learning_rate"] *= config.reduce_lr_factor
                optimizer.learning_rate.assign(state["learning_rate"])
                state["lr_wait"] = 0
        state["epoch"] += 1
        state["step"] = 0
        state["train_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        _save_checkpoint(out, LATEST, model, optimizer, state)

    (out / "history.json").write_text(json.dumps(state["history"], indent=2))
    # export the best weights
    model.load_weights(checkpoint_dir(out, BEST) / WEIGHTS_FILE)
    apply_precision(model, "fp32")  # the saved / exported student is plain float32
    model.save(out / "model.keras")
    model.export(str(out / "saved_model"), verbose=False)
    summary = {"model": str(out / "model.keras"), "saved_model": str(out / "saved_model"),
               "emb_dim": config.emb_dim, "head": config.head, "epochs_run": state["epoch"],
               "stopped_early": state["stopped_early"], "best_val_loss": state["best_val_loss"],
               "train_rows": n_train, "validate_rows": n_val, "steps_per_epoch": steps_per_epoch,
               "window_samples": data.student_samples, "train_seconds": state["train_seconds"],
               "teacher_id": data.card.get("teacher_id"), "history": state["history"],
               "precision": precision}
    if config.register:
        from sea_core.models import store
        entry = store.register(out / "model.keras", emb_dim=config.emb_dim, head=config.head,
                               window_seconds=spec.window_seconds,
                               teacher_id=str(data.card.get("teacher_id", "unknown")),
                               source=f"sea train {data.root}",
                               pca_artifact=data.card.get("pca_artifact"),
                               dataset_fingerprint=data.card.get("fingerprint"))
        summary["model_id"] = entry.model_id
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sea train", description="Train a SEA student on a Parquet training set.")
    parser.add_argument("--data", required=True, help="training set directory (with dataset_card.json)")
    parser.add_argument("--out", required=True, help="output directory (checkpoints, model, logs)")
    parser.add_argument("--emb-dim", type=int, default=128, choices=STUDENT_EMB_DIMS)
    parser.add_argument("--head", default="relu", choices=("relu", "linear"))
    parser.add_argument("--lr", type=float, default=TRAIN.learning_rate)
    parser.add_argument("--batch-size", type=int, default=TRAIN.batch_size)
    parser.add_argument("--epochs", type=int, default=TRAIN.epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--validation-steps", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=TRAIN.seed)
    parser.add_argument("--precision", default=TrainConfig.precision, choices=("auto", "fp32", "bf16"),
                        help="bf16: mixed_bfloat16 compute (float32 weights, output layer and loss); "
                             "auto: bf16 on CPUs with AMX-BF16 / AVX512-BF16")
    parser.add_argument("--no-register", action="store_true", help="do not add the model to the store")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    summary = train(TrainConfig(data=args.data, out=args.out, emb_dim=args.emb_dim, head=args.head,
                                learning_rate=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                                steps_per_epoch=args.steps_per_epoch,
                                validation_steps=args.validation_steps,
                                checkpoint_every=args.checkpoint_every, seed=args.seed,
                                precision=args.precision,
                                register=not args.no_register, progress=not args.quiet))
    print(f"sea train: best val_loss {summary['best_val_loss']:.5f} after {summary['epochs_run']} "
          f"epochs -> {summary['model']}" + (f" (registered {summary['model_id']})"
                                             if "model_id" in summary else ""))
    return 0
