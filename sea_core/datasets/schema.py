"""Parquet schemas of every dataset the system writes, each with a version.

One place defines the columns; writers build tables with these schemas and
readers call :func:`check_schema` so that schema drift gives a clear
:class:`~sea_core.errors.SchemaError` naming the file and the field.

The files are plain Parquet: readable by pyarrow, pandas or DuckDB without
this project. The version and dataset kind are stored in the Parquet key-value
metadata under ``sea.schema`` and ``sea.schema_version``. A version also
covers the on-disk layout of its dataset (e.g. the frames partition
directories, :func:`sea_core.datasets.layout.frames_partition_dir`).
"""
from __future__ import annotations

import pyarrow as pa

from sea_core.errors import SchemaError

__all__ = [
    "FRAMES_SCHEMA_VERSION", "DEAD_LETTER_SCHEMA_VERSION", "TRAINING_SCHEMA_VERSION",
    "frames_schema", "dead_letter_schema", "training_schema", "target_column",
    "schema_metadata", "check_schema",
]

FRAMES_SCHEMA_VERSION = "2"
"""2: partition directories ``sensor_key=<id>/day_key=<YYYY-MM-DD>`` (1: ``sensor=/day=``)."""
DEAD_LETTER_SCHEMA_VERSION = "1"
TRAINING_SCHEMA_VERSION = "1"

_META_KIND = b"sea.schema"
_META_VERSION = b"sea.schema_version"


def schema_metadata(kind: str, version: str, **extra: str) -> dict[bytes, bytes]:
    meta = {_META_KIND: kind.encode(), _META_VERSION: version.encode()}
    meta.update({f"sea.{k}".encode(): str(v).encode() for k, v in extra.items()})
    return meta


def frames_schema(emb_dim: int, student_samples: int) -> pa.Schema:
    """One row per analysis window of an upstream recording (``DIR/frames/``).

    Files live in ``DIR/frames/sensor_key=<id>/day_key=<YYYY-MM-DD>/``
    (:func:`sea_core.datasets.layout.frames_partition_dir`), one (sensor, day) per directory. The
    ``sensor`` and ``day`` (local date of the recording in the relevance time
    zone) columns are stored in the files, so a single file is self-describing
    and ``pq.read_table('DIR/frames')``, ``pd.read_parquet('DIR/frames')`` and
    DuckDB's ``read_parquet('DIR/frames/**/*.parquet')`` read the whole dataset
    with the types below (plus the directory keys ``sensor_key`` / ``day_key``).
    """
    return pa.schema([
        pa.field("recording_id", pa.string(), nullable=False),   # sha256 of the file bytes (hex)
        pa.field("uri", pa.string(), nullable=False),
        pa.field("sensor", pa.string(), nullable=False),
        pa.field("day", pa.string(), nullable=False),              # YYYY-MM-DD
        pa.field("start_time", pa.timestamp("ms", tz="UTC"), nullable=False),  # recording start
        pa.field("window_index", pa.int32(), nullable=False),
        pa.field("window_start_s", pa.float32(), nullable=False),  # offset in the clip (< 0 if centred)
        pa.field("spl_dba", pa.float32(), nullable=False),
        pa.field("spl_source", pa.string(), nullable=False),       # 'computed' | 'sidecar'
        pa.field("relevance", pa.float32(), nullable=False),       # (0, 1]
        pa.field("teacher_id", pa.string(), nullable=False),
        pa.field("teacher_emb", pa.list_(pa.float32(), emb_dim), nullable=False),
        pa.field("student_audio", pa.list_(pa.int16(), student_samples), nullable=False),  # 8 kHz
    ], metadata=schema_metadata("frames", FRAMES_SCHEMA_VERSION))


def dead_letter_schema() -> pa.Schema:
    """One row per input that failed at any stage (``DIR/dead_letter/``)."""
    return pa.schema([
        pa.field("uri", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),        # list | decode | frame | spl | teacher ...
        pa.field("error_kind", pa.string(), nullable=False),   # AudioError.kind (too_short, ...)
        pa.field("error_class", pa.string(), nullable=False),  # Python class name
        pa.field("message", pa.string(), nullable=False),
    ], metadata=schema_metadata("dead_letter", DEAD_LETTER_SCHEMA_VERSION))


def target_column(dim: int) -> str:
    return f"target_{dim}"


def training_schema(dims: tuple[int, ...] | list[int], student_samples: int) -> pa.Schema:
    """One row per window of a training set (``DIR/<split>/part-*.parquet``).

    ``target_<d>`` holds the zero-mean PCA scores of the teacher embedding
    for every requested student dim ``d``.
    """
    fields = [
        pa.field("window_id", pa.string(), nullable=False),    # '<recording_id>:<window_index>'
        pa.field("sensor", pa.string(), nullable=False),
        pa.field("day", pa.string(), nullable=False),
        pa.field("student_audio", pa.list_(pa.int16(), student_samples), nullable=False),
    ]
    fields += [pa.field(target_column(d), pa.list_(pa.float32(), d), nullable=False)
               for d in sorted(dims, reverse=True)]
    return pa.schema(fields, metadata=schema_metadata("training", TRAINING_SCHEMA_VERSION))


def check_schema(actual: pa.Schema, expected_kind: str, expected_version: str, *,
                 where: str, required: list[str] | tuple[str, ...] = ()) -> None:
    """Raise :class:`SchemaError` naming ``where`` (a file) on kind/version drift or a missing field."""
    meta = actual.metadata or {}
    kind = meta.get(_META_KIND, b"").decode() or None
    version = meta.get(_META_VERSION, b"").decode() or None
    if kind != expected_kind:
        raise SchemaError(f"{where}: expected a '{expected_kind}' dataset, found schema kind {kind!r}")
    if version != expected_version:
        raise SchemaError(f"{where}: schema version {version!r} of '{kind}' is not supported "
                          f"(this sea reads version {expected_version!r}); rebuild the dataset")
    missing = [name for name in required if name not in actual.names]
    if missing:
        raise SchemaError(f"{where}: missing field(s) {', '.join(missing)}; present: {', '.join(actual.names)}")
