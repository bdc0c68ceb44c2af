"""Numpy reference front-ends: kapre log-mel (L3 teacher, SEA students) and aisfx log-mel.

Every setting comes from a params object (:class:`~sea_core.params.KapreMelParams`,
:class:`~sea_core.params.AisfxFrontendParams`); nothing here hard-codes a
sample rate or FFT size. Arithmetic is float64 internally and results are
float32. The Keras layers in :mod:`sea_core.models.layers` build their fixed
weights from the matrices below and are tested against these functions.

This module must not import TensorFlow.

kapre 0.1.4 ``Melspectrogram`` (reference §(a)):

1. TF ``'same'`` padding of the 1-D signal (``p.same_padding``), frames of
   ``n_dft`` every ``hop_length`` samples: ``ceil(S / hop)`` frames;
2. STFT through a periodic-Hann DFT (:func:`kapre_dft_kernels`), power
   ``real**2 + imag**2``;
3. mel filterbank on the power (:func:`kapre_mel_filterbank`, HTK scale,
   Slaney area norm), then ``x ** (power_melgram / 2)`` (a square root);
4. ``10 * log10(max(x, amin))``, minus each example's own maximum, floored at
   ``-dynamic_range_db``.

aisfx essentia path (``../shared/models/AISFX.md``): frame ``i`` starts at
``i*hop - hop`` (zero padded), symmetric Hann, power ``|rfft|**2``, HTK mel with
triangles linear in mel and unit-sum rows, ``log10(log_scale*x + 1) / norm_max``.
"""
from __future__ import annotations

import numpy as np

from sea_core.errors import ParameterError
from sea_core.params import AisfxFrontendParams, KapreMelParams

__all__ = [
    "hz_to_mel_htk", "mel_to_hz_htk",
    "periodic_hann", "symmetric_hann",
    "kapre_dft_kernels", "kapre_mel_filterbank", "kapre_logmel",
    "aisfx_window", "aisfx_mel_filterbank", "aisfx_frames", "aisfx_logmel",
]

_CHUNK_VALUES = 1 << 23
"""Frames x n_dft values processed at once (bounds the float64 working memory to ~64 MB)."""


# --------------------------------------------------------------------------- helpers
def hz_to_mel_htk(freqs_hz) -> np.ndarray:
    """HTK mel scale, ``2595 * log10(1 + f / 700)`` (float64, any shape)."""
    return 2595.0 * np.log10(1.0 + np.asarray(freqs_hz, dtype=np.float64) / 700.0)


