"""Audio input: read any fsspec URL, decode with soundfile, downmix, resample with soxr.

Every failure is a typed :class:`~sea_core.errors.AudioError` naming the file,
so a pipeline can route it to its dead-letter output.
"""
from __future__ import annotations

import io
import math
import re

import fsspec
import numpy as np
import soundfile as sf
import soxr

from sea_core.errors import (AudioReadError, AudioTooLongError, ChannelLayoutError,
                             EmptyAudioError, NonFiniteAudioError, ParameterError, SampleRateError)
from sea_core.params import AUDIO_IO, AudioIOParams

__all__ = ["read_audio", "decode_bytes", "to_mono", "resample", "check_audio"]

# libsndfile's parse log of a WAV whose data chunk claims more bytes than the file holds.
_WAV_SHORT_DATA = re.compile(r"^\s*data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_TRUNCATION_MARKERS = ("ended unexpectedly", "lost sync")
# Streaming writers leave these placeholders in the data chunk size; libsndfile copes.
_WAV_SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF, 0x7FFFFFFF)


def read_audio(uri: str, *, target_sr: int | None = None,
               params: AudioIOParams = AUDIO_IO) -> tuple[np.ndarray, int]:
    """Read a WAV / FLAC / OGG file from any fsspec URL as mono float32.

    Parameters
    ----------
    uri : str
        Local path, ``file://``, ``memory://``, ``gs://`` (needs ``sea[gcp]``),
        ``s3://`` (needs ``sea[s3]``) or any other fsspec URL.
    target_sr : int, optional
        Resample (soxr HQ) to this rate; ``None`` keeps the file's rate.
    params : AudioIOParams
        Resampling quality, channel limit and protocol -> extra table.

    Returns
    -------
    audio : np.ndarray, shape (n_samples,), float32
        Mono signal (channels averaged).
    sr : int
        Sample rate of ``audio`` (``target_sr`` when given).

    Raises
    ------
    AudioReadError
        Missing, unreadable, corrupt or truncated file, or no fsspec backend for the URL.
    EmptyAudioError
        The file holds zero samples.
    NonFiniteAudioError
        The file holds NaN or infinite samples.
    ChannelLayoutError
        More than ``params.max_channels`` channels.
    ParameterError
        ``target_sr`` is not a positive integer.
    """
    uri = str(uri)
    _check_rate(target_sr, "target_sr", allow_none=True)
    try:
        opener = fsspec.open(uri, "rb")
    except ImportError as exc:  # fsspec names the missing package (gcsfs, s3fs, ...)
        raise AudioReadError(uri, _missing_backend_reason(uri, exc, params)) from exc
    except ValueError as exc:  # "Protocol not known"
        raise AudioReadError(uri, f"cannot open this URL: {exc}") from exc
    try:
        with opener as fobj:
            return _decode(fobj, uri, target_sr, params)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise AudioReadError(uri, f"file not found ({type(exc).__name__})") from exc
    except ImportError as exc:
        raise AudioReadError(uri, _missing_backend_reason(uri, exc, params)) from exc
    except OSError as exc:
        raise AudioReadError(uri, f"cannot read file: {exc}") from exc


