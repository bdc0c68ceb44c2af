"""Every directory and file name of the data the system reads and writes: ONE place.

Writers and readers build paths from these names (never from string
literals), so renaming a folder is a change here. Schemas (the columns) live in
:mod:`sea_core.datasets.schema`; this module is only the names::

    CORPUS/                                   (sea_core.synth; ``sea run`` stage "corpus")
        upstream/sensor_<id>/<YYYY-MM-DD>/<ts>.<ext>   audio (AUDIO_SUFFIXES)
        spl/                                           SPL sidecars
        downstream/audio/, downstream/annotations.csv  labelled clips (SPLITS)
        sensors.csv, corpus_card.json
    FRAMES_RUN/                               (``sea pipeline embed``)
        frames/sensor_key=<id>/day_key=<YYYY-MM-DD>/part-00000.parquet
        dead_letter/part-00000.parquet
        manifest.parquet, run_summary.json, _SUCCESS
        _staging/                             work units / listing (removed at the end)
    SELECTION/                                (``sea pipeline select``)
        selection.parquet/part-<sensor>-<period>.parquet, selection.json, _SUCCESS
    PCA/                                      (``sea pipeline fit-pca``)
        reduction.npz, reduction.json         (.moments-<hex>.npz while it runs)
    TRAINSET/                                 (``sea pipeline build-training-set``)
        {train,validate,test}/part-<sensor>-<day>-<NNN>.parquet
        dataset_card.json, _SUCCESS           (.counts-<hex>.json while it runs)
    RUN/                                      (``sea run --out RUN``: one folder per stage)
        corpus/ embed/ selection/ pca/ trainset/ train/ deploy/ evaluation/ stages/
"""
from __future__ import annotations

from sea_core.params import REDUCTION
from sea_core.storage import SUCCESS_NAME

__all__ = [
    "SUCCESS_NAME", "PART_NAME", "FRAMES_DIR", "DEAD_LETTER_DIR", "MANIFEST_NAME", "RUN_SUMMARY_NAME",
    "STAGING_DIR", "PLAN_STAGING_PREFIX", "FRAMES_PARTITION_KEYS",
    "frames_partition_dir", "LEGACY_FRAMES_DIRS", "LEGACY_FRAMES_GLOB",
    "SELECTION_FILE", "SELECTION_SUMMARY_FILE", "selection_shard_name", "SELECTION_SHARD_GLOB",
    "PCA_NPZ_NAME", "PCA_JSON_NAME", "MOMENTS_TEMP_NAME",
    "SPLITS", "TRAINSET_CARD_FILE", "trainset_shard_name", "COUNTS_TEMP_NAME",
    "UPSTREAM_DIR", "SPL_DIR", "DOWNSTREAM_DIR", "DOWNSTREAM_AUDIO_DIR", "ANNOTATIONS_NAME",
    "CORPUS_CARD_NAME", "SENSORS_NAME", "AUDIO_SUFFIXES",
    "RUN_CORPUS_DIR", "RUN_EMBED_DIR", "RUN_SELECTION_DIR", "RUN_PCA_DIR", "RUN_TRAINSET_DIR",
    "RUN_TRAIN_DIR", "RUN_DEPLOY_DIR", "RUN_EVALUATION_DIR", "RUN_STAGES_DIR", "RUN_STAGE_DIRS",
]

# ----------------------------------------------------------------- embed output (frames run)
PART_NAME = "part-00000.parquet"
"""The one Parquet file of a frames partition and of the dead-letter folder."""
FRAMES_DIR = "frames"
DEAD_LETTER_DIR = "dead_letter"
MANIFEST_NAME = "manifest.parquet"
RUN_SUMMARY_NAME = "run_summary.json"
STAGING_DIR = "_staging"
"""``DIR/_staging/``: the run's staged work units and listing (removed when the run finishes)."""
PLAN_STAGING_PREFIX = "plan"
"""``DIR/_staging/plan-<run id>/``: where the plan job's workers write the work units, the kept
manifest rows and the counts (when no ``--temp_location`` is given)."""

FRAMES_PARTITION_KEYS = ("sensor_key", "day_key")
"""Hive keys of the frames partition directories (values: the ``sensor`` and ``day`` columns)."""


