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
present SONYC-UST coarse class from a simple signal model (see ``sources.GENERATORS``).
Levels are set in dBA with :func:`sea_core.audio.spl.leq_dba` and
``params.calibration_db`` (dB SPL of 0 dBFS, AES17), so the synthetic sidecars
and a real sensor's agree in meaning. The output never clips.

Determinism: each clip draws from its own generator seeded by
``(seed, stream, sensor, day, clip)``, so output is independent of generation
order, and files carry no timestamps: same params -> byte-identical files. The
corpus is built in a temporary sibling directory and renamed into place.

Modules: :mod:`~sea_core.synth.sources` (the signal generators: DSP helpers and one
model per SONYC-UST coarse class), :mod:`~sea_core.synth.scene` (one clip: city
background, levels in dBA, the mix, its SPL sidecar), :mod:`~sea_core.synth.layout`
(file and folder names, sensor ids and ``sensors.csv``, parameter checks, the calendar
of upstream clips, the labelled-set plan and ``annotations.csv``),
:mod:`~sea_core.synth.corpus` (writing the corpus and its card) and
:mod:`~sea_core.synth.cli` (``sea synth``).
"""
from __future__ import annotations

from sea_core.synth.cli import main
from sea_core.synth.corpus import synthesize
from sea_core.synth.layout import (ANNOTATIONS_NAME, CARD_NAME, DOWNSTREAM_AUDIO_DIR, DOWNSTREAM_DIR,
                                   GENERATOR_VERSION, SENSORS_NAME, SPL_DIR, SPLITS, UPSTREAM_DIR,
                                   presence_column, upstream_sensor_ids)

__all__ = [
    "GENERATOR_VERSION", "UPSTREAM_DIR", "SPL_DIR", "DOWNSTREAM_DIR", "ANNOTATIONS_NAME",
    "DOWNSTREAM_AUDIO_DIR", "CARD_NAME", "SENSORS_NAME", "SPLITS", "presence_column",
    "upstream_sensor_ids", "synthesize", "main",
]
