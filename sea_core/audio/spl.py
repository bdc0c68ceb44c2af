"""Sound pressure level: A-weighting, Leq per window, SPL sidecars and relevance scores.

* :func:`a_weighting_db` is the analytic IEC 61672-1 A-curve.
* :func:`leq_dba` applies it in the frequency domain (exact at every FFT bin,
  no bilinear warping near Nyquist) and returns the A-weighted Leq of each
  window in dB SPL, with dBFS per AES17 (a full-scale sine is 0 dBFS).
* :func:`read_spl_sidecar` / :func:`window_spl_from_sidecar` use the one
  A-weighted value per second that SONYC sensors record.
* :func:`relevance_scores` is the relative-loudness relevance of reference (e).
"""
from __future__ import annotations

import csv
import io
import zoneinfo
from datetime import datetime, timezone

import fsspec
import numpy as np
from scipy import fft as sp_fft

from sea_core.errors import ParameterError, SidecarError
from sea_core.params import (A_WEIGHTING, RELEVANCE, SIDECAR, SPL, AWeightingParams,
                             RelevanceParams, SidecarParams, SplParams)

__all__ = ["a_weighting_db", "a_weighting_gain", "leq_dba", "read_spl_sidecar",
           "window_spl_from_sidecar", "relevance_scores"]

# Windows per rFFT batch in leq_dba (bounds memory for long inputs).
_FFT_BATCH = 64
# Overlaps shorter than this (seconds) do not count as coverage (float noise in window starts).
_OVERLAP_EPS = 1e-9
# Local-time offsets are looked up once per quarter hour (every real zone changes on one).
_TZ_LOOKUP_SECONDS = 900


# --------------------------------------------------------------------------- A-weighting
def a_weighting_gain(freqs_hz, *, params: AWeightingParams = A_WEIGHTING) -> np.ndarray:
    """Linear amplitude gain of the IEC 61672-1 A-weighting at ``freqs_hz``.

    Parameters
    ----------
    freqs_hz : array_like, any shape
        Frequencies in Hz (>= 0).
    params : AWeightingParams
        Pole frequencies and 1-kHz normalisation.

    Returns
    -------
    np.ndarray, same shape, float64
        1.0 at 1 kHz, 0.0 at DC.
    """
    f2 = np.square(np.asarray(freqs_hz, dtype=np.float64))
    num = params.f4 ** 2 * f2 * f2
    den = ((f2 + params.f1 ** 2) * np.sqrt((f2 + params.f2 ** 2) * (f2 + params.f3 ** 2))
           * (f2 + params.f4 ** 2))
    return num / den * 10.0 ** (params.a1000_db / 20.0)


def a_weighting_db(freqs_hz, *, params: AWeightingParams = A_WEIGHTING) -> np.ndarray:
    """IEC 61672-1 A-weighting in dB at ``freqs_hz`` (0 dB at 1 kHz, -inf at DC).

    Parameters
    ----------
    freqs_hz : array_like, any shape
        Frequencies in Hz.
    params : AWeightingParams

    Returns
    -------
    np.ndarray, same shape, float64
        E.g. -19.1 dB at 100 Hz, 0.0 at 1 kHz, -2.5 dB at 10 kHz.
    """
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(a_weighting_gain(freqs_hz, params=params))


