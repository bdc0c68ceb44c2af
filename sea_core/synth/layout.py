"""Corpus layout of `sea synth`: file and folder names, sensor ids and ``sensors.csv``, the
parameter checks, the calendar of upstream clips (local days, one clip per slice of the day)
and the plan of the labelled set (splits, sensors, labels, annotators) with its
``annotations.csv``. No audio here (see :mod:`sea_core.synth.scene`)."""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io

import numpy as np

from sea_core.datasets.layout import (ANNOTATIONS_NAME, DOWNSTREAM_AUDIO_DIR, DOWNSTREAM_DIR, SENSORS_NAME, SPL_DIR,
                                      SPLITS, UPSTREAM_DIR)
from sea_core.datasets.layout import CORPUS_CARD_NAME as CARD_NAME
from sea_core.errors import ParameterError
from sea_core.params import SONYC_COARSE_CLASSES, SynthParams
from sea_core.synth.scene import class_probabilities
from sea_core.synth.sources import GENERATORS

__all__ = ["GENERATOR_VERSION", "UPSTREAM_DIR", "SPL_DIR", "DOWNSTREAM_DIR", "DOWNSTREAM_AUDIO_DIR",
           "ANNOTATIONS_NAME", "CARD_NAME", "SENSORS_NAME", "SPLITS", "presence_column",
           "upstream_sensor_ids", "sensors_csv", "validate", "zone", "upstream_times",
           "plan_downstream", "annotations_csv"]

GENERATOR_VERSION = "sea-synth/1"
"""Bumped whenever the same params would produce different bytes."""


# random streams: (seed, stream, ...) -> an independent generator
S_UP_SENSOR, S_UP_CLIP, S_DOWN_PLAN, S_DOWN_SENSOR, S_DOWN_CLIP, S_UP_TIMES = range(6)
S_SENSOR_XY = 6
_CITY_CENTRE = (40.7300, -73.9950)   # lat, lon (Manhattan), degrees
_CITY_HALF_KM = 5.0                  # sensors spread over a 10 km x 10 km square


def sensors_csv(params: SynthParams, ids: list[str]) -> bytes:
    """``sensors.csv`` (sensor, lat, lon, calibration_db): spread over a city, every third sensor
    within 100-300 m of the previous one (clusters), all at ``params.calibration_db``."""
    rng = np.random.default_rng([params.seed, S_SENSOR_XY])
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


def validate(p: SynthParams) -> None:
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
    unknown = [c for c in p.classes if c not in GENERATORS]
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
        zone(p.timezone)
    except Exception:  # zoneinfo raises several types
        bad("timezone", f"unknown time zone {p.timezone!r}")


def zone(name: str):
    from zoneinfo import ZoneInfo
    return ZoneInfo(name)


def _largest_remainder(total: int, fractions: tuple[float, ...]) -> list[int]:
    raw = [total * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def upstream_times(params: SynthParams, s: int, day: dt.date) -> list[int]:
    """Unix seconds of the clips of sensor ``s`` on local ``day``: one random time per slice."""
    tz = zone(params.timezone)
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
    nxt = day + dt.timedelta(days=1)
    end = int(dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).timestamp())
    c = params.clips_per_day
    rng = np.random.default_rng([params.seed, S_UP_TIMES, s, day.toordinal()])
    width = (end - start) / c
    free = width - np.ceil(params.clip_seconds)
    return [start + int(i * width + rng.uniform(0.0, free)) for i in range(c)]


def plan_downstream(params: SynthParams) -> tuple[list[dict], str]:
    """Sensor, split, hour and labels of every labelled clip, plus its annotation rows."""
    k = params.labelled_clips
    rng = np.random.default_rng([params.seed, S_DOWN_PLAN])
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
        labels = (rng.random(len(params.classes)) < class_probabilities(params, hour, weekday))
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


def annotations_csv(params: SynthParams, clips: list[dict]) -> bytes:
    cols = [presence_column(_coarse_index(c), c) for c in params.classes]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["split", "sensor_id", "audio_filename", "annotator_id"] + cols)
    for c in clips:
        for ann, labels in c["annotations"]:
            w.writerow([c["split"], c["sensor_id"], c["audio_filename"], ann] + [int(v) for v in labels])
    return buf.getvalue().encode()
