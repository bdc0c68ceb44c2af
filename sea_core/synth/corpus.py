"""Writing a `sea synth` corpus: every clip, its SPL sidecar, ``sensors.csv``,
``annotations.csv`` and ``corpus_card.json``, built in a temporary sibling directory
and renamed into place (see :mod:`sea_core.synth` for the layout)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from sea_core.errors import ParameterError
from sea_core.params import SIDECAR, SYNTH, SynthParams
from sea_core.synth.layout import (S_DOWN_CLIP, S_DOWN_SENSOR, S_UP_CLIP, S_UP_SENSOR,
                                   ANNOTATIONS_NAME, CARD_NAME, DOWNSTREAM_AUDIO_DIR, DOWNSTREAM_DIR,
                                   GENERATOR_VERSION, SENSORS_NAME, SPL_DIR, SPLITS, UPSTREAM_DIR,
                                   annotations_csv, plan_downstream, sensors_csv, upstream_sensor_ids,
                                   upstream_times, validate, zone)
from sea_core.synth.scene import Leveller, class_probabilities, render, sensor_profile, sidecar

__all__ = ["synthesize"]

log = logging.getLogger(__name__)


def _write_audio(path: Path, pcm: np.ndarray, sr: int, fmt: str) -> int:
    import soundfile as sf
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), pcm, sr, format=fmt, subtype="PCM_16")
    return path.stat().st_size


def _write_bytes(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


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
    """Write the deterministic SONYC-like corpus described in the :mod:`sea_core.synth` docstring.

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
    validate(params)
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
    lev = Leveller(sr, params.calibration_db)
    n_cls = len(params.classes)
    bytes_by = {"upstream": 0, "spl": 0, "downstream": 0}
    # ---------------------------------------------------------------- upstream
    ids = upstream_sensor_ids(params.sensors)
    held_out = np.array([c in params.upstream_held_out for c in params.classes])
    bytes_by["sensors"] = _write_bytes(root / SENSORS_NAME, sensors_csv(params, ids))
    first_day = dt.date.fromisoformat(params.start_date)
    per_sensor_day: dict[str, dict[str, int]] = {}
    up_present = np.zeros(n_cls, dtype=np.int64)
    up_empty = 0
    up_gain_limited = 0
    for s, sid in enumerate(ids):
        prof = sensor_profile(np.random.default_rng([params.seed, S_UP_SENSOR, s]))
        per_sensor_day[f"sensor_{sid}"] = {}
        for d in range(params.days):
            day = first_day + dt.timedelta(days=d)
            t0 = time.perf_counter()
            n_bytes = 0
            times = upstream_times(params, s, day)
            for c, ts in enumerate(times):
                local = dt.datetime.fromtimestamp(ts, zone(params.timezone))
                hour = local.hour + local.minute / 60.0 + local.second / 3600.0
                rng = np.random.default_rng([params.seed, S_UP_CLIP, s, d, c])
                present = rng.random(n_cls) < class_probabilities(params, hour, local.weekday())
                present &= ~held_out  # out-of-domain classes never occur upstream (issue 18)
                pcm, info = render(rng, params, prof, hour, present, lev)
                up_present += present
                up_empty += int(not present.any())
                up_gain_limited += int(info["gain_db"] < 0)
                rel = Path(f"sensor_{sid}") / day.isoformat()
                b = _write_audio(root / UPSTREAM_DIR / rel / f"{ts}.flac", pcm, sr, "FLAC")
                bytes_by["upstream"] += b
                b2 = _write_bytes(root / SPL_DIR / rel / f"{ts}.csv", sidecar(pcm, params, lev))
                bytes_by["spl"] += b2
                n_bytes += b + b2
            per_sensor_day[f"sensor_{sid}"][day.isoformat()] = len(times)
            log.info("synth upstream sensor_%s %s: %d clips, %.1f MB (%.1f s)", sid, day.isoformat(),
                     len(times), n_bytes / 1e6, time.perf_counter() - t0)
    # ---------------------------------------------------------------- downstream
    clips, split_by = plan_downstream(params)
    down_profiles: dict[int, object] = {}
    t0 = time.perf_counter()
    down_gain_limited = 0
    for c in clips:
        sensor = c["sensor_id"]
        if sensor not in down_profiles:
            down_profiles[sensor] = sensor_profile(
                np.random.default_rng([params.seed, S_DOWN_SENSOR, sensor]))
        rng = np.random.default_rng([params.seed, S_DOWN_CLIP, c["index"]])
        pcm, info = render(rng, params, down_profiles[sensor], c["hour"], c["labels"].astype(bool), lev)
        down_gain_limited += int(info["gain_db"] < 0)
        bytes_by["downstream"] += _write_audio(
            root / DOWNSTREAM_DIR / DOWNSTREAM_AUDIO_DIR / c["audio_filename"], pcm, sr, "WAV")
        if (c["index"] + 1) % 25 == 0 or c["index"] + 1 == len(clips):
            log.info("synth downstream: %d/%d labelled clips (%.1f s)", c["index"] + 1, len(clips),
                     time.perf_counter() - t0)
    if params.labelled_clips:
        bytes_by["downstream"] += _write_bytes(root / DOWNSTREAM_DIR / ANNOTATIONS_NAME,
                                               annotations_csv(params, clips))
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