def decode_bytes(data: bytes, uri: str, *, target_sr: int | None = None,
                 params: AudioIOParams = AUDIO_IO, max_seconds: float | None = None,
                 min_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode an encoded audio file held in memory (e.g. read by a Beam source).

    Parameters
    ----------
    data : bytes
        The whole encoded file (WAV, FLAC, OGG, ...).
    uri : str
        Name used in error messages.
    target_sr : int, optional
        Resample to this rate; ``None`` keeps the file's rate.
    params : AudioIOParams
        Resampling quality and channel limit.
    max_seconds : float, optional
        Refuse a recording longer than this (from the header before decoding; never
        more than ``max_seconds`` of samples are decoded).
    min_sample_rate : int, optional
        Refuse a file whose header declares a lower rate (e.g. 1 Hz).

    Returns
    -------
    audio : np.ndarray, shape (n_samples,), float32
    sr : int

    Raises
    ------
    AudioReadError, EmptyAudioError, NonFiniteAudioError, ChannelLayoutError, ParameterError
        As :func:`read_audio`.
    SampleRateError
        The declared rate is below ``min_sample_rate``.
    AudioTooLongError
        The recording is longer than ``max_seconds``.
    """
    uri = str(uri)
    _check_rate(target_sr, "target_sr", allow_none=True)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParameterError(f"decode_bytes({uri!r}): data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise AudioReadError(uri, "file is empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), uri, target_sr, params, max_seconds=max_seconds,
                   min_sample_rate=min_sample_rate)


def to_mono(audio: np.ndarray, uri: str = "<array>", *,
            params: AudioIOParams = AUDIO_IO) -> np.ndarray:
    """Average the channels of ``audio`` into a 1-D float32 signal.

    Parameters
    ----------
    audio : np.ndarray, shape (n,) or (n, channels) or (channels, n)
        ``(samples, channels)`` is soundfile's layout; ``(channels, samples)``
        (librosa's) is recognised when the first axis is the small one.
    uri : str
        Name used in error messages.
    params : AudioIOParams
        ``max_channels`` bounds a plausible channel axis.

    Returns
    -------
    np.ndarray, shape (n,), float32

    Raises
    ------
    ChannelLayoutError
        More than 2 dimensions, or no axis small enough to be channels.
    """
    a = np.asarray(audio)
    if a.ndim == 1:
        return a.astype(np.float32, copy=False)
    if a.ndim != 2:
        raise ChannelLayoutError(
            uri, f"audio must be 1-D or 2-D (samples, channels), got shape {a.shape}")
    n0, n1 = a.shape
    if n0 == 0 or n1 == 0:
        return np.zeros(0, dtype=np.float32)
    cmax = params.max_channels
    if n1 <= cmax and n0 >= n1:
        axis = 1  # (samples, channels)
    elif n0 <= cmax and n1 > n0:
        axis = 0  # (channels, samples)
    else:
        raise ChannelLayoutError(
            uri, f"cannot tell the channel axis of shape {a.shape}: neither axis is a "
                 f"plausible channel count (<= {cmax}) smaller than the other")
    return _mean_channels(a, axis)


def resample(audio: np.ndarray, sr_in: int, sr_out: int, *,
             params: AudioIOParams = AUDIO_IO) -> np.ndarray:
    """Resample a mono signal with soxr (``params.resample_quality``, HQ by default).

    Parameters
    ----------
    audio : np.ndarray, shape (n,)
    sr_in, sr_out : int
        Input and output rates in Hz.
    params : AudioIOParams

    Returns
    -------
    np.ndarray, shape (round(n * sr_out / sr_in),), float32
        ``audio`` itself (as float32) when the rates are equal.

    Raises
    ------
    ParameterError
        A rate is not a positive integer or ``audio`` is not 1-D.
    """
    _check_rate(sr_in, "sr_in")
    _check_rate(sr_out, "sr_out")
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ParameterError(f"resample: audio must be 1-D (mono), got shape {x.shape}")
    if int(sr_in) == int(sr_out) or x.size == 0:
        return x
    y = soxr.resample(x, int(sr_in), int(sr_out), quality=params.resample_quality)
    return np.ascontiguousarray(y, dtype=np.float32)


def check_audio(audio: np.ndarray, uri: str) -> np.ndarray:
    """Reject empty or non-finite audio.

    Parameters
    ----------
    audio : np.ndarray, any shape
    uri : str
        Name used in error messages.

    Returns
    -------
    np.ndarray
        ``audio`` as float32 (no copy when it already is).

    Raises
    ------
    EmptyAudioError
        ``audio`` has zero samples.
    NonFiniteAudioError
        ``audio`` holds NaN or infinite values (the message gives counts and the first index).
    """
    a = np.asarray(audio, dtype=np.float32)
    if a.size == 0:
        raise EmptyAudioError(uri, "audio has zero samples")
    finite = np.isfinite(a)
    if not finite.all():
        bad = ~finite
        n_nan = int(np.isnan(a).sum())
        first = int(np.flatnonzero(bad.ravel())[0])
        raise NonFiniteAudioError(
            uri, f"{int(bad.sum())} of {a.size} samples are not finite "
                 f"({n_nan} NaN, {int(bad.sum()) - n_nan} inf); first at flat index {first}")
    return a


# --------------------------------------------------------------------------- internals
def _decode(fobj, uri: str, target_sr: int | None, params: AudioIOParams, *,
            max_seconds: float | None = None,
            min_sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode an open binary file object; the single path behind read_audio / decode_bytes."""
    try:
        with sf.SoundFile(fobj) as f:
            sr = int(f.samplerate)
            channels = int(f.channels)
            declared = int(f.frames)
            log = f.extra_info
            if channels > params.max_channels:
                raise ChannelLayoutError(
                    uri, f"{channels} channels (more than {params.max_channels}); refusing to downmix")
            if min_sample_rate is not None and sr < min_sample_rate:
                raise SampleRateError(uri, f"sample rate {sr} Hz is below the {min_sample_rate}-Hz "
                                           f"floor (a corrupt header?)")
            limit = -1
            if max_seconds is not None:
                limit = int(math.floor(max_seconds * sr))
                if declared > limit:
                    raise AudioTooLongError(uri, f"{declared / sr:.1f} s declared ({declared} frames "
                                                 f"at {sr} Hz), more than the {max_seconds:g}-s cap "
                                                 f"(--max-seconds)")
            # never decode more than the cap, whatever the header says (streamed files)
            data = f.read(frames=limit + 1 if limit >= 0 else -1, dtype="float32",
                          always_2d=True)
            if 0 <= limit < data.shape[0]:
                raise AudioTooLongError(uri, f"longer than the {max_seconds:g}-s cap "
                                             f"(--max-seconds)")
    except sf.SoundFileError as exc:  # LibsndfileError and friends
        msg = str(exc)
        if "Error opening" in msg and ":" in msg:  # drop the '<_io.BytesIO object at ...>' noise
            msg = msg.rsplit(":", 1)[-1].strip()
        raise AudioReadError(uri, f"cannot decode audio ({msg})") from exc
    except (RuntimeError, TypeError, EOFError) as exc:
        raise AudioReadError(uri, f"cannot decode audio ({type(exc).__name__}: {exc})") from exc
    _check_truncation(uri, log, declared, data.shape[0])
    audio = check_audio(_mean_channels(data, axis=1), uri)
    if target_sr is not None and int(target_sr) != sr:
        audio = resample(audio, sr, int(target_sr), params=params)
        sr = int(target_sr)
    return audio, sr


def _check_truncation(uri: str, log: str, declared: int, got: int) -> None:
    low = log.lower()
    for marker in _TRUNCATION_MARKERS:
        if marker in low:
            raise AudioReadError(uri, f"truncated or corrupt container (decoder: '{marker}')")
    m = _WAV_SHORT_DATA.search(log)
    if m:
        claimed, actual = int(m.group(1)), int(m.group(2))
        if claimed > actual and claimed not in _WAV_SIZE_PLACEHOLDERS:
            raise AudioReadError(
                uri, f"truncated: data chunk declares {claimed} bytes, file holds {actual}")
    if declared > 0 and got < declared:
        raise AudioReadError(uri, f"truncated: decoded {got} of {declared} declared frames")


def _mean_channels(a: np.ndarray, axis: int) -> np.ndarray:
    if a.shape[axis] == 1:
        out = a.reshape(-1)
    else:
        out = a.mean(axis=axis, dtype=np.float64)
    return np.ascontiguousarray(out, dtype=np.float32)


def _missing_backend_reason(uri: str, exc: Exception, params: AudioIOParams) -> str:
    protocol = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    extra = dict(params.fsspec_extras).get(protocol)
    hint = f"pip install 'sea[{extra}]'" if extra else "install the fsspec backend for this protocol"
    return f"no fsspec backend for '{protocol}://' ({exc}); {hint}"


def _check_rate(value, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
          and np.isfinite(value) and value > 0 and float(value) == int(value))
    if not ok:
        raise ParameterError(f"{name} must be a positive integer sample rate in Hz, got {value!r}")
