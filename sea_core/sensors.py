"""Sensors: ``sensors.csv`` (coordinates, calibration), DPP sensor selection.

``sensors.csv`` is optional and lives next to the corpus (the corpus root, or
the parent of ``upstream/``). Columns:

=================  ========  ===================================================
``sensor``         required  id as in ``sensor_<id>/`` (the ``sensor_`` prefix is optional)
``lat``, ``lon``   required  degrees (may be empty: then the sensor cannot be *selected*)
``calibration_db`` optional  dB SPL of 0 dBFS (empty: ``SPL.calibration_db``, 120)
=================  ========  ===================================================

Selection [ref (e)]: the authors built ``L = 1/(haversine + 1e-15)`` and kept
the initial state of a 3-step MCMC chain (close to random). Here the kernel is
the exponential kernel ``exp(-d/ℓ)`` on the haversine distance by default —
positive definite on the sphere, so every ``det(L_Y) > 0`` — and the sample is
an *exact* seeded k-DPP (Kulesza & Taskar 2012, alg. 8, on the dense N x N
kernel: N is the number of sensors) or greedy MAP. The authors' inverse
kernel is available as ``kernel='inverse'`` and refused when it is not PSD
(it usually is not once two sensors are closer than ``eps``-scaled distances).
Everything is in log-det (Cholesky).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sea_core.dpp import choose_eigenvectors, log_elementary_symmetric, logdet_subset, sample_projection_dpp
from sea_core.errors import DataError, ParameterError
from sea_core.params import SENSORS, SPL, SensorParams

__all__ = ["SensorInfo", "read_sensors_csv", "find_sensors_csv", "normalise_id", "haversine_km",
           "sensor_kernel", "sample_k_dpp_dense", "greedy_map_dense", "select_sensors",
           "calibration_map", "KERNELS", "SENSOR_METHODS"]

KERNELS = ("exponential", "inverse")
SENSOR_METHODS = ("kdpp", "greedy")
_REQUIRED = ("sensor", "lat", "lon")


@dataclass(frozen=True)
class SensorInfo:
    sensor: str
    lat: float | None
    lon: float | None
    calibration_db: float


def normalise_id(sensor: str) -> str:
    """``'sensor_b827eb...'`` or ``'b827eb...'`` -> ``'b827eb...'`` (the frames' ``sensor`` value)."""
    s = str(sensor).strip()
    return s[len("sensor_"):] if s.startswith("sensor_") else s


def _number(path, line: int, column: str, text: str, lo: float, hi: float) -> float | None:
    text = (text or "").strip()
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: column {column!r} is not a number: {text!r}") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise DataError(f"{path}: line {line}: column {column!r} = {v} is outside [{lo}, {hi}]")
    return v


def read_sensors_csv(path) -> dict[str, SensorInfo]:
    """Parse and validate ``sensors.csv``; returns ``{sensor id: SensorInfo}``.

    Raises
    ------
    DataError
        Missing file or column, duplicate sensor, non-numeric / out-of-range value
        (the message names the file, line and column).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sensors file not found")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has {header})")
        reader.fieldnames = header
        out: dict[str, SensorInfo] = {}
        for i, row in enumerate(reader, start=2):
            sid = normalise_id(row.get("sensor") or "")
            if not sid:
                raise DataError(f"{path}: line {i}: empty 'sensor'")
            if sid in out:
                raise DataError(f"{path}: line {i}: sensor {sid!r} listed twice")
            lat = _number(path, i, "lat", row.get("lat"), -90.0, 90.0)
            lon = _number(path, i, "lon", row.get("lon"), -180.0, 180.0)
            if (lat is None) != (lon is None):
                raise DataError(f"{path}: line {i}: sensor {sid!r} has only one of lat/lon")
            cal = _number(path, i, "calibration_db", row.get("calibration_db"), 0.0, 250.0)
            out[sid] = SensorInfo(sid, lat, lon, SPL.calibration_db if cal is None else cal)
    if not out:
        raise DataError(f"{path}: no sensors listed")
    return out


def find_sensors_csv(input_path, params: SensorParams = SENSORS) -> Path | None:
    """``sensors.csv`` next to a corpus: in ``input_path`` (a directory) or its parent; None if absent.

    Only local paths are searched (an object-store input needs an explicit path).
    """
    if input_path is None or "://" in str(input_path):
        return None
    p = Path(str(input_path).split("*", 1)[0])
    base = p if p.is_dir() else p.parent
    for d in (base, base.parent, base.parent.parent):
        if (d / params.csv_name).is_file():
            return d / params.csv_name
    return None


def calibration_map(infos: dict[str, SensorInfo]) -> tuple[tuple[str, float], ...]:
    """Sorted ``((sensor, calibration_db), ...)`` (hashable, for frozen configs)."""
    return tuple(sorted((s, float(i.calibration_db)) for s, i in infos.items()))


def haversine_km(lat, lon, params: SensorParams = SENSORS) -> np.ndarray:
    """Great-circle distance matrix [N, N] in km."""
    la, lo = np.radians(np.asarray(lat, float)), np.radians(np.asarray(lon, float))
    dlat = la[:, None] - la[None, :]
    dlon = lo[:, None] - lo[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(la)[:, None] * np.cos(la)[None, :] * np.sin(dlon / 2) ** 2
    return 2 * params.earth_radius_km * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def sensor_kernel(lat, lon, *, kernel: str = SENSORS.kernel, params: SensorParams = SENSORS) -> np.ndarray:
    """The DPP kernel over sensor coordinates (see the module docstring)."""
    d = haversine_km(lat, lon, params)
    if kernel == "exponential":
        ell = np.exp(-d / params.length_km)
        ell[np.diag_indices_from(ell)] += params.jitter
    elif kernel == "inverse":
        ell = 1.0 / (d + params.eps_km)
        lam_min = float(np.linalg.eigvalsh(ell).min())
        if lam_min <= 0:
            raise ParameterError(f"sensor kernel 'inverse' (1/(d + {params.eps_km} km)) is not positive "
                                 f"definite for these coordinates (smallest eigenvalue {lam_min:.3g}); "
                                 "use kernel 'exponential'")
    else:
        raise ParameterError(f"sensor kernel must be one of {KERNELS}, got {kernel!r}")
    return ell


def _factor(ell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, u = np.linalg.eigh(ell)
    return np.clip(lam, 0.0, None), u


def sample_k_dpp_dense(ell: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Exact k-DPP sample of a dense PSD kernel (Kulesza & Taskar alg. 8), sorted indices."""
    n = ell.shape[0]
    if not 1 <= k <= n:
        raise ParameterError(f"k-DPP: k must be in [1, {n}], got {k}")
    lam, u = _factor(ell)
    with np.errstate(divide="ignore"):
        log_mu = np.log(lam)
    e = log_elementary_symmetric(log_mu, k)
    if not np.isfinite(e[k, n]):
        raise ParameterError(f"k-DPP: kernel rank < k = {k}")
    chosen = choose_eigenvectors(log_mu, e, n, k, rng)
    return np.sort(sample_projection_dpp(np.ascontiguousarray(u[:, chosen]), rng))


def greedy_map_dense(ell: np.ndarray, k: int) -> np.ndarray:
    """Greedy MAP of ``det(L_Y)``, ``|Y| = k`` (incremental Cholesky on the dense kernel)."""
    n = ell.shape[0]
    if not 1 <= k <= n:
        raise ParameterError(f"greedy MAP: k must be in [1, {n}], got {k}")
    d2 = np.diag(ell).astype(np.float64).copy()
    cvec = np.zeros((k, n))
    sel: list[int] = []
    for t in range(k):
        j = int(np.argmax(np.where(np.isin(np.arange(n), sel), -np.inf, d2)))
        sel.append(j)
        if t == k - 1:
            break
        e = (ell[j] - cvec[:t].T @ cvec[:t, j]) / np.sqrt(d2[j])
        cvec[t] = e
        d2 = d2 - e * e
    return np.sort(np.asarray(sel, dtype=np.int64))


def _logdet(ell: np.ndarray, idx) -> float:
    lam, u = _factor(ell)
    b = u * np.sqrt(lam)
    return logdet_subset(b, idx, 0.0)


def select_sensors(infos: dict[str, SensorInfo] | None, sensors: list[str], k: int, *,
                   method: str = SENSORS.method, seed: int = SENSORS.seed,
                   kernel: str = SENSORS.kernel, params: SensorParams = SENSORS,
                   source: str = "") -> dict:
    """Choose ``k`` of ``sensors`` (the ids present in the frames) by their coordinates.

    Returns the selection record: ``chosen`` (sorted ids), ``logdet`` of ``L_chosen``,
    ``random_median_logdet`` (median over ``params.baseline_subsets`` seeded random
    k-subsets), method, kernel, seed, candidates.

    Raises
    ------
    DataError
        No sensors file, or a sensor present in the frames has no row / no coordinates
        (named in the message).
    ParameterError
        Bad ``k``, method or kernel.
    """
    if method not in SENSOR_METHODS:
        raise ParameterError(f"sensor selection method must be one of {SENSOR_METHODS}, got {method!r}")
    ids = sorted({normalise_id(s) for s in sensors})
    if infos is None:
        raise DataError(f"--sensors {k} needs {params.csv_name} (sensor, lat, lon) next to the corpus "
                        "or --sensors-csv PATH")
    where = f" in {source}" if source else ""
    for s in ids:
        if s not in infos:
            raise DataError(f"sensor {s!r} has no row{where} (needs lat, lon to select sensors)")
        if infos[s].lat is None:
            raise DataError(f"sensor {s!r} has no coordinates{where} (lat, lon are empty)")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(ids):
        raise ParameterError(f"--sensors must be in [1, {len(ids)}] (sensors in the frames), got {k}")
    ell = sensor_kernel([infos[s].lat for s in ids], [infos[s].lon for s in ids], kernel=kernel,
                        params=params)
    rng = np.random.default_rng(int(seed))
    idx = sample_k_dpp_dense(ell, int(k), rng) if method == "kdpp" else greedy_map_dense(ell, int(k))
    base_rng = np.random.default_rng([int(seed), 1])
    baseline = [_logdet(ell, np.sort(base_rng.choice(len(ids), int(k), replace=False)))
                for _ in range(params.baseline_subsets)]
    return {"method": method, "kernel": kernel, "seed": int(seed), "k": int(k),
            "length_km": params.length_km if kernel == "exponential" else None,
            "eps_km": params.eps_km if kernel == "inverse" else None,
            "candidates": ids, "chosen": [ids[i] for i in idx],
            "logdet": _logdet(ell, idx), "random_median_logdet": float(np.median(baseline)),
            "source": source}


def sensors_csv_for_frames(frames, explicit=None, params: SensorParams = SENSORS):
    """``explicit``, else the ``sensors.csv`` next to the corpus the frames were embedded from
    (``run_summary.json``'s ``input``); None when there is none."""
    if explicit:
        return Path(explicit)
    import json

    summary = Path(str(frames)) / "run_summary.json"
    if "://" in str(frames) or not summary.is_file():
        return None
    return find_sensors_csv(json.loads(summary.read_text()).get("input"), params)


def filter_partitions(parts: list, *, frames, k: int | None, sensors_csv=None,
                      method: str = SENSORS.method, seed: int = SENSORS.seed) -> tuple[list, dict | None]:
    """The ``pipeline select --sensors K`` hook: keep the partitions of the K chosen sensors.

    Returns ``(partitions, record)``; ``record`` is None (and nothing changes) when ``k`` is None.
    """
    if k is None:
        return parts, None
    path = sensors_csv_for_frames(frames, sensors_csv)
    infos = read_sensors_csv(path) if path is not None else None
    record = select_sensors(infos, [p.sensor for p in parts], k, method=method, seed=seed,
                            source=str(path) if path else "")
    keep = set(record["chosen"])
    kept = [p for p in parts if normalise_id(p.sensor) in keep]
    record["windows_all_sensors"] = int(sum(p.rows for p in parts))
    return kept, record


def embed_calibration(sensors_csv=None, corpus_input=None, params: SensorParams = SENSORS) -> tuple:
    """The embed stage's per-sensor calibration: ``((sensor, calibration_db), ...)`` from
    ``sensors_csv`` (or the ``sensors.csv`` next to ``corpus_input``); ``()`` when there is none."""
    path = Path(sensors_csv) if sensors_csv else find_sensors_csv(corpus_input, params)
    if path is None:
        return ()
    return calibration_map(read_sensors_csv(path))
