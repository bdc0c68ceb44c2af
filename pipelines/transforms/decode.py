"""Stage 2, decode + frame: bytes -> content hash -> audio -> teacher windows + aligned student windows.

For every :class:`InputFile` of a unit: parse sensor / start time from the
path (stage ``list``), read the bytes with fsspec and hash them (the recording
id), decode and resample once to the teacher rate and once to the student
8-kHz rate (stage ``decode``), then cut centred teacher windows at the
corpus hop and the student windows *aligned to them* with
``frame_audio(..., n_windows=T)`` (stage ``frame``). Student audio is stored as
int16 (``x * INT16_SCALE``, clipped; readers divide by ``INT16_SCALE`` = 32768).
Any failure becomes a :class:`DeadLetter` item in the same unit.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import apache_beam as beam
import fsspec
import numpy as np

from pipelines.transforms.records import (DIRECTORY_VERSION, METRICS_NAMESPACE, DeadLetter,
                                          InputFile, Recording, count_failure, dead_letter,
                                          parse_recording_path)
from sea_core.errors import AudioReadError, NotAFileError, SeaError
from sea_core.params import (AUDIO_LIMITS, INT16_SCALE, RELEVANCE, STUDENT_MEL64, RelevanceParams,
                             TeacherSpec)

__all__ = ["FramingConfig", "DecodeAndFrame", "decode_recording", "to_int16"]


@dataclass(frozen=True)
class FramingConfig:
    """How recordings are decoded and cut: the teacher's spec (rate, window in samples), the run's
    hop, and the decode limits. Every size is derived from ``teacher``; nothing is re-stated."""

    teacher: TeacherSpec
    hop_seconds: float
    """The run's hop (``--hop-seconds``, default ``teacher.corpus_hop_seconds``)."""
    student_sr: int = STUDENT_MEL64.sample_rate
    center: bool = True
    max_seconds: float = AUDIO_LIMITS.max_seconds
    """Longer recordings are dead letters (checked from the header before decoding)."""
    min_sample_rate: int = AUDIO_LIMITS.min_sample_rate

    @property
    def teacher_sr(self) -> int:
        return self.teacher.sample_rate

    @property
    def teacher_window(self) -> int:
        """Teacher window in samples (``teacher.window_samples``)."""
        return self.teacher.window_samples

    @property
    def window_seconds(self) -> float:
        return self.teacher.window_seconds

    @property
    def student_window(self) -> int:
        """The same window in samples at ``student_sr``."""
        return self.teacher.window_samples_at(self.student_sr)


def to_int16(x: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1) -> int16 (``round(x * INT16_SCALE)`` clipped)."""
    return np.clip(np.round(np.asarray(x, np.float32) * INT16_SCALE), -32768, 32767).astype(np.int16)


def _read_bytes(uri: str) -> bytes:
    try:
        with fsspec.open(uri, "rb") as f:
            return f.read()
    except FileNotFoundError as exc:
        raise AudioReadError(uri, "file not found") from exc
    except IsADirectoryError as exc:
        raise AudioReadError(uri, "is a directory") from exc
    except (OSError, ValueError, ImportError) as exc:
        raise AudioReadError(uri, f"cannot read file ({type(exc).__name__}: {exc})") from exc


def decode_recording(item: InputFile, cfg: FramingConfig,
                     relevance: RelevanceParams = RELEVANCE) -> Recording | DeadLetter:
    """One input -> a framed :class:`Recording`, or the :class:`DeadLetter` of its first failure.

    ``relevance`` gives the time zone of the recording's local day (parsed from its path)."""
    from sea_core.audio.framing import frame_audio, window_starts_seconds
    from sea_core.audio.io import decode_bytes, resample

    uri = item.uri
    stage = "list"
    try:
        if item.version == DIRECTORY_VERSION:
            raise NotAFileError(uri, "is a directory, not an audio file (its name looks like "
                                     "a recording)")
        name = parse_recording_path(uri, relevance)
        stage = "decode"
        data = _read_bytes(uri)
        rid = hashlib.sha256(data).hexdigest()
        audio, sr = decode_bytes(data, uri, max_seconds=cfg.max_seconds,
                                 min_sample_rate=cfg.min_sample_rate)
        del data
        teacher_audio = resample(audio, sr, cfg.teacher_sr)
        student_audio = resample(audio, sr, cfg.student_sr)
        del audio
        stage = "frame"
        frames, _ = frame_audio(teacher_audio, sr=cfg.teacher_sr, window_samples=cfg.teacher_window,
                                hop_seconds=cfg.hop_seconds, center=cfg.center, uri=uri)
        n = frames.shape[0]
        student, _ = frame_audio(student_audio, sr=cfg.student_sr,
                                 window_samples=cfg.student_window, hop_seconds=cfg.hop_seconds,
                                 center=cfg.center, n_windows=n, uri=uri)
        starts = window_starts_seconds(n, cfg.hop_seconds, cfg.window_seconds, cfg.center,
                                       sr=cfg.teacher_sr, window_samples=cfg.teacher_window)
    except (SeaError, ValueError, TypeError, MemoryError, RuntimeError) as exc:
        return dead_letter(uri, stage, exc)
    return Recording(uri=uri, recording_id=rid, sensor=name.sensor, day=name.day,
                     start_ms=int(round(name.start_unix * 1000.0)),
                     window_start_s=starts.astype(np.float32), student_audio=to_int16(student),
                     teacher_windows=frames)


class _DecodeUnit(beam.DoFn):
    def __init__(self, cfg: FramingConfig, relevance: RelevanceParams):
        super().__init__()
        self._cfg = cfg
        self._relevance = relevance

    def setup(self):
        from apache_beam.metrics import Metrics

        self._inputs = Metrics.counter(METRICS_NAMESPACE, "inputs")
        self._ms = Metrics.distribution(METRICS_NAMESPACE, "decode_ms")

    def process(self, unit):
        t0 = time.perf_counter()
        out = []
        for item in unit:
            if isinstance(item, InputFile):
                self._inputs.inc()
                item = decode_recording(item, self._cfg, self._relevance)
                if isinstance(item, DeadLetter):
                    count_failure(item)
            out.append(item)
        self._ms.update(int((time.perf_counter() - t0) * 1000))
        yield out


class DecodeAndFrame(beam.PTransform):
    """Work unit of :class:`InputFile` -> unit of framed :class:`Recording` / :class:`DeadLetter`."""

    def __init__(self, cfg: FramingConfig, relevance: RelevanceParams = RELEVANCE,
                 label: str | None = None):
        super().__init__(label)
        self._cfg = cfg
        self._relevance = relevance

    def expand(self, units):
        return units | "DecodeFrame" >> beam.ParDo(_DecodeUnit(self._cfg, self._relevance))
