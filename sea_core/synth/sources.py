"""The signal generators of `sea synth`: DSP helpers and one event model per SONYC-UST coarse class.

Each model ``generate(rng, sr, n) -> np.ndarray`` returns an unscaled float64 event of
at most ``n`` samples drawn from ``rng`` only (no other state), so a clip's bytes
depend on its seed alone. :data:`GENERATORS` maps a class name to its model and the
range of its A-weighted level; :mod:`sea_core.synth.scene` places and levels them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["GENERATORS", "EventModel"]


# =========================================================================== DSP helpers
def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-30))


def unit(x: np.ndarray) -> np.ndarray:
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
    g = band_gain(np.fft.rfftfreq(size, 1.0 / sr), lo, hi, order).astype(np.float32)
    g.flags.writeable = False
    return g


def band_gain(f: np.ndarray, lo: float | None, hi: float | None, order: int = 4) -> np.ndarray:
    """Butterworth-like magnitude response (zero phase) of a band-pass."""
    g = np.ones_like(f)
    if lo:
        g = g / np.sqrt(1.0 + (lo / np.maximum(f, 1e-3)) ** (2 * order))
    if hi:
        g = g / np.sqrt(1.0 + (f / hi) ** (2 * order))
    return g


def noise_spectrum(rng: np.random.Generator, size: int) -> np.ndarray:
    """rfft-domain white Gaussian noise of a ``size``-sample signal (i.i.d. complex bins)."""
    z = rng.standard_normal((2, size // 2 + 1), dtype=np.float32)
    return z[0] + 1j * z[1]  # complex64: single-precision FFTs are plenty for noise


def bandnoise(rng: np.random.Generator, n: int, sr: int, lo: float | None, hi: float | None,
              order: int = 4) -> np.ndarray:
    """Unit-RMS Gaussian noise band-limited to [lo, hi] Hz (frequency-domain shaping)."""
    from scipy import fft
    size = fft.next_fast_len(n, real=True)
    spec = noise_spectrum(rng, size) * _band_gain_cached(size, sr, lo, hi, order)
    return unit(fft.irfft(spec, size)[:n].astype(np.float64))


CONTROL_HZ = 200.0
"""Rate at which slow envelopes / pitch tracks are computed before interpolation."""


def control_to_audio(ctrl: np.ndarray, n: int, sr: int) -> np.ndarray:
    """Linear interpolation of a ``CONTROL_HZ`` track to ``n`` audio samples."""
    return np.interp(np.arange(n) * (CONTROL_HZ / sr), np.arange(ctrl.size), ctrl)


def smooth(rng: np.random.Generator, n: int, sr: int, knot_seconds: float) -> np.ndarray:
    """A smooth random curve in [-1, 1]: cosine interpolation of uniform knots."""
    n_knots = int(np.ceil(n / sr / knot_seconds)) + 2
    knots = rng.uniform(-1.0, 1.0, n_knots)
    pos = np.arange(int(np.ceil(n / sr * CONTROL_HZ)) + 2) / (knot_seconds * CONTROL_HZ)
    i = np.minimum(np.floor(pos).astype(np.int64), n_knots - 2)
    u = 0.5 - 0.5 * np.cos(np.pi * (pos - i))
    return control_to_audio(knots[i] * (1 - u) + knots[i + 1] * u, n, sr)


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
    f = f0 * (1 + rng.uniform(0.05, 0.25) * smooth(rng, m, sr, rng.uniform(1.5, 4.0)))
    idx = _pulse_times(f, sr)
    amps = np.abs(1 + 0.25 * rng.standard_normal(idx.size))
    tk = np.arange(int(0.05 * sr)) / sr
    kernel = (np.exp(-tk / rng.uniform(0.004, 0.010)) * np.sin(2 * np.pi * rng.uniform(70, 180) * tk)
              + rng.uniform(0.2, 0.5) * np.exp(-tk / rng.uniform(0.002, 0.004))
              * np.sin(2 * np.pi * rng.uniform(350, 900) * tk))
    x = unit(_pulse_train(idx, amps, m, kernel))
    x += rng.uniform(0.2, 0.5) * bandnoise(rng, m, sr, 80.0, 1500.0)
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
    kernel = (bandnoise(rng, kn, sr, 400.0, 9000.0, 2) * _decay(kn, sr, rng.uniform(0.003, 0.006))
              + rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * rng.uniform(1200, 3500) * np.arange(kn) / sr)
              * _decay(kn, sr, 0.012))
    x = unit(_pulse_train(idx, np.abs(1 + 0.15 * rng.standard_normal(idx.size)), m, kernel))
    env = np.convolve(on.astype(float), np.ones(int(0.02 * sr)) / int(0.02 * sr), mode="same")
    x += rng.uniform(0.05, 0.15) * bandnoise(rng, m, sr, 2000.0, 9000.0) * env
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
        rattle = bandnoise(rng, hit_len, sr, 300.0, 2500.0) * np.exp(-t / rng.uniform(0.05, 0.2))
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
    f = f0 * spin * (1 - rng.uniform(0.10, 0.25) * load) * (1 + 0.003 * smooth(rng, m, sr, 0.05))
    phase = 2 * np.pi * np.cumsum(f) / sr
    whine = _harmonics(phase, np.array([1.0, rng.uniform(0.3, 0.6), rng.uniform(0.1, 0.3)]),
                       f0, sr / 2)
    x = whine * (0.6 + 0.4 * load) + rng.uniform(0.4, 1.0) * bandnoise(rng, m, sr, 1000.0, 9000.0) * load
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
    hats = bandnoise(rng, m, sr, 6000.0, 14000.0) * np.exp(-since_eighth / 0.02)
    x = unit(chords * env) + 0.8 * unit(bass * env) + 0.8 * unit(kick) + 0.15 * hats
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
        f0 = f_base * (1 + 0.1 - 0.2 * ((t % phrase) / phrase)) * (1 + 0.06 * smooth(rng, m, sr, 0.2))
        idx = _pulse_times(f0, sr)
        exc = _pulse_train(idx, np.abs(1 + 0.1 * rng.standard_normal(idx.size)), m, glottal)
        exc = unit(exc) + 0.05 * rng.standard_normal(m)
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
                seg = unit(sosfilt(sos, exc[pos:pos + k]))
                seg *= np.sin(np.pi * np.arange(k) / k) ** 0.6
                if rng.random() < 0.4:
                    fk = int(rng.uniform(0.04, 0.08) * sr)
                    seg[:fk] += 0.5 * bandnoise(rng, fk, sr, 3500.0, 8000.0) * _decay(fk, sr, 0.02)
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
        bark *= 1 + 0.4 * bandnoise(rng, k, sr, None, 200.0)
        bark = unit(bark) + 0.25 * bandnoise(rng, k, sr, 500.0, 4000.0)
        bark *= (1 - np.exp(-t / 0.004)) * np.exp(-t / (t[-1] / 2.5))
        x[pos:pos + k] += bark
        pos += k + gap
    return _fade(x, sr, 0.002)


@dataclass(frozen=True)
class EventModel:
    generate: Callable[[np.random.Generator, int, int], np.ndarray]
    dba: tuple[float, float]
    """Range of the event's A-weighted Leq (over its own extent)."""


GENERATORS: dict[str, EventModel] = {
    "engine": EventModel(_engine, (60.0, 82.0)),
    "machinery-impact": EventModel(_machinery_impact, (70.0, 90.0)),
    "non-machinery-impact": EventModel(_non_machinery_impact, (65.0, 85.0)),
    "powered-saw": EventModel(_powered_saw, (68.0, 88.0)),
    "alert-signal": EventModel(_alert_signal, (70.0, 90.0)),
    "music": EventModel(_music, (58.0, 78.0)),
    "human-voice": EventModel(_human_voice, (58.0, 76.0)),
    "dog": EventModel(_dog, (62.0, 82.0)),
}
