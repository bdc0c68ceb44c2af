"""`sea synth`: a deterministic SONYC-like corpus.

Writes, under one output directory::

    upstream/sensor_<id>/<YYYY-MM-DD>/<unix_ts>.flac   10-s 48-kHz mono PCM_16 FLAC (unlabelled)
    spl/sensor_<id>/<YYYY-MM-DD>/<unix_ts>.csv         per-second A-weighted Leq, `offset_s,dba`
    downstream/annotations.csv                         SONYC-UST annotation layout (coarse)
    downstream/audio/<SS>_<NNNNNN>.wav                 10-s 48-kHz mono PCM_16 WAV (labelled)
    corpus_card.json                                   seed, params, counts, bytes, version

Upstream sensor ids are 12 hex digits in the style of SONYC's Raspberry-Pi MACs
(``b827eb`` + 6 hex digits hashed from the sensor index; independent of the
seed). Dates are local days in ``params.timezone``; clip ``unix_ts`` are UTC
seconds, one at a random time within each of ``clips_per_day`` equal slices of
the local day. Downstream sensor ids are integers (as in SONYC-UST) and the
file names ``<sensor:02d>_<index:06d>.wav``.

Every clip is a city background (pink + brown noise with a traffic rumble, a
slowly varying level, passing-vehicle swells; its A-weighted Leq depends on the
sensor and the hour: loud at rush hour, quiet at night) plus one event per
present SONYC-UST coarse class from a simple signal model (see ``_GENERATORS``).
Levels are set in dBA with :func:`sea_core.audio.spl.leq_dba` and
``params.calibration_db`` (dB SPL of 0 dBFS, AES17), so the synthetic sidecars
and a real sensor's agree in meaning. The output never clips.

Determinism: each clip draws from its own generator seeded by
``(seed, stream, sensor, day, clip)``, so output is independent of generation
order, and files carry no timestamps: same params -> byte-identical files. The
corpus is built in a temporary sibling directory and renamed into place.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sea_core.errors import ParameterError
from sea_core.params import SIDECAR, SONYC_COARSE_CLASSES, SPL, SYNTH, SynthParams

__all__ = [
    "GENERATOR_VERSION", "UPSTREAM_DIR", "SPL_DIR", "DOWNSTREAM_DIR", "ANNOTATIONS_NAME",
    "DOWNSTREAM_AUDIO_DIR", "CARD_NAME", "SPLITS", "presence_column", "upstream_sensor_ids",
    "synthesize", "main",
]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "sea-synth/1"
"""Bumped whenever the same params would produce different bytes."""

UPSTREAM_DIR = "upstream"
SPL_DIR = "spl"
DOWNSTREAM_DIR = "downstream"
DOWNSTREAM_AUDIO_DIR = "audio"
ANNOTATIONS_NAME = "annotations.csv"
CARD_NAME = "corpus_card.json"
SPLITS = ("train", "validate", "test")
_PCM_SCALE = 32768.0
"""int16 <-> float as soundfile decodes it (x / 32768)."""
_PEAK_LIMIT = 0.9
"""Mixes whose peak exceeds this (in full scale) are scaled down: never clip."""

# random streams: (seed, stream, ...) -> an independent generator
_S_UP_SENSOR, _S_UP_CLIP, _S_DOWN_PLAN, _S_DOWN_SENSOR, _S_DOWN_CLIP, _S_UP_TIMES = range(6)
_S_SENSOR_XY = 6
SENSORS_NAME = "sensors.csv"
_CITY_CENTRE = (40.7300, -73.9950)   # lat, lon (Manhattan), degrees
_CITY_HALF_KM = 5.0                  # sensors spread over a 10 km x 10 km square


def _sensors_csv(params: SynthParams, ids: list[str]) -> bytes:
    """``sensors.csv`` (sensor, lat, lon, calibration_db): spread over a city, every third sensor
    within 100-300 m of the previous one (clusters), all at ``params.calibration_db``."""
    rng = np.random.default_rng([params.seed, _S_SENSOR_XY])
    km_lat = 111.32
    km_lon = km_lat * np.cos(np.radians(_CITY_CENTRE[0]))
    rows, xy = [], []
    for i, sid in enumerate(ids):
        if i % 3 == 2:
            ang, r = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3)
            x, y = xy[-1][0] + r * np.cos(ang), xy[-1][1] + r * np.sin(ang)
        else:
            x, y = rng.uniform(-_CITY_HALF_KM, _CITY_HALF_KM, 2)
        xy.append((x, y))
        rows.append((sid, _CITY_CENTRE[0] + y / km_lat, _CITY_CENTRE[1] + x / km_lon))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sensor", "lat", "lon", "calibration_db"])
    for sid, lat, lon in rows:
        w.writerow([sid, f"{lat:.6f}", f"{lon:.6f}", f"{params.calibration_db:g}"])
    return buf.getvalue().encode()


def presence_column(index: int, name: str) -> str:
    """SONYC-UST coarse presence column, e.g. ``(0, 'engine') -> '1_engine_presence'``."""
    return f"{index + 1}_{name}_presence"


def _coarse_index(name: str) -> int:
    return SONYC_COARSE_CLASSES.index(name)


def upstream_sensor_ids(n: int) -> list[str]:
    """Deterministic MAC-style ids (``b827eb`` + 6 hex digits) of ``n`` upstream sensors."""
    ids: list[str] = []
    for i in range(n):
        salt = 0
        while True:
            h = hashlib.sha256(f"sea-synth-sensor:{i}:{salt}".encode()).hexdigest()[:6]
            if "b827eb" + h not in ids:
                ids.append("b827eb" + h)
                break
            salt += 1
    return ids


# =========================================================================== DSP helpers
def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-30))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / _rms(x)


def _fade(x: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    k = min(int(seconds * sr), x.size // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


@functools.lru_cache(maxsize=64)
def _band_gain_cached(size: int, sr: int, lo: float | None, hi: float | None,
                      order: int) -> np.ndarray:
    g = _band_gain(np.fft.rfftfreq(size, 1.0 / sr), lo, hi, order).astype(np.float32)
    g.flags.writeable = False
    return g


def _band_gain(f: np.ndarray, lo: float | None, hi: float | None, order: int = 4) -> np.ndarray:
    """Butterworth-like magnitude response (zero phase) of a band-pass."""
    g = np.ones_like(f)
    if lo:
        g = g / np.sqrt(1.0 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
    if hi:
        g = g / np.sqrt(1.0 + (f / hi) ** (2 * order))
    return g


def _noise_spectrum(rng: np.random.Generator, size: int) -> np.ndarray:
    """rfft-domain white Gaussian noise of a ``size``-sample signal (i.i.d. complex bins)."""
    z = rng.standard_normal((2, size // 2 + 1), dtype=np.float32)
    return z[0] + 1j * z[1]  # complex64: single-precision FFTs are plenty for noise


def _bandnoise(rng: np.random.Generator, n: int, sr: int, lo: float | None, hi: float | None,
               order: int = 4) -> np.ndarray:
    """Unit-RMS Gaussian noise band-limited to [lo, hi] Hz (frequency-domain shaping)."""
    from scipy import fft
    size = fft.next_fast_len(n, real=True)
    spec = _noise_spectrum(rng, size) * _band_gain_cached(size, sr, lo, hi, order)
    return _unit(fft.irfft(spec, size)[:n].astype(np.float64))


_CONTROL_HZ = 200.0
"""Rate at which slow envelopes / pitch tracks are computed before interpolation."""


def _control_to_audio(ctrl: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Linear interpolation of a ``_CONTROL_HZ`` track to ``n`` audio samples."""
    return np.interp(np.arange(n) * (_CONTROL_HZ / sr), np.arange(ctrl.size), ctrl)