def leq_dba(windows: np.ndarray, sr: int, *, calibration_db: float = SPL.calibration_db,
            params: SplParams = SPL, weighting: AWeightingParams = A_WEIGHTING) -> np.ndarray:
    """A-weighted equivalent continuous level (Leq) of each window, in dB SPL.

    The A-curve is applied to each window's rFFT (Parseval), so the result is
    ``10*log10(2 * mean(a_weighted(x)**2)) + calibration_db``: dBFS per AES17
    (a full-scale sine reads 0 dBFS) shifted by the microphone calibration.

    Parameters
    ----------
    windows : np.ndarray, shape (T, W) or (W,)
        Audio windows at ``sr``; a 1-D input is one window.
    sr : int
        Sample rate in Hz.
    calibration_db : float
        dB SPL of a 0 dBFS signal.
    params : SplParams
        ``floor_db``: level (dBFS) reported for digital silence.
    weighting : AWeightingParams

    Returns
    -------
    np.ndarray, shape (T,), float64
        Always finite; silence gives ``params.floor_db + calibration_db``.

    Raises
    ------
    ParameterError
        ``windows`` is not 1-D/2-D, is empty or not finite, or ``sr`` is not positive.
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ParameterError(f"leq_dba: windows must have shape (T, W) or (W,) with W > 0, "
                             f"got {np.shape(windows)}")
    if not np.isfinite(x).all():
        raise ParameterError("leq_dba: windows holds NaN or infinite samples")
    if not (np.isfinite(sr) and sr > 0):
        raise ParameterError(f"leq_dba: sr must be positive, got {sr!r}")
    n = x.shape[1]
    freqs = np.fft.rfftfreq(n, d=1.0 / float(sr))
    g2 = np.square(a_weighting_gain(freqs, params=weighting))
    # One-sided spectrum: every bin but DC (and Nyquist for even n) stands for two.
    g2[1: (n + 1) // 2] *= 2.0
    g2_pairs = np.repeat(g2, 2)  # the spectrum viewed as (re, im) float64 pairs
    mean_square = np.empty(x.shape[0], dtype=np.float64)
    for i in range(0, x.shape[0], _FFT_BATCH):
        pairs = sp_fft.rfft(x[i: i + _FFT_BATCH], axis=1).view(np.float64)
        np.square(pairs, out=pairs)
        mean_square[i: i + _FFT_BATCH] = pairs @ g2_pairs / (float(n) * n)
    floor = 10.0 ** (params.floor_db / 10.0)
    dbfs = 10.0 * np.log10(np.maximum(2.0 * mean_square, floor))
    return dbfs + float(calibration_db)


# --------------------------------------------------------------------------- sidecars
def read_spl_sidecar(uri: str, *, params: SidecarParams = SIDECAR) -> tuple[np.ndarray, np.ndarray]:
    """Read a per-second A-weighted SPL sidecar (CSV with header, or Parquet).

    Parameters
    ----------
    uri : str
        Any fsspec URL. ``.csv`` is CSV, ``.parquet`` / ``.pq`` is Parquet; other
        names are sniffed (Parquet files start with ``PAR1``).
    params : SidecarParams
        Column names (``offset_s``, ``dba``).

    Returns
    -------
    seconds : np.ndarray, shape (R,), float64
        Strictly increasing offsets from the start of the recording.
    dba : np.ndarray, shape (R,), float64
        A-weighted level of each second, dB SPL.

    Raises
    ------
    SidecarError
        Missing / unreadable file, missing column, unparsable or NaN value, a level
        outside ``[params.min_dba, params.max_dba]`` (0-194 dBA), no rows, or offsets that are not strictly increasing (message names file,
        column and row).
    """
    uri = str(uri)
    try:
        with fsspec.open(uri, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise SidecarError(uri, "SPL sidecar not found") from exc
    except (ImportError, ValueError, OSError) as exc:
        raise SidecarError(uri, f"cannot read SPL sidecar: {exc}") from exc
    low = uri.lower().split("?", 1)[0]
    if low.endswith(params.parquet_suffixes) or (
            not low.endswith(params.csv_suffixes) and data[:4] == b"PAR1"):
        columns = _read_parquet_columns(data, uri, params)
    else:
        columns = _read_csv_columns(data, uri, params)
    seconds, dba = columns
    if seconds.size == 0:
        raise SidecarError(uri, "SPL sidecar has no rows")
    for name, values in ((params.offset_column, seconds), (params.dba_column, dba)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise SidecarError(uri, f"column '{name}' has {int(bad.sum())} NaN/inf values "
                                    f"(first at data row {int(np.flatnonzero(bad)[0])})")
    out_of_range = (dba < params.min_dba) | (dba > params.max_dba)
    if out_of_range.any():
        row = int(np.flatnonzero(out_of_range)[0])
        raise SidecarError(uri, f"column '{params.dba_column}' has {int(out_of_range.sum())} "
                                f"value(s) outside [{params.min_dba:g}, {params.max_dba:g}] dBA "
                                f"(first at data row {row}: {dba[row]!r})")
    steps = np.diff(seconds)
    if (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        raise SidecarError(uri, f"column '{params.offset_column}' is not strictly increasing "
                                f"(data row {row}: {seconds[row]} after {seconds[row - 1]})")
    return seconds, dba


def _read_csv_columns(data: bytes, uri: str, params: SidecarParams) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SidecarError(uri, f"SPL sidecar is not UTF-8 CSV: {exc}") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise SidecarError(uri, "SPL sidecar CSV is empty (a header "
                                f"'{params.offset_column},{params.dba_column}' is required)")
    header = [c.strip() for c in rows[0]]
    idx = []
    for name in (params.offset_column, params.dba_column):
        if name not in header:
            raise SidecarError(uri, f"missing column '{name}' in CSV header {header}")
        idx.append(header.index(name))
    out = np.empty((2, len(rows) - 1), dtype=np.float64)
    for r, row in enumerate(rows[1:]):
        for k, (j, name) in enumerate(zip(idx, (params.offset_column, params.dba_column))):
            try:
                out[k, r] = float(row[j])
            except (IndexError, ValueError) as exc:
                cell = row[j] if j < len(row) else "<missing>"
                raise SidecarError(uri, f"column '{name}', data row {r}: "
                                        f"cannot parse {cell!r} as a number") from exc
    return out[0], out[1]


def _read_parquet_columns(data: bytes, uri: str, params: SidecarParams) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise SidecarError(uri, f"cannot read SPL sidecar as Parquet: {exc}") from exc
    out = []
    for name in (params.offset_column, params.dba_column):
        if name not in table.column_names:
            raise SidecarError(uri, f"missing column '{name}' in Parquet columns {table.column_names}")
        col = table.column(name)
        try:
            arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
        except (TypeError, ValueError, pa.ArrowException) as exc:
            raise SidecarError(uri, f"column '{name}' is not numeric ({col.type})") from exc
        out.append(arr)
    return out[0], out[1]


def window_spl_from_sidecar(seconds: np.ndarray, dba: np.ndarray, starts_s: np.ndarray,
                            window_s: float, uri: str, *,
                            row_seconds: float = 1.0 / SPL.sidecar_hz) -> np.ndarray:
    """Energetic mean of the sidecar rows that overlap each window.

    Row ``r`` covers ``[seconds[r], seconds[r] + row_seconds)``; window ``t``
    covers ``[starts_s[t], starts_s[t] + window_s)``. The level of a window is
    ``10*log10(mean(10**(L/10)))`` over the rows it overlaps (unweighted).

    Parameters
    ----------
    seconds : np.ndarray, shape (R,)
        Strictly increasing row offsets (from :func:`read_spl_sidecar`).
    dba : np.ndarray, shape (R,)
        Row levels in dB.
    starts_s : np.ndarray, shape (T,)
        Window starts in the clip, seconds (negative when centred; see
        :func:`sea_core.audio.framing.window_starts_seconds`).
    window_s : float
        Window length in seconds.
    uri : str
        Sidecar name used in error messages.
    row_seconds : float
        Duration of one sidecar row.

    Returns
    -------
    np.ndarray, shape (T,), float64

    Raises
    ------
    SidecarError
        A window overlaps no sidecar row, or the arrays are inconsistent.
    """
    sec = np.asarray(seconds, dtype=np.float64).ravel()
    lev = np.asarray(dba, dtype=np.float64).ravel()
    starts = np.asarray(starts_s, dtype=np.float64).ravel()
    if sec.shape != lev.shape or sec.size == 0:
        raise SidecarError(uri, f"seconds and dba must be non-empty and of equal length, "
                                f"got {sec.size} and {lev.size}")
    if not (np.isfinite(sec).all() and np.isfinite(lev).all()) or (np.diff(sec) <= 0).any():
        raise SidecarError(uri, "seconds must be finite and strictly increasing, dba finite")
    if not (window_s > 0 and row_seconds > 0 and np.isfinite(starts).all()):
        raise SidecarError(uri, f"bad window: window_s={window_s!r}, row_seconds={row_seconds!r}, "
                                "starts must be finite")
    ends = starts + float(window_s)
    # rows whose end is past the window start, and whose start is before the window end
    lo = np.searchsorted(sec + float(row_seconds), starts + _OVERLAP_EPS, side="right")
    hi = np.searchsorted(sec, ends - _OVERLAP_EPS, side="left")
    empty = hi <= lo
    if empty.any():
        t = int(np.flatnonzero(empty)[0])
        raise SidecarError(
            uri, f"{int(empty.sum())} window(s) have no SPL coverage; first: window {t} "
                 f"[{starts[t]:.3f}, {ends[t]:.3f}) s vs sidecar rows "
                 f"[{sec[0]:.3f}, {sec[-1] + row_seconds:.3f}) s")
    ref = lev.max()
    power = np.append(10.0 ** ((lev - ref) / 10.0), 0.0)  # relative to the loudest: no overflow
    idx = np.empty(2 * lo.size, dtype=np.int64)
    idx[0::2], idx[1::2] = lo, hi
    sums = np.add.reduceat(power, idx)[0::2]  # sum(power[lo:hi]) exactly, windows may overlap
    return 10.0 * np.log10(sums / (hi - lo)) + ref


# --------------------------------------------------------------------------- relevance
def relevance_scores(spl_dba, unix_seconds, sensors, params: RelevanceParams = RELEVANCE) -> np.ndarray:
    """Relative-loudness relevance of each window [reference (e)].

    Windows are binned by (``bin_hours`` slot of the local day, weekday, ISO
    year, ISO week) in ``params.timezone`` (and by sensor when
    ``params.per_sensor``); a window's score is its min-rank of SPL within the
    bin (ascending, ties share the lowest rank, so louder = higher) divided by
    the bin size.

    Parameters
    ----------
    spl_dba : array_like, shape (N,)
        Window levels (dBA).
    unix_seconds : array_like, shape (N,)
        Window times (seconds since the epoch, UTC).
    sensors : array_like, shape (N,), or None
        Sensor id of each window; ignored (may be ``None``) unless ``params.per_sensor``.
    params : RelevanceParams

    Returns
    -------
    np.ndarray, shape (N,), float64, values in (0, 1]

    Raises
    ------
    ParameterError
        NaN/inf in ``spl_dba`` or ``unix_seconds``, mismatched lengths, missing
        ``sensors`` with ``per_sensor``, unknown timezone or bad ``bin_hours``.
    """
    spl = np.asarray(spl_dba, dtype=np.float64).ravel()
    t = np.asarray(unix_seconds, dtype=np.float64).ravel()
    n = spl.size
    if t.size != n:
        raise ParameterError(f"relevance_scores: unix_seconds has {t.size} values, spl_dba has {n}")
    for name, arr in (("spl_dba", spl), ("unix_seconds", t)):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ParameterError(f"relevance_scores: field '{name}' has {int(bad.sum())} NaN/inf "
                                 f"values (first at index {int(np.flatnonzero(bad)[0])})")
    if not (isinstance(params.bin_hours, (int, np.integer)) and 1 <= params.bin_hours <= 24):
        raise ParameterError(f"relevance_scores: bin_hours must be an integer in 1..24, "
                             f"got {params.bin_hours!r}")
    if n == 0:
        return np.zeros(0, dtype=np.float64)

    days, secs_of_day = _local_day_and_seconds(t, params.timezone)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    slot = secs_of_day // (params.bin_hours * 3600)
    thursday = (days - weekday + 3).astype("datetime64[D]")  # ISO year = year of that week's Thursday
    iso_year = thursday.astype("datetime64[Y]")
    iso_week = (thursday - iso_year.astype("datetime64[D]")).astype(np.int64) // 7 + 1
    # One int64 key per window: (ISO year, ISO week, weekday, slot[, sensor]) in mixed radix.
    key = iso_year.astype(np.int64) - int(iso_year.astype(np.int64).min())
    key = ((key * 54 + iso_week) * 7 + weekday) * 24 + slot
    if params.per_sensor:
        if sensors is None:
            raise ParameterError("relevance_scores: field 'sensors' is required when per_sensor=True")
        sens = np.asarray(sensors).ravel()
        if sens.size != n:
            raise ParameterError(f"relevance_scores: sensors has {sens.size} values, spl_dba has {n}")
        try:
            sensor_idx = np.unique(sens, return_inverse=True)[1].ravel()
        except TypeError:  # mixed types in an object array
            sensor_idx = np.unique(sens.astype(str), return_inverse=True)[1].ravel()
        key = key * (int(sensor_idx.max()) + 1) + sensor_idx

    order = np.lexsort((spl, key))  # by bin, then ascending SPL
    k, s = key[order], spl[order]
    pos = np.arange(n)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = k[1:] != k[:-1]
    new_run = new_group.copy()
    new_run[1:] |= s[1:] != s[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, pos, 0))
    run_start = np.maximum.accumulate(np.where(new_run, pos, 0))  # first of the tied SPL values
    group_id = np.cumsum(new_group) - 1
    counts = np.bincount(group_id)
    scores = np.empty(n, dtype=np.float64)
    scores[order] = (run_start - group_start + 1) / counts[group_id]
    return scores


def _local_day_and_seconds(t: np.ndarray, tz_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Local day number (since 1970-01-01) and second of the local day for unix times ``t``."""
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ParameterError(f"relevance_scores: unknown timezone {tz_name!r}") from exc
    whole = np.floor(t).astype(np.int64)
    quarter = whole // _TZ_LOOKUP_SECONDS
    uq, inv = np.unique(quarter, return_inverse=True)
    offsets = np.array([
        datetime.fromtimestamp(int(q) * _TZ_LOOKUP_SECONDS, tz=timezone.utc)
        .astimezone(tz).utcoffset().total_seconds() for q in uq], dtype=np.int64)
    local = whole + offsets[inv.ravel()]
    return local // 86400, local % 86400

