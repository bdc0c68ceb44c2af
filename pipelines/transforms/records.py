"""Elements that flow through the embedding pipeline: one tagged union, no side outputs.

The pipeline carries good and failed inputs in the *same* PCollection
(DaskRunner evaluates only the last transform and mis-handles tagged outputs,
see ``../shared/docs/dependencies.md`` §1), so every element is a *work unit*:
a list of items, each one of

* :class:`InputFile`  - a recording to process (from the list stage);
* :class:`Recording`  - a recording that decoded, framed (and later scored/embedded);
* :class:`DeadLetter` - an input that failed at some stage (becomes a dead-letter row);
* :class:`Touch`      - "rebuild this output partition, keeping these existing rows"
  (incremental refresh and stale-partition cleanup).

Items are plain picklable dataclasses (numpy arrays inside); every stage maps a
unit to a unit, so one unit of recordings is embedded in fixed-size batches
without shuffling raw audio.
"""
from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from sea_core.errors import AudioError, MetadataError, SeaError
from sea_core.params import RELEVANCE, RelevanceParams

__all__ = ["InputFile", "Recording", "DeadLetter", "Touch", "RecordingName",
           "parse_recording_path", "dead_letter", "count_failure", "METRICS_NAMESPACE",
           "FRAMES_KIND", "DEAD_LETTER_KIND", "DEAD_LETTER_KEY", "frames_key", "partition_key",
           "DIRECTORY_VERSION"]

METRICS_NAMESPACE = "sea.embed"
FRAMES_KIND = "frames"
DEAD_LETTER_KIND = "dead_letter"
DEAD_LETTER_KEY = (DEAD_LETTER_KIND, "", "")

# <anything>/sensor_<id>/<YYYY-MM-DD>/<unix_ts>.<ext>
_NAME = re.compile(r"(?:^|/)sensor_(?P<sensor>[A-Za-z0-9][A-Za-z0-9_.-]*)/"
                   r"(?P<date>\d{4}-\d{2}-\d{2})/(?P<ts>\d+(?:\.\d+)?)\.(?P<ext>[A-Za-z0-9]+)$")


DIRECTORY_VERSION = "directory"
"""``InputFile.version`` of a listed *directory* whose name looks like a recording
(``1551710011.flac/``): the decode stage turns it into a dead letter (stage ``list``)."""


@dataclass(frozen=True)
class InputFile:
    """A listed input: its URI and what identifies its version (for incremental refresh)."""

    uri: str
    size: int = -1
    """Bytes, or -1 when the listing could not stat the file."""
    version: str = ""
    """ETag / md5 when the filesystem gives one, else the mtime (as text)."""


@dataclass
class Recording:
    """A decoded recording: windows, then SPL, then embeddings (arrays are filled stage by stage)."""

    uri: str
    recording_id: str
    """sha256 (hex) of the file bytes."""
    sensor: str
    day: str
    """Local date (YYYY-MM-DD) of the start time in the relevance time zone."""
    start_ms: int
    """Recording start, ms since the epoch (UTC)."""
    window_start_s: np.ndarray
    """[T] float32 offset of each window in the clip (negative when centred)."""
    student_audio: np.ndarray
    """[T, S] int16 8-kHz audio of each window."""
    teacher_windows: np.ndarray | None = None
    """[T, W] float32 teacher-rate windows; dropped after inference."""
    spl_dba: np.ndarray | None = None
    """[T] float32."""
    spl_source: str = ""
    embeddings: np.ndarray | None = None
    """[T, D] float32."""

    @property
    def n_windows(self) -> int:
        return int(self.student_audio.shape[0])


@dataclass(frozen=True)
class DeadLetter:
    """One failed input (``sea_core.datasets.schema.dead_letter_schema`` row)."""

    uri: str
    stage: str
    error_kind: str
    error_class: str
    message: str

    def row(self) -> dict:
        return {"uri": self.uri, "stage": self.stage, "error_kind": self.error_kind,
                "error_class": self.error_class, "message": self.message}


@dataclass(frozen=True)
class Touch:
    """Rebuild output partition ``key``; of its existing rows keep only those of ``keep_uris``."""

    key: tuple
    keep_uris: frozenset = field(default_factory=frozenset)


@dataclass(frozen=True)
class RecordingName:
    sensor: str
    start_unix: float
    day: str
    """Local date of ``start_unix`` in the relevance time zone."""


def parse_recording_path(uri: str, params: RelevanceParams = RELEVANCE) -> RecordingName:
    """Sensor, start time and local day from ``.../sensor_<id>/<YYYY-MM-DD>/<unix_ts>.<ext>``.

    Raises
    ------
    MetadataError
        The path does not follow the layout, the date or timestamp is not valid.
    """
    path = str(uri).split("?", 1)[0].replace("\\", "/")
    m = _NAME.search(path)
    if m is None:
        raise MetadataError(uri, "name does not follow 'sensor_<id>/<YYYY-MM-DD>/<unix_ts>.<ext>'")
    try:
        datetime.strptime(m.group("date"), "%Y-%m-%d")
    except ValueError as exc:
        raise MetadataError(uri, f"directory {m.group('date')!r} is not a valid date") from exc
    ts = float(m.group("ts"))
    if not np.isfinite(ts) or ts > 4_102_444_800:  # 2100-01-01
        raise MetadataError(uri, f"timestamp {m.group('ts')!r} is not a plausible unix time")
    try:
        tz = zoneinfo.ZoneInfo(params.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise SeaError(f"unknown relevance timezone {params.timezone!r}") from exc
    day = datetime.fromtimestamp(ts, tz=timezone.utc).astimezone(tz).date().isoformat()
    return RecordingName(sensor=m.group("sensor"), start_unix=ts, day=day)


def frames_key(sensor: str, day: str) -> tuple:
    return (FRAMES_KIND, str(sensor), str(day))


def partition_key(item) -> tuple:
    """Output partition of a pipeline item (frames of one sensor-day, or the dead letters)."""
    if isinstance(item, Recording):
        return frames_key(item.sensor, item.day)
    if isinstance(item, DeadLetter):
        return DEAD_LETTER_KEY
    if isinstance(item, Touch):
        return tuple(item.key)
    raise TypeError(f"not a pipeline output item: {type(item).__name__}")


def dead_letter(uri: str, stage: str, exc: BaseException) -> DeadLetter:
    """A dead-letter item for ``exc`` (kind from ``AudioError.kind``)."""
    if isinstance(exc, AudioError):
        kind, message = exc.kind, exc.reason
    elif isinstance(exc, SeaError):
        kind, message = "error", str(exc)
    else:
        kind, message = "unexpected", f"{type(exc).__name__}: {exc}"
    return DeadLetter(uri=str(uri), stage=stage, error_kind=kind,
                      error_class=type(exc).__name__, message=message)


def count_failure(item: DeadLetter) -> None:
    """Beam Metrics counters per failure kind (and stage)."""
    from apache_beam.metrics import Metrics

    Metrics.counter(METRICS_NAMESPACE, f"dead_letter.{item.error_kind}").inc()
    Metrics.counter(METRICS_NAMESPACE, f"dead_letter_stage.{item.stage}").inc()
    Metrics.counter(METRICS_NAMESPACE, "dead_lettered").inc()