def frames_partition_dir(sensor: str, day: str) -> str:
    """``'sensor_key=<sensor>/day_key=<day>'``: the directory of a frames partition under ``DIR/frames/``.

    The keys are deliberately *not* named ``sensor`` / ``day``: the files hold
    those columns themselves (a single file is self-describing), and a hive
    key that repeats a file column makes plain readers fail or retype it
    (``pq.read_table`` / ``pd.read_parquet`` refuse to merge the file's string
    with the inferred dictionary key; DuckDB and ``pyarrow.dataset`` infer
    ``DATE`` / integer types from the directory names). With distinct keys a
    hive-aware reader just adds two redundant columns ``sensor_key`` and
    ``day_key``, equal to ``sensor`` and ``day``, that can prune directories.
    """
    sk, dk = FRAMES_PARTITION_KEYS
    return f"{sk}={sensor}/{dk}={day}"


LEGACY_FRAMES_DIRS = "sensor=*/day=*"
"""Partition directories of frames schema version 1, under ``DIR/frames/`` (refused by readers)."""
LEGACY_FRAMES_GLOB = f"{LEGACY_FRAMES_DIRS}/{PART_NAME}"
"""Frames files of schema version 1, under ``DIR/frames/``."""

# ----------------------------------------------------------------- select output
SELECTION_FILE = "selection.parquet"
"""``SELECTION/selection.parquet/``: a folder of one shard per (sensor, period) group."""
SELECTION_SUMMARY_FILE = "selection.json"
SELECTION_SHARD_GLOB = "part-*.parquet"


def selection_shard_name(key: tuple) -> str:
    """File name of a (sensor, period) group's selection shard."""
    return f"part-{key[0]}-{key[1]}.parquet"


# ----------------------------------------------------------------- fit-pca output
PCA_NPZ_NAME = REDUCTION.npz_name        # "reduction.npz" (ReductionParams: part of the artifact format)
PCA_JSON_NAME = REDUCTION.json_name      # "reduction.json"
MOMENTS_TEMP_NAME = ".moments-{}.npz"
"""fit-pca's merged moments while the job runs (``{}``: a random hex; removed by the driver)."""

# ----------------------------------------------------------------- training set
SPLITS = ("train", "validate", "test")
"""The three splits: training-set folders, labelled-clip splits of the corpus and of evaluation."""
TRAINSET_CARD_FILE = "dataset_card.json"
COUNTS_TEMP_NAME = ".counts-{}.json"
"""build-training-set's per-split row counts while the job runs (``{}``: a random hex)."""


def trainset_shard_name(sensor: str, day: str, index: int) -> str:
    """File name of the ``index``-th training shard of a (sensor, day) partition (under ``<split>/``)."""
    return f"part-{sensor}-{day}-{index:03d}.parquet"


# ----------------------------------------------------------------- corpus (input of the embed stage)
UPSTREAM_DIR = "upstream"
SPL_DIR = "spl"
DOWNSTREAM_DIR = "downstream"
DOWNSTREAM_AUDIO_DIR = "audio"
ANNOTATIONS_NAME = "annotations.csv"
CORPUS_CARD_NAME = "corpus_card.json"
SENSORS_NAME = "sensors.csv"
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".aif", ".aiff", ".opus")
"""Audio files picked up when an input is a directory."""

# ----------------------------------------------------------------- `sea run --out RUN`: stage folders
RUN_CORPUS_DIR = "corpus"
RUN_EMBED_DIR = "embed"
RUN_SELECTION_DIR = "selection"
RUN_PCA_DIR = "pca"
RUN_TRAINSET_DIR = "trainset"
RUN_TRAIN_DIR = "train"
RUN_DEPLOY_DIR = "deploy"
RUN_EVALUATION_DIR = "evaluation"
RUN_STAGES_DIR = "stages"
"""``RUN/stages/<stage>.json`` records and ``RUN/stages/config.json``."""
RUN_STAGE_DIRS = {"corpus": RUN_CORPUS_DIR, "embed": RUN_EMBED_DIR, "select": RUN_SELECTION_DIR,
                  "pca": RUN_PCA_DIR, "trainset": RUN_TRAINSET_DIR, "train": RUN_TRAIN_DIR,
                  "quantize": RUN_DEPLOY_DIR, "evaluate": RUN_EVALUATION_DIR}
"""``sea run`` stage name -> its output folder under ``RUN`` (the "compare" stage writes none)."""