def _smooth(rng: np.random.Generator, n: int, sr: int, knot_seconds: float) -> np.ndarray:
    """A smooth random curve in [-1, 1]: cosine interpolation of uniform knots."""
    n_knots = int(np.ceil(n / sr / knot_seconds)) + 2
    knots = rng.uniform(-1.0, 1.0, n_knots)
    pos = np.arange(int(np.ceil(n / sr * _CONTROL_HZ)) + 2) / (knot_seconds * _CONTROL_HZ)
    i = np.minimum(np.floor(pos).astype(np.int64), n_knots - 2)
    u = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    return _control_to_audio(knots[i] * (1 - u) + knots[i + 1] * u, n, sr)


def _duration(rng: np.random.Generator, sr: int, n: int, lo: float, hi: float) -> int:
    return int(min(n, round(rng.uniform(lo, hi) * sr)))


def _pulse_times(freq_hz: np.ndarray, sr: int) -> np.ndarray:
    """Sample indices of one pulse per cycle of an instantaneous frequency track."""
    cycles = np.cumsum(freq_hz) / sr
    return np.searchsorted(cycles, np.arange(1, int(cycles[-1]) + 1))


def _pulse_train(idx: np.ndarray, amps: np.ndarray, n: int, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve
    train = np.zeros(n)
    np.add.at(train, idx[idx < n], amps[idx < n])
    return fftconvolve(train, kernel)[:n]


def _harmonics(phase: np.ndarray, amps: np.ndarray, f_max_hz: float, nyquist: float) -> np.ndarray:
    """sum_k amps[k-1] * sin(k * phase), skipping harmonics whose peak frequency aliases."""
    wrapped = np.mod(phase, 2 * np.pi)  # float64 wrap, then float32 sines (precision ~1e-5 rad)
    out = np.zeros(phase.shape, dtype=np.float32)
    for k, a in enumerate(amps, start=1):
        if a and k * f_max_hz < 0.95 * nyquist:
            out += np.float32(a) * np.sin((k * wrapped).astype(np.float32))
    return out.astype(np.float64)


def _resonator_sos(freq: float, bw: float, sr: int) -> np.ndarray:
    """RBJ constant-peak band-pass biquad as one ``sos`` row."""
    w0 = 2 * np.pi * min(freq, 0.45 * sr) / sr
    alpha = np.sin(w0) * np.sinh(np.log(2) / 2 * (bw / freq) * w0 / np.sin(w0))
    b = np.array([alpha, 0.0, -alpha])
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    return np.concatenate([b / a[0], a / a[0]])


def _decay(n: int, sr: int, tau: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau * sr))


# =========================================================================== event models
def _engine(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Firing pulses (22-55 Hz, drifting rpm) through exhaust resonances + road noise, AM."""
    m = _duration(rng, sr, n, 3.0, 10.0)
    t = np.arange(m) / sr
    f0 = rng.uniform(22.0, 55.0)
    f = f0 * (1 + rng.uniform(0.05, 0.25) * _smooth(rng, m, sr, rng.uniform(1.5, 4.0)))
    idx = _pulse_times(f, sr)
    amps = np.abs(1 + 0.25 * rng.standard_normal(idx.size))
    tk = np.arange(int(0.05 * sr)) / sr
    kernel = (np.exp(-tk / rng.uniform(0.004, 0.010)) * np.sin(2 * np.pi * rng.uniform(70, 180) * tk)
              + rng.uniform(0.2, 0.5) * np.exp(-tk / rng.uniform(0.002, 0.004))
              * np.sin(2 * np.pi * rng.uniform(350, 900) * tk))
    x = _unit(_pulse_train(idx, amps, m, kernel))
    x += rng.uniform(0.2, 0.5) * _bandnoise(rng, m, sr, 80.0, 1500.0)
    x *= 1 + rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * rng.uniform(2.0, 8.0) * t + rng.uniform(0, 6.3))
    if rng.random() < 0.6:  # pass-by rather than idling
        c, w = rng.uniform(0.3, 0.7) * t[-1], rng.uniform(0.2, 0.4) * t[-1]
        x *= 0.15 + np.exp(-0.5 * ((t - c) / w) ** 2)
    return _fade(x, sr, 0.2)


def _machinery_impact(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Jackhammer: 12-25 blows/s of broadband metallic impacts in bursts, with exhaust hiss."""
    m = _duration(rng, sr, n, 2.0, 8.0)
    rate = rng.uniform(12.0, 25.0)
    on = np.zeros(m, dtype=bool)
    pos = int(rng.uniform(0.02, 0.3) * sr)
    while pos < m:
        length = int(rng.uniform(1.0, 3.0) * sr)
        on[pos:pos + length] = True
        pos += length + int(rng.uniform(0.3, 1.2) * sr)
    times = np.arange(0.0, m / sr, 1.0 / rate)
    times = times + rng.normal(0.0, 0.05 / rate, times.size)
    idx = np.clip((times * sr).astype(np.int64), 0, m - 1)
    idx = idx[on[idx]]
    kn = int(0.03 * sr)
    kernel = (_bandnoise(rng, kn, sr, 400.0, 9000.0, 2) * _decay(kn, sr, rng.uniform(0.003, 0.006))
              + rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * rng.uniform(1200, 3500) * np.arange(kn) / sr)
              * _decay(kn, sr, 0.012))
    x = _unit(_pulse_train(idx, np.abs(1 + 0.15 * rng.standard_normal(idx.size)), m, kernel))
    env = np.convolve(on.astype(float), np.ones(int(0.02 * sr)) / int(0.02 * sr), mode="same")
    x += rng.uniform(0.05, 0.15) * _bandnoise(rng, m, sr, 2000.0, 9000.0) * env
    return _fade(x, sr, 0.005)


