"""One clip of `sea synth`: a city background, events at levels in dBA, the never-clipping mix
and its per-second SPL sidecar; the sensor profiles and the hour/weekday model of what is heard."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sea_core.params import SIDECAR, SPL, SynthParams
from sea_core.synth.sources import (CONTROL_HZ, GENERATORS, band_gain, bandnoise, control_to_audio,
                                    noise_spectrum, smooth, unit)

PCM_SCALE = 32768.0
"""int16 <-> float as soundfile decodes it (x / 32768)."""
_PEAK_LIMIT = 0.9
"""Mixes whose peak exceeds this (in full scale) are scaled down: never clip."""


@dataclass(frozen=True)
class SensorProfile:
    base_dba: float
    pink: float
    brown: float
    rumble_hz: float
    rumble: float
    lowpass_hz: float
    traffic: float
    """Passing vehicles per minute at rush hour."""


def sensor_profile(rng: np.random.Generator) -> SensorProfile:
    return SensorProfile(base_dba=rng.uniform(54.0, 60.0), pink=rng.uniform(0.5, 1.0),
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


def class_probabilities(params: SynthParams, hour: float, weekday: int) -> np.ndarray:
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


def _background(rng: np.random.Generator, n: int, sr: int, prof: SensorProfile,
                hour: float) -> np.ndarray:
    """Unit-level city background: pink + brown noise with a traffic rumble, passing-vehicle
    swells and a slowly varying level (+-2 dB)."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    fs = np.maximum(f, 1.0)
    shape = (prof.pink / np.sqrt(fs) + prof.brown * 10.0 / fs
             + prof.rumble * 0.05 * np.exp(-0.5 * ((f - prof.rumble_hz) / 25.0) ** 2))
    shape *= band_gain(f, 30.0, prof.lowpass_hz, 2)
    from scipy import fft
    base = unit(fft.irfft(noise_spectrum(rng, n) * shape.astype(np.float32), n).astype(np.float64))
    seconds = n / sr
    tc = np.arange(int(np.ceil(seconds * CONTROL_HZ)) + 2) / CONTROL_HZ
    rate = prof.traffic / 60.0 * (0.3 + 0.7 * np.clip(1 + _diurnal_db(hour) / 9.0, 0.0, 1.2))
    swell_env = np.zeros(tc.size)
    for c in rng.uniform(-2.0, seconds + 2.0, int(rng.poisson(rate * (seconds + 4.0)))):
        swell_env += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((tc - c) / rng.uniform(0.8, 2.5)) ** 2)
    swells = bandnoise(rng, n, sr, 40.0, 1500.0, 2) * control_to_audio(swell_env, n, sr)
    x = base + 0.7 * swells
    lfo_db = 2.0 * smooth(rng, n, sr, rng.uniform(2.0, 5.0))
    return x * 10 ** (lfo_db / 20.0)


class Leveller:
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


def render(rng: np.random.Generator, params: SynthParams, prof: SensorProfile, hour: float,
           present: np.ndarray, lev: Leveller) -> tuple[np.ndarray, dict]:
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
        model = GENERATORS[cls]
        ev = model.generate(rng, sr, n)
        level = min(max(rng.uniform(*model.dba), bg_db + params.min_event_snr_db), params.max_event_dba)
        ev = lev.to_dba(ev, level)
        start = int(rng.integers(0, n - ev.size + 1))
        x[start:start + ev.size] += ev
        events.append({"class": cls, "start_s": round(start / sr, 3),
                       "seconds": round(ev.size / sr, 3), "dba": round(level, 2)})
    peak = float(np.max(np.abs(x)))
    gain = min(1.0, _PEAK_LIMIT / peak) if peak > 0 else 1.0
    pcm = np.clip(np.round(x * gain * PCM_SCALE), -32768, 32767).astype(np.int16)
    return pcm, {"background_dba": round(bg_db, 2), "events": events, "gain_db": round(20 * np.log10(gain), 2)}


def sidecar(pcm: np.ndarray, params: SynthParams, lev: Leveller) -> bytes:
    """Per-second A-weighted Leq (dB SPL) of the decoded audio as `offset_s,dba` CSV."""
    win = int(round(params.sample_rate / SPL.sidecar_hz))
    t = pcm.size // win
    dba = lev.leq((pcm[:t * win].astype(np.float64) / PCM_SCALE).reshape(t, win))
    rows = [f"{i / SPL.sidecar_hz:g},{v:.3f}" for i, v in enumerate(dba)]
    header = f"{SIDECAR.offset_column},{SIDECAR.dba_column}"
    return (header + "\n" + "\n".join(rows) + "\n").encode()