def mel_to_hz_htk(mels) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_htk` (float64, any shape)."""
    return 700.0 * (10.0 ** (np.asarray(mels, dtype=np.float64) / 2595.0) - 1.0)


def periodic_hann(n: int) -> np.ndarray:
    """Periodic ("DFT-even") Hann window ``0.5 - 0.5 cos(2 pi k / n)``, shape [n], float64."""
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def symmetric_hann(n: int) -> np.ndarray:
    """Symmetric Hann window ``0.5 - 0.5 cos(2 pi k / (n - 1))``, shape [n], float64."""
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / (n - 1))


def _check_windows(windows, name: str) -> np.ndarray:
    x = np.asarray(windows)
    if x.ndim != 2:
        raise ParameterError(f"{name}: windows must be 2-D [N, samples], got shape {x.shape}")
    if x.shape[1] == 0:
        raise ParameterError(f"{name}: windows hold zero samples")
    if not np.issubdtype(x.dtype, np.floating):
        raise ParameterError(f"{name}: windows must be floating point audio in [-1, 1], "
                             f"got dtype {x.dtype}")
    return x


def _frames(padded: np.ndarray, n_frames: int, frame_length: int, hop: int) -> np.ndarray:
    """[N, L] -> read-only view [N, n_frames, frame_length]; frame i starts at i*hop."""
    view = np.lib.stride_tricks.sliding_window_view(padded, frame_length, axis=-1)
    return view[:, : (n_frames - 1) * hop + 1 : hop]


def _windowed_power(frames: np.ndarray, window: np.ndarray) -> np.ndarray:
    """|rfft(frames * window)|**2 in float64, chunked over examples. [N, T, n] -> [N, T, n//2+1]."""
    n_ex, n_fr, n = frames.shape
    out = np.empty((n_ex, n_fr, n // 2 + 1), dtype=np.float64)
    step = max(1, _CHUNK_VALUES // max(1, n_fr * n))
    for i in range(0, n_ex, step):
        spec = np.fft.rfft(frames[i:i + step].astype(np.float64) * window, axis=-1)
        out[i:i + step] = spec.real ** 2 + spec.imag ** 2
    return out


# --------------------------------------------------------------------------- kapre
def kapre_dft_kernels(n_dft: int) -> tuple[np.ndarray, np.ndarray]:
    """kapre's STFT conv kernels: the DFT basis with a periodic Hann folded in.

    ``real[t, k] = w[t] cos(2 pi t k / n_dft)`` and
    ``imag[t, k] = -w[t] sin(2 pi t k / n_dft)`` (the sign of ``rfft``), so that
    ``frame @ real + 1j * frame @ imag == rfft(w * frame)``. These equal the
    ``real_kernels`` / ``imag_kernels`` stored in the authors' SEA-64 file.

    Parameters
    ----------
    n_dft : int
        DFT size (and window length), > 1.

    Returns
    -------
    real, imag : np.ndarray
        float32, each of shape [n_dft, n_dft // 2 + 1].

    Raises
    ------
    ParameterError
        When ``n_dft`` < 2.
    """
    if int(n_dft) != n_dft or n_dft < 2:
        raise ParameterError(f"n_dft must be an integer >= 2, got {n_dft!r}")
    n_dft = int(n_dft)
    t = np.arange(n_dft, dtype=np.float64)[:, None]
    k = np.arange(n_dft // 2 + 1, dtype=np.float64)[None, :]
    # (t*k) mod n_dft keeps the phase argument small and exact.
    phase = 2.0 * np.pi * np.mod(t * k, n_dft) / n_dft
    w = periodic_hann(n_dft)[:, None]
    return (w * np.cos(phase)).astype(np.float32), (-w * np.sin(phase)).astype(np.float32)


def kapre_mel_filterbank(p: KapreMelParams) -> np.ndarray:
    """librosa-0.5-style mel filterbank with ``htk=True, norm=1`` (kapre 0.1.x ``mel``).

    ``n_mels + 2`` edges equally spaced on the HTK mel scale from ``p.fmin`` to
    ``p.f_max``; triangles linear in Hz over the FFT bin frequencies
    ``linspace(0, sr/2, n_freqs)``; band ``i`` scaled by
    ``2 / (f[i+2] - f[i])`` (Slaney area norm).

    Parameters
    ----------
    p : KapreMelParams

    Returns
    -------
    np.ndarray
        float32 [p.n_freqs, p.n_mels] (applied as ``power @ fb``).
    """
    if p.n_mels < 1 or not 0.0 <= p.fmin < p.f_max:
        raise ParameterError(f"bad mel settings: n_mels={p.n_mels}, fmin={p.fmin}, fmax={p.f_max}")
    fft_freqs = np.linspace(0.0, p.sample_rate / 2.0, p.n_freqs)
    edges = mel_to_hz_htk(np.linspace(hz_to_mel_htk(p.fmin), hz_to_mel_htk(p.f_max), p.n_mels + 2))
    fdiff = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


def kapre_logmel(windows: np.ndarray, p: KapreMelParams) -> np.ndarray:
    """kapre 0.1.4 ``Melspectrogram`` (decibel, per-example max) of a batch of windows.

    Parameters
    ----------
    windows : np.ndarray
        [N, S] floating-point audio at ``p.sample_rate``.
    p : KapreMelParams
        Front-end settings (e.g. ``L3_MEL256``, ``STUDENT_MEL64``).

    Returns
    -------
    np.ndarray
        float32 [N, p.n_mels, p.n_frames(S)], values in ``[-p.dynamic_range_db, 0]``,
        each example's maximum is 0.

    Raises
    ------
    ParameterError
        When ``windows`` is not a 2-D floating-point array with samples.
    """
    x = _check_windows(windows, "kapre_logmel")
    n_samples = x.shape[1]
    n_frames = p.n_frames(n_samples)
    left, right = p.same_padding(n_samples)
    padded = np.pad(x.astype(np.float64), ((0, 0), (left, right)))
    frames = _frames(padded, n_frames, p.n_dft, p.hop_length)
    power = _windowed_power(frames, periodic_hann(p.n_dft))           # [N, T, F]
    mel = power @ kapre_mel_filterbank(p).astype(np.float64)         # [N, T, M]
    if p.power_melgram != 2.0:
        mel = mel ** (p.power_melgram / 2.0)
    db = 10.0 * np.log10(np.maximum(mel, p.amin))
    db -= db.max(axis=(1, 2), keepdims=True)
    db = np.maximum(db, -p.dynamic_range_db)
    return np.ascontiguousarray(db.transpose(0, 2, 1), dtype=np.float32)


# --------------------------------------------------------------------------- aisfx
def aisfx_window(p: AisfxFrontendParams) -> np.ndarray:
    """The aisfx (essentia) analysis window: symmetric Hann of ``p.frame_length``, float64."""
    return symmetric_hann(p.frame_length)


def aisfx_mel_filterbank(p: AisfxFrontendParams) -> np.ndarray:
    """aisfx / essentia HTK mel bands: triangles linear in mel, each band sums to 1.

    ``n_mels + 2`` edges equally spaced in HTK mel from ``p.fmin`` to ``p.fmax``;
    bin ``j`` sits at ``j * (sr/2) / (n_freqs - 1)`` Hz; band ``i`` weighs a bin by
    the triangle ``(m - m[i]) / (m[i+1] - m[i])`` rising, ``(m[i+2] - m) / (m[i+2] - m[i+1])``
    falling, with ``m`` the bin's mel value; then each band is divided by its sum.

    Parameters
    ----------
    p : AisfxFrontendParams

    Returns
    -------
    np.ndarray
        float32 [p.n_freqs, p.n_mels] (applied as ``power @ fb``).

    Raises
    ------
    ParameterError
        When a band covers no FFT bin (too many bands for the frame length).
    """
    if p.n_mels < 1 or not 0.0 <= p.fmin < p.fmax:
        raise ParameterError(f"bad mel settings: n_mels={p.n_mels}, fmin={p.fmin}, fmax={p.fmax}")
    bin_mels = hz_to_mel_htk(np.arange(p.n_freqs) * (p.sample_rate / 2.0) / (p.n_freqs - 1))
    edges = np.linspace(hz_to_mel_htk(p.fmin), hz_to_mel_htk(p.fmax), p.n_mels + 2)
    rise = (bin_mels[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    fall = (edges[2:, None] - bin_mels[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(rise, fall))
    sums = weights.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ParameterError(f"{int(np.sum(sums <= 0))} aisfx mel band(s) cover no FFT bin: "
                             f"use fewer than {p.n_mels} bands or a longer frame")
    return (weights / sums).T.astype(np.float32)


def aisfx_frames(p: AisfxFrontendParams, n_samples: int) -> tuple[int, int, int]:
    """(n_frames, left_pad, right_pad) of the aisfx framing for ``n_samples``.

    Frame ``i`` starts at ``i*hop - hop`` in the signal, i.e. at ``i*hop`` in the
    signal padded with ``hop`` zeros on the left; ``right_pad`` zeros make the last
    of ``p.n_frames(n_samples)`` frames complete.
    """
    n_frames = p.n_frames(n_samples)
    left = p.hop_length
    right = max(0, (n_frames - 1) * p.hop_length + p.frame_length - left - n_samples)
    return n_frames, left, right


def aisfx_logmel(windows: np.ndarray, p: AisfxFrontendParams) -> np.ndarray:
    """aisfx (essentia path) normalised log-mel of a batch of audio.

    Parameters
    ----------
    windows : np.ndarray
        [N, S] floating-point mono audio at ``p.sample_rate`` (44.1 kHz).
    p : AisfxFrontendParams

    Returns
    -------
    np.ndarray
        float32 [N, p.n_frames(S), p.n_mels], (time, mel),
        ``log10(p.log_scale * mel_power + 1) / p.norm_max``. For
        ``S = p.window_samples`` this is one network block of ``p.block_frames`` frames.

    Raises
    ------
    ParameterError
        When ``windows`` is not a 2-D floating-point array with samples.
    """
    x = _check_windows(windows, "aisfx_logmel")
    n_frames, left, right = aisfx_frames(p, x.shape[1])
    padded = np.pad(x.astype(np.float64), ((0, 0), (left, right)))
    frames = _frames(padded, n_frames, p.frame_length, p.hop_length)
    power = _windowed_power(frames, aisfx_window(p))                   # [N, T, F]
    mel = power @ aisfx_mel_filterbank(p).astype(np.float64)          # [N, T, M]
    return (np.log10(p.log_scale * mel + 1.0) / p.norm_max).astype(np.float32)