def _non_machinery_impact(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """1-3 thumps / door slams: pitch-dropping low thump + click + short rattle."""
    m = _duration(rng, sr, n, 1.0, 4.0)
    hit_len = min(int(0.6 * sr), m)
    x = np.zeros(m)
    pos = int(rng.uniform(0.02, 0.3) * sr)
    for _ in range(int(rng.integers(1, 4))):
        if pos + hit_len > m:
            break
        t = np.arange(hit_len) / sr
        f_hi, f_lo = rng.uniform(100, 200), rng.uniform(50, 90)
        f = f_lo + (f_hi - f_lo) * np.exp(-t / 0.03)
        thump = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.04, 0.12))
        click = rng.standard_normal(hit_len) * np.exp(-t / 0.002)
        rattle = _bandnoise(rng, hit_len, sr, 300.0, 2500.0) * np.exp(-t / rng.uniform(0.05, 0.2))
        hit = thump + rng.uniform(0.3, 0.8) * click + rng.uniform(0.1, 0.3) * rattle
        x[pos:pos + hit_len] += rng.uniform(0.5, 1.0) * hit
        pos += int(rng.uniform(0.4, 1.5) * sr)
    return _fade(x, sr, 0.002)


def _powered_saw(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """2-4.5 kHz whine + 2 harmonics; cuts drop the pitch and add cutting noise."""
    m = _duration(rng, sr, n, 2.0, 8.0)
    t = np.arange(m) / sr
    load = np.zeros(m)
    for _ in range(int(rng.integers(1, 4))):
        c, w = rng.uniform(0.2, 0.8) * t[-1], rng.uniform(0.4, 1.5)
        load = np.maximum(load, 1.0 / (1.0 + np.exp(-(w / 2 - np.abs(t - c)) / 0.05)))
    spin = np.minimum(1.0, 0.4 + 0.6 * t / rng.uniform(0.3, 0.6))
    spin *= np.minimum(1.0, 0.5 + 0.5 * (t[-1] - t) / 0.3)
    f0 = rng.uniform(2000.0, 4500.0)
    f = f0 * spin * (1 - rng.uniform(0.10, 0.25) * load) * (1 + 0.003 * _smooth(rng, m, sr, 0.05))
    phase = 2 * np.pi * np.cumsum(f) / sr
    whine = _harmonics(phase, np.array([1.0, rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.3)]),
                       f0, sr / 2)
    x = whine * (0.6 + 0.4 * load) + rng.uniform(0.4, 1.0) * _bandnoise(rng, m, sr, 1000.0, 9000.0) * load
    return _fade(x, sr, 0.02)


def _alert_signal(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """Siren wail / yelp (600-1500 Hz sweeps), two-tone car horn blasts, reverse beeper."""
    kind = rng.choice(4, p=[0.35, 0.2, 0.35, 0.1])
    if kind in (0, 1):  # siren: wail (slow sine sweep) or yelp (fast rising saw sweep)
        m = _duration(rng, sr, n, 4.0, 10.0) if kind == 0 else _duration(rng, sr, n, 3.0, 8.0)
        t = np.arange(m) / sr
        period = rng.uniform(2.0, 5.0) if kind == 0 else rng.uniform(0.2, 0.4)
        u = (t / period + rng.uniform()) % 1.0
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * u) if kind == 0 else u
        f = 600.0 + 900.0 * sweep
        x = _harmonics(2 * np.pi * np.cumsum(f) / sr, 1.0 / np.arange(1, 6), 1500.0, sr / 2)
        c, w = rng.uniform(0.3, 0.7) * t[-1], rng.uniform(0.3, 0.6) * t[-1]
        x *= 0.3 + np.exp(-0.5 * ((t - c) / w) ** 2)
        return _fade(x, sr, 0.05)
    if kind == 2:  # horn: 1-4 blasts of two detuned square-ish tones
        f1 = rng.uniform(350.0, 450.0)
        f2 = f1 * rng.uniform(1.19, 1.26)
        blasts = [rng.uniform(0.2, 1.2) for _ in range(int(rng.integers(1, 5)))]
        gaps = [rng.uniform(0.1, 0.6) for _ in blasts]
        m = min(n, int((sum(blasts) + sum(gaps) + 0.1) * sr))
        x = np.zeros(m)
        pos = int(0.05 * sr)
        amps = 1.0 / np.arange(1, 10)
        for b, g in zip(blasts, gaps):
            k = min(int(b * sr), m - pos)
            if k <= int(0.02 * sr):
                break
            tb = 2 * np.pi * np.arange(k) / sr
            x[pos:pos + k] += _fade(_harmonics(f1 * tb, amps, f1, sr / 2)
                                    + _harmonics(f2 * tb, amps, f2, sr / 2), sr, 0.01)
            pos += k + int(g * sr)
        return x
    m = _duration(rng, sr, n, 3.0, 8.0)  # reverse beeper
    t = np.arange(m) / sr
    f = rng.uniform(1000.0, 1250.0)
    half = rng.uniform(0.4, 0.6)
    gate = ((t / half) % 2.0 < 1.0).astype(float)
    gate = np.convolve(gate, np.ones(int(0.005 * sr)) / int(0.005 * sr), mode="same")
    x = (np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 3 * f * t)) * gate
    return _fade(x, sr, 0.01)


_PROGRESSIONS = ((0, 7, 9, 5), (0, 5, 7, 0), (9, 5, 0, 7), (0, 9, 5, 7), (0, 4, 5, 7))


