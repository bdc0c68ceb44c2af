"""The one framing function: long audio -> overlapping analysis windows + timestamps.

Semantics are those of openl3 / edgel3 ``get_embedding`` [reference (a)]:
centring prepends ``window_samples // 2`` zeros, the end is zero-padded so
every sample lies in some window, the count is ``1 + ceil((L - W) / hop)`` for
the (centre-)padded length ``L``, and timestamps are ``arange(T) * hop_seconds``.
Window ``i`` starts at sample ``round(i * hop_seconds * sr)`` of the padded
signal, so hops that are not a whole number of samples (the aisfx hop of
51200/44100 s framed at 8 kHz) do not drift.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sea_core.errors import AudioTooShortError, ParameterError

__all__ = ["frame_audio", "window_starts_seconds", "window_start_samples"]

# A hop (in samples) within this relative distance of an integer is taken as that integer.
_INTEGRAL_TOL = 1e-9


def frame_audio(audio: np.ndarray, *, sr: int, window_samples: int, hop_seconds: float,
                center: bool = True, n_windows: int | None = None,
                uri: str = "<array>") -> tuple[np.ndarray, np.ndarray]:
    """Cut mono audio into overlapping windows (openl3 / edgel3 framing).

    Parameters
    ----------
    audio : np.ndarray, shape (n_samples,)
        Mono signal at ``sr``.
    sr : int
        Sample rate of ``audio`` in Hz.
    window_samples : int
        Window length ``W`` in samples.
    hop_seconds : float
        Hop between window starts in seconds (need not be a whole number of samples).
    center : bool
        Prepend ``W // 2`` zeros so window ``i`` is centred on ``i * hop_seconds``.
    n_windows : int, optional
        Force the number of windows (zero-padding the end as needed, or dropping
        trailing windows); used to align student (8 kHz) windows with a teacher's.
    uri : str
        Name used in error messages.

    Returns
    -------
    frames : np.ndarray, shape (T, window_samples), float32
        A fresh (writable, non-overlapping) array.
    timestamps : np.ndarray, shape (T,), float64
        ``arange(T) * hop_seconds``: window start (uncentred) or centre (centred), in seconds.

    Raises
    ------
    AudioTooShortError
        ``len(audio) < window_samples``.
    ParameterError
        ``audio`` is not 1-D, or a size / rate / hop / count is not positive.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ParameterError(f"frame_audio({uri}): audio must be 1-D (mono), got shape {x.shape}")
    sr = _positive_int(sr, "sr", uri)
    w = _positive_int(window_samples, "window_samples", uri)
    hop = float(hop_seconds)
    if not (math.isfinite(hop) and hop > 0):
        raise ParameterError(f"frame_audio({uri}): hop_seconds must be > 0, got {hop_seconds!r}")
    if n_windows is not None:
        n_windows = _positive_int(n_windows, "n_windows", uri)
    if x.size < w:
        raise AudioTooShortError(
            uri, f"{x.size} samples ({x.size / sr:.3f} s) is shorter than one window of "
                 f"{w} samples ({w / sr:.3f} s at {sr} Hz)")

    pad_left = w // 2 if center else 0
    length = x.size + pad_left
    hop_samples = hop * sr
    integral = abs(hop_samples - round(hop_samples)) <= _INTEGRAL_TOL * max(1.0, hop_samples)
    if n_windows is None:
        n = 1 + max(0, math.ceil((length - w) / hop_samples - _INTEGRAL_TOL))
    else:
        n = n_windows
    starts = window_start_samples(n, hop_seconds=hop, sr=sr)

    total = max(length, int(starts[-1]) + w)
    buf = np.zeros(total, dtype=np.float32)
    buf[pad_left:length] = x
    view = sliding_window_view(buf, w)  # (total - w + 1, w), no copy
    if integral:
        step = int(round(hop_samples))
        frames = np.array(view[: (n - 1) * step + 1: step], dtype=np.float32)
    else:
        frames = view[starts]  # fancy index on the window axis: copies only T rows
    timestamps = np.arange(n, dtype=np.float64) * hop
    return frames, timestamps


def window_start_samples(n: int, *, hop_seconds: float, sr: int) -> np.ndarray:
    """Start sample of each window in the (centre-)padded signal: ``round(i * hop_seconds * sr)``.

    Parameters
    ----------
    n : int
        Number of windows.
    hop_seconds : float
    sr : int

    Returns
    -------
    np.ndarray, shape (n,), int64
    """
    return np.round(np.arange(int(n), dtype=np.float64) * (float(hop_seconds) * sr)).astype(np.int64)


def window_starts_seconds(n: int, hop_seconds: float, window_seconds: float, center: bool,
                          *, sr: int | None = None, window_samples: int | None = None) -> np.ndarray:
    """Start of each window in the original clip, in seconds (negative when centred).

    Parameters
    ----------
    n : int
        Number of windows.
    hop_seconds : float
    window_seconds : float
        Window length in seconds.
    center : bool
        Whether :func:`frame_audio` centred the windows.
    sr : int, optional
        When given, the result is exact for :func:`frame_audio` at that rate
        (sample-rounded starts, ``W // 2`` centring pad); otherwise
        ``i * hop_seconds - (window_seconds / 2 if center else 0)``.
    window_samples : int, optional
        With ``sr``: the window length in samples as given to :func:`frame_audio` (default
        ``round(window_seconds * sr)``).

    Returns
    -------
    np.ndarray, shape (n,), float64
    """
    if sr is None:
        offset = window_seconds / 2.0 if center else 0.0
        return np.arange(int(n), dtype=np.float64) * float(hop_seconds) - offset
    w = int(window_samples) if window_samples is not None else int(round(window_seconds * sr))
    pad_left = w // 2 if center else 0
    return (window_start_samples(n, hop_seconds=hop_seconds, sr=sr) - pad_left) / float(sr)


def _positive_int(value, name: str, uri: str) -> int:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
          and math.isfinite(value) and value > 0 and float(value) == int(value))
    if not ok:
        raise ParameterError(f"frame_audio({uri}): {name} must be a positive integer, got {value!r}")
    return int(value)
