"""Stage 3, SPL: A-weighted Leq of every window, computed or from the sensor's per-second sidecar.

Without ``--spl-sidecar`` the level is computed (``leq_dba`` on the teacher
windows, ``spl_source='computed'``). With it, the sidecar of
``.../sensor_<id>/<day>/<ts>.<ext>`` is ``SIDECAR_DIR/sensor_<id>/<day>/<ts>.csv``
(or ``.parquet`` / ``.pq``) and each window gets the energetic mean of the
seconds it overlaps (``spl_source='sidecar'``). A missing sidecar falls back
to the computed level, unless ``--require-sidecar`` (then: dead letter, kind
``sidecar``); a sidecar that exists but is malformed or does not cover the
clip is always a dead letter.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from pipelines.transforms.records import (METRICS_NAMESPACE, Recording, count_failure,
                                          dead_letter)
from sea_core import storage
from sea_core.errors import SeaError, SidecarError
from sea_core.params import SIDECAR, SPL, SidecarParams, SplParams

__all__ = ["SplConfig", "ComputeSpl", "sidecar_candidates", "window_spl"]

_SUFFIX_ORDER = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class SplConfig:
    teacher_sr: int
    window_seconds: float
    sidecar_dir: str | None = None
    require_sidecar: bool = False
    calibration_db: float = SPL.calibration_db
    calibration_by_sensor: tuple = ()
    """``((sensor, calibration_db), ...)`` from ``sensors.csv``; other sensors use ``calibration_db``."""
    spl: SplParams = SPL
    sidecar: SidecarParams = SIDECAR


def sidecar_candidates(uri: str, sidecar_dir: str) -> list[str]:
    """Possible sidecar URIs of a recording: same ``sensor_<id>/<day>/<ts>`` below ``sidecar_dir``."""
    parts = str(uri).split("?", 1)[0].replace("\\", "/").split("/")
    rel = parts[-3:]
    stem = rel[-1].rsplit(".", 1)[0]
    base = "/".join([str(sidecar_dir).rstrip("/")] + rel[:-1] + [stem])
    return [base + s for s in _SUFFIX_ORDER]


def _first_existing(candidates: list[str]) -> str | None:
    for c in candidates:
        try:
            fs, path = storage.url_to_fs(c)
            if fs.isfile(path):
                return c
        except (OSError, ValueError, ImportError):
            continue
    return None


def window_spl(rec: Recording, cfg: SplConfig) -> tuple[np.ndarray, str]:
    """(levels [T] float32, source) of a recording's windows.

    Raises
    ------
    SidecarError
        Sidecar required but missing, or present but malformed / not covering the clip.
    """
    from sea_core.audio.spl import leq_dba, read_spl_sidecar, window_spl_from_sidecar

    if cfg.sidecar_dir:
        cands = sidecar_candidates(rec.uri, cfg.sidecar_dir)
        found = _first_existing(cands)
        if found is not None:
            try:
                seconds, dba = read_spl_sidecar(found, params=cfg.sidecar)
                levels = window_spl_from_sidecar(seconds, dba, rec.window_start_s.astype(np.float64),
                                                 cfg.window_seconds, found,
                                                 row_seconds=1.0 / cfg.spl.sidecar_hz)
            except SidecarError as exc:
                raise SidecarError(rec.uri, f"sidecar {found}: {exc.reason}") from exc
            levels = levels.astype(np.float32)
            if not np.isfinite(levels).all():
                raise SidecarError(rec.uri, f"sidecar {found}: gives {int((~np.isfinite(levels)).sum())}"
                                            f" non-finite window level(s)")
            return levels, "sidecar"
        if cfg.require_sidecar:
            raise SidecarError(rec.uri, f"no SPL sidecar (looked for {cands[0]} and "
                                        f"{', '.join(s for s in _SUFFIX_ORDER[1:])}); "
                                        "--require-sidecar is set")
    calibration = dict(cfg.calibration_by_sensor).get(rec.sensor, cfg.calibration_db)
    levels = leq_dba(rec.teacher_windows, cfg.teacher_sr, calibration_db=calibration,
                     params=cfg.spl)
    return levels.astype(np.float32), "computed"


class _SplUnit(beam.DoFn):
    def __init__(self, cfg: SplConfig):
        super().__init__()
        self._cfg = cfg

    def setup(self):
        from apache_beam.metrics import Metrics

        self._ms = Metrics.distribution(METRICS_NAMESPACE, "spl_ms")
        self._sidecar = Metrics.counter(METRICS_NAMESPACE, "spl_from_sidecar")
        self._computed = Metrics.counter(METRICS_NAMESPACE, "spl_computed")

    def process(self, unit):
        t0 = time.perf_counter()
        out = []
        for item in unit:
            if isinstance(item, Recording):
                try:
                    item.spl_dba, item.spl_source = window_spl(item, self._cfg)
                    (self._sidecar if item.spl_source == "sidecar" else self._computed).inc()
                except (SeaError, ValueError) as exc:
                    item = dead_letter(item.uri, "spl", exc)
                    count_failure(item)
            out.append(item)
        self._ms.update(int((time.perf_counter() - t0) * 1000))
        yield out


class ComputeSpl(beam.PTransform):
    """Fill ``spl_dba`` / ``spl_source`` of every :class:`Recording` in a unit."""

    def __init__(self, cfg: SplConfig, label: str | None = None):
        super().__init__(label)
        self._cfg = cfg

    def expand(self, units):
        return units | "Spl" >> beam.ParDo(_SplUnit(self._cfg))