def _music(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """A I-V-vi-IV-style chord progression strummed in eighths, bass, kick and hi-hat."""
    m = _duration(rng, sr, n, 4.0, 10.0)
    t = np.arange(m) / sr
    beat = 60.0 / rng.uniform(85.0, 135.0)
    key = int(rng.integers(45, 57))
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    pattern = rng.random(8) < 0.6
    pattern[0] = True
    eighth = np.floor(t / (beat / 2)).astype(np.int64)
    onsets = np.flatnonzero(pattern[eighth % 8] & np.r_[True, np.diff(eighth) > 0])
    marks = np.zeros(m, dtype=np.int64)
    marks[onsets] = onsets
    last = np.maximum.accumulate(marks)
    env = 0.15 + np.exp(-(np.arange(m) - last) / (rng.uniform(0.12, 0.3) * sr))
    bar = np.floor(t / (4 * beat)).astype(np.int64)
    note_amps = np.array([1.0, 0.5, 0.3, 0.2])
    chords = np.zeros(m)
    bass = np.zeros(m)
    for b in np.unique(bar):
        sel = bar == b
        tb = 2 * np.pi * (t[sel] - t[sel][0])
        root = key + prog[b % len(prog)]
        third = 3 if prog[b % len(prog)] in (2, 4, 9) else 4
        for midi in (root + 12, root + 12 + third, root + 19):
            hz = 440.0 * 2 ** ((midi - 69) / 12)
            chords[sel] += _harmonics(hz * tb, note_amps, hz, sr / 2)
        hz = 440.0 * 2 ** ((root - 69) / 12)
        bass[sel] = _harmonics(hz * tb, note_amps[:2], hz, sr / 2)
    beats = np.floor(t / beat).astype(np.int64)
    since_beat = t - beats * beat
    kick = np.where(beats % 2 == 0, 1.0, 0.0) * np.sin(
        2 * np.pi * (50 * since_beat + 40 * 0.03 * (1 - np.exp(-since_beat / 0.03)))) * np.exp(-since_beat / 0.12)
    since_eighth = t - eighth * beat / 2
    hats = _bandnoise(rng, m, sr, 6000.0, 14000.0) * np.exp(-since_eighth / 0.02)
    x = _unit(chords * env) + 0.8 * _unit(bass * env) + 0.8 * _unit(kick) + 0.15 * hats
    return _fade(x, sr, 0.05)


# F1, F2, F3 (Hz) of five vowels (adult male; x1.15 for a higher voice)
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240],
                    [530, 1840, 2480], [570, 840, 2410]], dtype=float)


def _human_voice(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """1-3 talkers: glottal pulses (95-240 Hz, declining intonation) through vowel formants,
    cut into syllables (3-6 Hz) and words, some with fricative onsets."""
    from scipy.signal import sosfilt
    m = _duration(rng, sr, n, 1.5, 6.0)
    x = np.zeros(m)
    n_talkers = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))
    glottal_t = np.arange(int(0.004 * sr)) / (0.004 * sr)
    glottal = np.diff(np.r_[0.0, 0.5 - 0.5 * np.cos(np.pi * glottal_t), 0.0])  # Rosenberg-like derivative
    for _ in range(n_talkers):
        high = rng.random() < 0.5
        f_base = rng.uniform(170, 240) if high else rng.uniform(95, 130)
        scale = 1.15 if high else 1.0
        t = np.arange(m) / sr
        phrase = rng.uniform(1.5, 3.0)
        f0 = f_base * (1 + 0.1 - 0.2 * ((t % phrase) / phrase)) * (1 + 0.06 * _smooth(rng, m, sr, 0.2))
        idx = _pulse_times(f0, sr)
        exc = _pulse_train(idx, np.abs(1 + 0.1 * rng.standard_normal(idx.size)), m, glottal)
        exc = _unit(exc) + 0.05 * rng.standard_normal(m)
        talker = np.zeros(m)
        pos = int(rng.uniform(0.02, 0.3) * sr)
        while pos < m - int(0.35 * sr):
            for _ in range(int(rng.integers(1, 5))):
                k = int(rng.uniform(0.12, 0.3) * sr)
                if pos + k > m:
                    break
                formants = _VOWELS[int(rng.integers(len(_VOWELS)))] * scale
                sos = np.stack([_resonator_sos(fq, bw, sr) for fq, bw in
                                zip(formants, (rng.uniform(60, 100), rng.uniform(90, 120),
                                               rng.uniform(120, 180)))])
                seg = _unit(sosfilt(sos, exc[pos:pos + k]))
                seg *= np.sin(np.pi * np.arange(k) / k) ** 0.6
                if rng.random() < 0.4:
                    fk = int(rng.uniform(0.04, 0.08) * sr)
                    seg[:fk] += 0.5 * _bandnoise(rng, fk, sr, 3500.0, 8000.0) * _decay(fk, sr, 0.02)
                talker[pos:pos + k] += rng.uniform(0.7, 1.0) * seg
                pos += k
            pos += int(rng.uniform(0.05, 0.35) * sr)
            if rng.random() < 0.25:
                pos += int(rng.uniform(0.3, 0.7) * sr)
        x += rng.uniform(0.6, 1.0) * talker
    return _fade(x, sr, 0.01)


def _dog(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    """1-6 short (80-250 ms) harmonic barks, rise-fall pitch 350-750 Hz, rough, formant ~1-1.8 kHz."""
    n_barks = int(rng.integers(1, 7))
    f_dog = rng.uniform(350.0, 750.0)
    formant = rng.uniform(1000.0, 1800.0)
    lengths = [int(rng.uniform(0.08, 0.25) * sr) for _ in range(n_barks)]
    gaps = [int(rng.uniform(0.25, 0.7) * sr) for _ in range(n_barks)]
    m = min(n, int(0.05 * sr) + sum(lengths) + sum(gaps))
    x = np.zeros(m)
    pos = int(0.05 * sr)
    for k, gap in zip(lengths, gaps):
        if pos + k > m:
            break
        t = np.arange(k) / sr
        u = t / t[-1]
        f0 = f_dog * rng.uniform(0.9, 1.1)
        f = f0 * (1 + 0.25 * np.sin(np.pi * u))
        hk = np.arange(1, 11)
        amps = hk ** -0.7 * (0.3 + np.exp(-0.5 * ((hk * f0 - formant) / 800.0) ** 2))
        bark = _harmonics(2 * np.pi * np.cumsum(f) / sr, amps, 1.25 * f0, sr / 2)
        bark *= 1 + 0.4 * _bandnoise(rng, k, sr, None, 200.0)
        bark = _unit(bark) + 0.25 * _bandnoise(rng, k, sr, 500.0, 4000.0)
        bark *= (1 - np.exp(-t / 0.004)) * np.exp(-t / (t[-1] / 2.5))
        x[pos:pos + k] += bark
        pos += k + gap
    return _fade(x, sr, 0.002)


@dataclass(frozen=True)
class _EventModel:
    generate: Callable[[np.random.Generator, int, int], np.ndarray]
    dba: tuple[float, float]
    """Range of the event's A-weighted Leq (over its own extent)."""


_GENERATORS: dict[str, _EventModel] = {
    "engine": _EventModel(_engine, (60.0, 82.0)),
    "machinery-impact": _EventModel(_machinery_impact, (70.0, 90.0)),
    "non-machinery-impact": _EventModel(_non_machinery_impact, (65.0, 85.0)),
    "powered-saw": _EventModel(_powered_saw, (68.0, 88.0)),
    "alert-signal": _EventModel(_alert_signal, (70.0, 90.0)),
    "music": _EventModel(_music, (58.0, 78.0)),
    "human-voice": _EventModel(_human_voice, (58.0, 76.0)),
    "dog": _EventModel(_dog, (62.0, 82.0)),
}


# =========================================================================== scene
@dataclass(frozen=True)
class _SensorProfile:
    base_dba: float
    pink: float
    brown: float
    rumble_hz: float
    rumble: float
    lowpass_hz: float
    traffic: float
    """Passing vehicles per minute at rush hour."""


def _sensor_profile(rng: np.random.Generator) -> _SensorProfile:
    return _SensorProfile(base_dba=rng.uniform(54.0, 60.0), pink=rng.uniform(0.5, 1.0),
                          brown=rng.uniform(0.5, 1.5), rumble_hz=rng.uniform(50.0, 120.0),
                          rumble=rng.uniform(0.3, 1.0), lowpass_hz=rng.uniform(5000.0, 12000.0),
                          traffic=rng.uniform(6.0, 20.0))


def _circ_bump(hour: float, centre: float, width: float) -> float:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return float(np.exp(-0.5 * (d / width) ** 2))


def _diurnal_db(hour: float) -> float:
    """Background level offset: quiet around 3-4 am, loud at the 8 am and 5:30 pm rush."""
    return -9.0 * _circ_bump(hour, 3.5, 2.5) + 5.0 * _circ_bump(hour, 8.0, 1.2) \
        + 5.0 * _circ_bump(hour, 17.5, 1.5)


def _class_probabilities(params: SynthParams, hour: float, weekday: int) -> np.ndarray:
    """Per-class presence probability at a local hour / weekday (0 = Monday)."""
    weekend = weekday >= 5
    work = 7.0 <= hour < 18.0
    night = hour < 6.0 or hour >= 22.0
    mult = {
        "engine": float(np.clip(1.0 + _diurnal_db(hour) / 12.0, 0.3, 1.5)),
        "machinery-impact": 0.05 if not work else (0.5 if weekend else 1.4),
        "powered-saw": 0.05 if not work else (0.5 if weekend else 1.4),
        "non-machinery-impact": 1.0,
        "alert-signal": 1.0,
        "music": 1.6 if hour >= 18.0 else (0.8 if hour < 3.0 else (0.3 if hour < 10.0 else 0.8)),
        "human-voice": 0.4 if 1.0 <= hour < 6.0 else (1.4 if hour >= 17.0 else 1.0),
        "dog": 0.5 if night else 1.0,
    }
    p = np.array([prev * mult[c] for c, prev in zip(params.classes, params.class_prevalence)])
    return np.clip(p, 0.0, 0.95)


def _background(rng: np.random.Generator, n: int, sr: int, prof: _SensorProfile,
                hour: float) -> np.ndarray:
    """Unit-level city background: pink + brown noise with a traffic rumble, passing-vehicle
    swells and a slowly varying level (+-2 dB)."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    fs = np.maximum(f, 1.0)
    shape = (prof.pink / np.sqrt(fs) + prof.brown * 10.0 / fs
             + prof.rumble * 0.05 * np.exp(-0.5 * ((f - prof.rumble_hz) / 25.0) ** 2))
    shape *= _band_gain(f, 30.0, prof.lowpass_hz, 2)
    from scipy import fft
    base = _unit(fft.irfft(_noise_spectrum(rng, n) * shape.astype(np.float32), n).astype(np.float64))
    seconds = n / sr
    tc = np.arange(int(np.ceil(seconds * _CONTROL_HZ)) + 2) / _CONTROL_HZ
    rate = prof.traffic / 60.0 * (0.3 + 0.7 * np.clip(1 + _diurnal_db(hour) / 9.0, 0.0, 1.2))
    swell_env = np.zeros(tc.size)
    for c in rng.uniform(-2.0, seconds + 2.0, int(rng.poisson(rate * (seconds + 4.0)))):
        swell_env += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((tc - c) / rng.uniform(0.8, 2.5)) ** 2)
    swells = _bandnoise(rng, n, sr, 40.0, 1500.0, 2) * _control_to_audio(swell_env, n, sr)
    x = base + 0.7 * swells
    lfo_db = 2.0 * _smooth(rng, n, sr, rng.uniform(2.0, 5.0))
    return x * 10 ** (lfo_db / 20.0)


class _Leveller:
    """Scales signals to an A-weighted Leq in dB SPL with ``sea_core.audio.spl.leq_dba``."""

    def __init__(self, sr: int, calibration_db: float):
        from sea_core.audio.spl import leq_dba
        self._leq = leq_dba
        self.sr = sr
        self.calibration_db = calibration_db

    def leq(self, windows: np.ndarray) -> np.ndarray:
        return np.asarray(self._leq(windows, self.sr, calibration_db=self.calibration_db),
                          dtype=np.float64)

    def to_dba(self, x: np.ndarray, target_db: float) -> np.ndarray:
        """``x`` scaled so that its Leq over its own length is ``target_db`` dBA.

        Measured zero-padded to an FFT-friendly length (event lengths are arbitrary) and
        corrected for the padding: the A-weighted energy is unchanged by zeros.
        """
        from scipy.fft import next_fast_len
        size = next_fast_len(x.size, real=True)
        padded = np.zeros(size)
        padded[:x.size] = x
        measured = float(self.leq(padded[None, :])[0]) + 10 * np.log10(size / x.size)
        return x * 10 ** ((target_db - measured) / 20.0)


def _render(rng: np.random.Generator, params: SynthParams, prof: _SensorProfile, hour: float,
            present: np.ndarray, lev: _Leveller) -> tuple[np.ndarray, dict]:
    """One clip as int16 PCM (never clipped) + what went into it."""
    sr = params.sample_rate
    n = int(round(params.clip_seconds * sr))
    lo, hi = params.background_dba
    bg_db = float(np.clip(prof.base_dba + _diurnal_db(hour) + rng.normal(0.0, 1.2), lo, hi))
    x = lev.to_dba(_background(rng, n, sr, prof, hour), bg_db)
    events = []
    for cls, on in zip(params.classes, present):
        if not on:
            continue
        model = _GENERATORS[cls]
        ev = model.generate(rng, sr, n)
        level = min(max(rng.uniform(*model.dba), bg_db + params.min_event_snr_db), params.max_event_dba)
        ev = lev.to_dba(ev, level)
        start = int(rng.integers(0, n - ev.size + 1))
        x[start:start + ev.size] += ev
        events.append({"class": cls, "start_s": round(start / sr, 3),
                       "seconds": round(ev.size / sr, 3), "dba": round(level, 2)})
    peak = float(np.max(np.abs(x)))
    gain = min(1.0, _PEAK_LIMIT / peak) if peak > 0 else 1.0
    pcm = np.clip(np.round(x * gain * _PCM_SCALE), -32768, 32767).astype(np.int16)
    return pcm, {"background_dba": round(bg_db, 2), "events": events, "gain_db": round(20 * np.log10(gain), 2)}


def _sidecar(pcm: np.ndarray, params: SynthParams, lev: _Leveller) -> bytes:
    """Per-second A-weighted Leq (dB SPL) of the decoded audio as `offset_s,dba` CSV."""
    win = int(round(params.sample_rate / SPL.sidecar_hz))
    t = pcm.size // win
    dba = lev.leq((pcm[:t * win].astype(np.float64) / _PCM_SCALE).reshape(t, win))
    rows = [f"{i / SPL.sidecar_hz:g},{v:.3f}" for i, v in enumerate(dba)]
    header = f"{SIDECAR.offset_column},{SIDECAR.dba_column}"
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def _write_audio(path: Path, pcm: np.ndarray, sr: int, fmt: str) -> int:
    import soundfile as sf
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, sr, format=fmt, subtype="PCM_16")
    return path.stat().st_size


def _write_bytes(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


# =========================================================================== plans
def _validate(p: SynthParams) -> None:
    def bad(field: str, why: str) -> None:
        raise ParameterError(f"SynthParams.{field}: {why}")

    for name in ("sensors", "days", "clips_per_day", "labelled_clips"):
        if int(getattr(p, name)) < 0:
            bad(name, f"must be >= 0, got {getattr(p, name)}")
    if p.labelled_sensors < 1:
        bad("labelled_sensors", f"must be >= 1, got {p.labelled_sensors}")
    unknown = [c for c in p.upstream_held_out if c not in p.classes]
    if unknown:
        bad("upstream_held_out", f"unknown class(es) {unknown}; classes are {list(p.classes)}")
    if p.sample_rate < 8000:
        bad("sample_rate", f"must be >= 8000 Hz, got {p.sample_rate}")
    if not 1.0 <= p.clip_seconds <= 600.0:
        bad("clip_seconds", f"must be within [1, 600] s, got {p.clip_seconds}")
    if p.clips_per_day * p.clip_seconds > 23 * 3600:
        bad("clips_per_day", f"{p.clips_per_day} clips of {p.clip_seconds} s do not fit in a day")
    unknown = [c for c in p.classes if c not in _GENERATORS]
    if unknown or len(set(p.classes)) != len(p.classes):
        bad("classes", f"must be distinct SONYC-UST coarse classes {SONYC_COARSE_CLASSES}, got {p.classes}")
    if len(p.class_prevalence) != len(p.classes) or not all(0 <= v <= 1 for v in p.class_prevalence):
        bad("class_prevalence", "needs one probability in [0, 1] per class")
    if len(p.split_fractions) != 3 or min(p.split_fractions) < 0 or abs(sum(p.split_fractions) - 1) > 1e-6:
        bad("split_fractions", f"must be 3 non-negative fractions summing to 1, got {p.split_fractions}")
    if not p.background_dba[0] <= p.background_dba[1] <= p.max_event_dba:
        bad("background_dba", f"need lo <= hi <= max_event_dba, got {p.background_dba}")
    if p.max_event_dba - p.calibration_db > -6.0:
        bad("max_event_dba", f"{p.max_event_dba} dB SPL is within 6 dB of full scale "
                             f"({p.calibration_db} dB SPL)")
    lo, hi = p.crowd_annotators
    if not 1 <= lo <= hi:
        bad("crowd_annotators", f"need 1 <= min <= max, got {p.crowd_annotators}")
    for name in ("unverified_train_fraction", "crowd_fraction", "crowd_miss_rate", "crowd_false_alarm_rate"):
        if not 0.0 <= getattr(p, name) <= 1.0:
            bad(name, f"must be within [0, 1], got {getattr(p, name)}")
    try:
        dt.date.fromisoformat(p.start_date)
    except ValueError:
        bad("start_date", f"not an ISO date (YYYY-MM-DD): {p.start_date!r}")
    try:
        _zone(p.timezone)
    except Exception:  # zoneinfo raises several types
        bad("timezone", f"unknown time zone {p.timezone!r}")


def _zone(name: str):
    from zoneinfo import ZoneInfo
    return ZoneInfo(name)


def _largest_remainder(total: int, fractions: tuple[float, ...]) -> list[int]:
    raw = [total * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def _upstream_times(params: SynthParams, s: int, day: dt.date) -> list[int]:
    """Unix seconds of the clips of sensor ``s`` on local ``day``: one random time per slice."""
    tz = _zone(params.timezone)
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
    nxt = day + dt.timedelta(days=1)
    end = int(dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp())
    c = params.clips_per_day
    rng = np.random.default_rng([params.seed, _S_UP_TIMES, s, day.toordinal()])
    width = (end - start) / c
    free = width - np.ceil(params.clip_seconds)
    return [start + int(i * width + rng.uniform(0.0, free)) for i in range(c)]


def _plan_downstream(params: SynthParams) -> tuple[list[dict], str]:
    """Sensor, split, hour and labels of every labelled clip, plus its annotation rows."""
    k = params.labelled_clips
    rng = np.random.default_rng([params.seed, _S_DOWN_PLAN])
    n_sensors = min(params.labelled_sensors, max(k, 1))
    split_counts = _largest_remainder(k, params.split_fractions)
    used = [j for j in range(3) if split_counts[j] > 0]
    split_of = np.repeat(np.arange(3), split_counts)
    rng.shuffle(split_of)
    sensors = np.empty(k, dtype=np.int64)
    if n_sensors >= len(used) and k:
        split_by = "sensor"
        # sensors per split: proportional, at least one per non-empty split, at most its clips
        per = _largest_remainder(n_sensors, params.split_fractions)
        for j in used:
            if per[j] == 0:
                per[int(np.argmax(per))] -= 1
                per[j] = 1
        order = rng.permutation(n_sensors)
        first = 0
        for j in range(3):
            pool = order[first:first + min(per[j], max(split_counts[j], 1))]
            first += per[j]
            members = np.flatnonzero(split_of == j)
            sensors[members] = pool[np.arange(members.size) % max(pool.size, 1)] if pool.size else 0
    else:
        split_by = "clip"
        sensors[:] = np.arange(k) % n_sensors
    clips = []
    for i in range(k):
        # annotated clips lean to waking hours (as the SONYC-UST selection did)
        hour = float(rng.uniform(7.0, 19.0) if rng.random() < 0.7 else rng.uniform(0.0, 24.0))
        weekday = int(rng.integers(0, 7))
        labels = (rng.random(len(params.classes)) < _class_probabilities(params, hour, weekday))
        clips.append({"index": i, "sensor_id": int(sensors[i]), "split": SPLITS[split_of[i]],
                      "hour": hour, "weekday": weekday, "labels": labels.astype(np.int64)})
    # every class present at least once (twice in larger splits) in each non-trivial split
    for j, name in enumerate(SPLITS):
        members = [c for c in clips if c["split"] == name]
        need = 2 if len(members) >= 16 else (1 if len(members) >= 4 else 0)
        for ci in range(len(params.classes)):
            while sum(c["labels"][ci] for c in members) < need:
                cand = [c for c in members if not c["labels"][ci]]
                pick = cand[int(rng.integers(len(cand)))]
                pick["labels"][ci] = 1
    width = max(2, len(str(max(k - 1, 0))))
    for c in clips:
        c["audio_filename"] = f"{c['sensor_id']:02d}_{c['index']:0{max(6, width)}d}.wav"
        verified = not (c["split"] == "train" and rng.random() < params.unverified_train_fraction)
        lo, hi = params.crowd_annotators
        if not verified:
            n_crowd = int(rng.integers(max(lo, 2), max(hi, 2) + 1))
        elif rng.random() < params.crowd_fraction:
            n_crowd = int(rng.integers(lo, hi + 1))
        else:
            n_crowd = 0
        rows = [(0, c["labels"].copy())] if verified else []
        for ann in np.sort(rng.choice(np.arange(1, 51), size=n_crowd, replace=False)):
            truth = c["labels"].astype(bool)
            miss = rng.random(truth.size) < params.crowd_miss_rate
            false_alarm = rng.random(truth.size) < params.crowd_false_alarm_rate
            rows.append((int(ann), np.where(truth, ~miss, false_alarm).astype(np.int64)))
        c["annotations"] = rows
    return clips, split_by


def _annotations_csv(params: SynthParams, clips: list[dict]) -> bytes:
    cols = [presence_column(_coarse_index(c), c) for c in params.classes]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["split", "sensor_id", "audio_filename", "annotator_id"] + cols)
    for c in clips:
        for ann, labels in c["annotations"]:
            w.writerow([c["split"], c["sensor_id"], c["audio_filename"], ann] + [int(v) for v in labels])
    return buf.getvalue().encode()


# =========================================================================== driver
def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ParameterError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()):
            if not overwrite:
                raise ParameterError(f"{out_dir}: not empty (pass --overwrite to replace a corpus)")
            if not (out_dir / CARD_NAME).exists():
                raise ParameterError(f"{out_dir}: not a `sea synth` corpus (no {CARD_NAME}); "
                                     "refusing to overwrite it")
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def synthesize(out_dir: str | os.PathLike, params: SynthParams = SYNTH, *,
               overwrite: bool = False) -> dict:
    """Write the deterministic SONYC-like corpus described in the module docstring.

    Parameters
    ----------
    out_dir : path
        Output directory; created, or replaced when ``overwrite`` and it holds a corpus.
    params : SynthParams
        Sizes, seed, levels, class prevalence, splits and annotation noise.
    overwrite : bool
        Replace an existing corpus directory.

    Returns
    -------
    dict
        The corpus card (also written to ``out_dir/corpus_card.json``) plus ``out_dir``
        and ``elapsed_s`` (which are not written, so the card stays byte-identical).

    Raises
    ------
    ParameterError
        Invalid params, or ``out_dir`` is not empty and cannot be replaced.
    """
    _validate(params)
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    tmp = _prepare_out(out_dir, overwrite)
    try:
        card = _generate(tmp, params)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    elapsed = time.perf_counter() - t_start
    log.info("synth: %d upstream + %d labelled clips, %.1f MB in %s (%.1f s)",
             card["counts"]["upstream_clips"], card["counts"]["labelled_clips"],
             card["bytes"]["total"] / 1e6, out_dir, elapsed)
    return {**card, "out_dir": str(out_dir), "elapsed_s": round(elapsed, 2)}


def _generate(root: Path, params: SynthParams) -> dict:
    sr = params.sample_rate
    lev = _Leveller(sr, params.calibration_db)
    n_cls = len(params.classes)
    bytes_by = {"upstream": 0, "spl": 0, "downstream": 0}
    # ---------------------------------------------------------------- upstream
    ids = upstream_sensor_ids(params.sensors)
    held_out = np.array([c in params.upstream_held_out for c in params.classes])
    bytes_by["sensors"] = _write_bytes(root / SENSORS_NAME, _sensors_csv(params, ids))
    first_day = dt.date.fromisoformat(params.start_date)
    per_sensor_day: dict[str, dict[str, int]] = {}
    up_present = np.zeros(n_cls, dtype=np.int64)
    up_empty = 0
    up_gain_limited = 0
    for s, sid in enumerate(ids):
        prof = _sensor_profile(np.random.default_rng([params.seed, _S_UP_SENSOR, s]))
        per_sensor_day[f"sensor_{sid}"] = {}
        for d in range(params.days):
            day = first_day + dt.timedelta(days=d)
            t0 = time.perf_counter()
            n_bytes = 0
            times = _upstream_times(params, s, day)
            for c, ts in enumerate(times):
                local = dt.datetime.fromtimestamp(ts, _zone(params.timezone))
                hour = local.hour + local.minute / 60.0 + local.second / 3600.0
                rng = np.random.default_rng([params.seed, _S_UP_CLIP, s, d, c])
                present = rng.random(n_cls) < _class_probabilities(params, hour, local.weekday())
                present &= ~held_out  # out-of-domain classes never occur upstream (issue 18)
                pcm, info = _render(rng, params, prof, hour, present, lev)
                up_present += present
                up_empty += int(not present.any())
                up_gain_limited += int(info["gain_db"] < 0)
                rel = Path(f"sensor_{sid}") / day.isoformat()
                b = _write_audio(root / UPSTREAM_DIR / rel / f"{ts}.flac", pcm, sr, "FLAC")
                bytes_by["upstream"] += b
                b2 = _write_bytes(root / SPL_DIR / rel / f"{ts}.csv", _sidecar(pcm, params, lev))
                bytes_by["spl"] += b2
                n_bytes += b + b2
            per_sensor_day[f"sensor_{sid}"][day.isoformat()] = len(times)
            log.info("synth upstream sensor_%s %s: %d clips, %.1f MB (%.1f s)", sid, day.isoformat(),
                     len(times), n_bytes / 1e6, time.perf_counter() - t0)
    # ---------------------------------------------------------------- downstream
    clips, split_by = _plan_downstream(params)
    down_profiles: dict[int, object] = {}
    t0 = time.perf_counter()
    down_gain_limited = 0
    for c in clips:
        sensor = c["sensor_id"]
        if sensor not in down_profiles:
            down_profiles[sensor] = _sensor_profile(
                np.random.default_rng([params.seed, _S_DOWN_SENSOR, sensor]))
        rng = np.random.default_rng([params.seed, _S_DOWN_CLIP, c["index"]])
        pcm, info = _render(rng, params, down_profiles[sensor], c["hour"], c["labels"].astype(bool), lev)
        down_gain_limited += int(info["gain_db"] < 0)
        bytes_by["downstream"] += _write_audio(
            root / DOWNSTREAM_DIR / DOWNSTREAM_AUDIO_DIR / c["audio_filename"], pcm, sr, "WAV")
        if (c["index"] + 1) % 25 == 0 or c["index"] + 1 == len(clips):
            log.info("synth downstream: %d/%d labelled clips (%.1f s)", c["index"] + 1, len(clips),
                     time.perf_counter() - t0)
    if params.labelled_clips:
        bytes_by["downstream"] += _write_bytes(root / DOWNSTREAM_DIR / ANNOTATIONS_NAME,
                                               _annotations_csv(params, clips))
    # ---------------------------------------------------------------- card
    n_up = sum(sum(v.values()) for v in per_sensor_day.values())
    labels = np.array([c["labels"] for c in clips]).reshape(len(clips), n_cls)

    def prevalence(counts: np.ndarray, total: int) -> dict[str, float]:
        return {cls: round(float(v) / total, 4) if total else 0.0 for cls, v in zip(params.classes, counts)}

    card = {
        "generator": GENERATOR_VERSION,
        "seed": params.seed,
        "params": {f.name: _jsonable(getattr(params, f.name)) for f in dataclasses.fields(params)},
        "layout": {
            "upstream": f"{UPSTREAM_DIR}/sensor_<id>/<YYYY-MM-DD>/<unix_ts>.flac",
            "spl": f"{SPL_DIR}/sensor_<id>/<YYYY-MM-DD>/<unix_ts>.csv",
            "sensors": f"{SENSORS_NAME} (sensor, lat, lon, calibration_db)",
            "annotations": f"{DOWNSTREAM_DIR}/{ANNOTATIONS_NAME}",
            "downstream_audio": f"{DOWNSTREAM_DIR}/{DOWNSTREAM_AUDIO_DIR}/<audio_filename>",
            "dates": f"local days in {params.timezone}; unix_ts in UTC seconds",
            "audio": f"mono PCM_16, {sr} Hz, {params.clip_seconds:g} s",
            "spl_columns": [SIDECAR.offset_column, SIDECAR.dba_column],
        },
        "counts": {
            "upstream_clips": n_up,
            "upstream_sensors": len(ids),
            "clips_per_sensor_day": per_sensor_day,
            "upstream_class_prevalence": prevalence(up_present, n_up),
            "upstream_clips_without_events": up_empty,
            "labelled_clips": len(clips),
            "labelled_split_by": split_by,
            "labelled_per_split": {s: sum(c["split"] == s for c in clips) for s in SPLITS},
            "labelled_sensors_per_split": {
                s: sorted({c["sensor_id"] for c in clips if c["split"] == s}) for s in SPLITS},
            "labelled_class_prevalence": prevalence(labels.sum(0), len(clips)),
            "labelled_class_positives_per_split": {
                s: {cls: int(v) for cls, v in zip(params.classes, labels[[c["split"] == s for c in clips]].sum(0))}
                for s in SPLITS} if clips else {},
            "labelled_clips_without_events": int((labels.sum(1) == 0).sum()),
            "annotation_rows": sum(len(c["annotations"]) for c in clips),
            "unverified_clips": sum(all(a != 0 for a, _ in c["annotations"]) for c in clips),
            "peak_limited_clips": up_gain_limited + down_gain_limited,
        },
        "bytes": {**bytes_by, "total": sum(bytes_by.values())},
    }
    (root / CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    """`sea synth --out DIR [...]`: generate the corpus, print a summary, return 0."""
    d = SYNTH
    ap = argparse.ArgumentParser(prog="sea synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--sensors", type=int, default=d.sensors, help="upstream sensors (%(default)s)")
    ap.add_argument("--days", type=int, default=d.days, help="local days per sensor (%(default)s)")
    ap.add_argument("--clips-per-day", type=int, default=d.clips_per_day,
                    help="upstream clips per sensor and day (%(default)s)")
    ap.add_argument("--labelled-clips", type=int, default=d.labelled_clips,
                    help="downstream labelled clips (%(default)s)")
    ap.add_argument("--labelled-sensors", type=int, default=d.labelled_sensors,
                    help="sensors of the labelled set (%(default)s)")
    ap.add_argument("--seed", type=int, default=d.seed, help="random seed (%(default)s)")
    ap.add_argument("--start-date", default=d.start_date, help="first local day (%(default)s)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing corpus in --out")
    ap.add_argument("--hold-out-classes", default="",
                    help="comma-separated classes absent from the upstream corpus (out-of-domain)")
    args = ap.parse_args(argv)
    params = dataclasses.replace(
        d, sensors=args.sensors, days=args.days, clips_per_day=args.clips_per_day,
        labelled_clips=args.labelled_clips, labelled_sensors=args.labelled_sensors,
        seed=args.seed, start_date=args.start_date,
        upstream_held_out=tuple(c for c in args.hold_out_classes.split(",") if c))
    s = synthesize(args.out, params, overwrite=args.overwrite)
    c = s["counts"]
    print(f"sea synth: {s['out_dir']}\n"
          f"  upstream: {c['upstream_clips']} clips from {c['upstream_sensors']} sensors "
          f"x {params.days} days (+ SPL sidecars)\n"
          f"  downstream: {c['labelled_clips']} labelled clips {c['labelled_per_split']} "
          f"split by {c['labelled_split_by']}, {c['annotation_rows']} annotation rows\n"
          f"  bytes: {s['bytes']['total']:,}   time: {s['elapsed_s']:.1f} s")
    return 0
