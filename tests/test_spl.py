"""sea_core.audio.spl: A-weighting, Leq dBA, SPL sidecars, relevance scores."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import rankdata

from sea_core.audio import (a_weighting_db, frame_audio, leq_dba, read_spl_sidecar,
                            relevance_scores, window_spl_from_sidecar, window_starts_seconds)
from sea_core.errors import ParameterError, SidecarError
from sea_core.params import RELEVANCE, SPL, RelevanceParams
from tests.conftest import sine

SR = 48_000
# IEC 61672-1 Table 3 A-weightings (dB, rounded to 0.1) keyed by the band index n of the
# exact base-ten frequency 1000 * 10**(n/10) Hz (31.5 Hz nominal is n = -15).
IEC_TABLE = {-15: -39.4, -12: -26.2, -10: -19.1, -6: -8.6, -3: -3.2, 0: 0.0,
             3: 1.2, 6: 1.0, 9: -1.1, 10: -2.5, 12: -6.6}


# --------------------------------------------------------------------------- A-weighting
def test_analytic_curve_matches_iec_table():
    f = 1000.0 * 10.0 ** (np.array(list(IEC_TABLE)) / 10.0)
    np.testing.assert_allclose(a_weighting_db(f), list(IEC_TABLE.values()), atol=0.1)
    assert a_weighting_db(0.0) == -np.inf
    assert a_weighting_db(np.ones((2, 3)) * 1000.0).shape == (2, 3)


@pytest.mark.parametrize("freq,expected", [(100.0, -19.1), (1000.0, 0.0), (10_000.0, -2.5),
                                           (100.5, -19.0), (4321.7, 0.9)])
def test_filter_on_full_scale_sines(freq, expected):
    """A full-scale sine is 0 dBFS (AES17): its Leq with calibration 0 is A(f)."""
    x = sine(freq, 1.0, SR, amplitude=1.0)
    level = leq_dba(x, SR, calibration_db=0.0)
    assert level.shape == (1,)
    assert level[0] == pytest.approx(expected, abs=0.2)
    assert level[0] == pytest.approx(float(a_weighting_db(freq)), abs=0.05)


def test_minus_20_dbfs_sine_with_calibration_110_is_90_dba():
    x = sine(1000.0, 1.0, SR, amplitude=0.1)
    assert leq_dba(x, SR, calibration_db=110.0)[0] == pytest.approx(90.0, abs=0.1)


def test_leq_per_window_and_default_calibration():
    frames, _ = frame_audio(sine(1000.0, 3.0, SR, amplitude=0.5), sr=SR, window_samples=SR,
                            hop_seconds=0.5, center=False)
    levels = leq_dba(frames, SR)
    assert levels.shape == (len(frames),) and levels.dtype == np.float64
    np.testing.assert_allclose(levels, 20 * np.log10(0.5) + SPL.calibration_db, atol=0.05)
    # a louder second window reads exactly 20 dB more
    two = np.stack([frames[0], 10 * frames[0]])
    assert np.diff(leq_dba(two, SR))[0] == pytest.approx(20.0, abs=1e-6)


def test_a_weighting_attenuates_low_rumble_vs_1k_at_8k():
    low = leq_dba(sine(50.0, 1.0, 8000, amplitude=1.0), 8000, calibration_db=0.0)[0]
    mid = leq_dba(sine(1000.0, 1.0, 8000, amplitude=1.0), 8000, calibration_db=0.0)[0]
    assert mid == pytest.approx(0.0, abs=0.05) and low == pytest.approx(-30.2, abs=0.2)


def test_silence_is_floor_not_minus_inf():
    levels = leq_dba(np.zeros((3, 1000), dtype=np.float32), SR, calibration_db=100.0)
    np.testing.assert_array_equal(levels, SPL.floor_db + 100.0)
    with pytest.raises(ParameterError, match="NaN"):
        leq_dba(np.array([0.0, np.nan]), SR)
    with pytest.raises(ParameterError, match="shape"):
        leq_dba(np.zeros((2, 2, 2)), SR)


# --------------------------------------------------------------------------- sidecars
@pytest.fixture
def memdir():
    url = f"memory://sea-spl-{uuid.uuid4().hex}"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists(url):
        fs.rm(url, recursive=True)


def _write(url: str, text: str) -> str:
    with fsspec.open(url, "w") as f:
        f.write(text)
    return url


def test_csv_and_parquet_sidecars_read_same(tmp_path, memdir):
    seconds = np.arange(10, dtype=np.float64)
    dba = 55.0 + seconds
    csv_path = tmp_path / "clip.csv"
    csv_path.write_text("dba,offset_s,extra\n" + "".join(
        f"{d},{s},x\n" for s, d in zip(seconds, dba)))
    pq_url = f"{memdir}/clip.parquet"
    with fsspec.open(pq_url, "wb") as f:
        pq.write_table(pa.table({"offset_s": seconds, "dba": dba}), f)
    for uri in (str(csv_path), pq_url):
        s, d = read_spl_sidecar(uri)
        np.testing.assert_array_equal(s, seconds)
        np.testing.assert_array_equal(d, dba)


@pytest.mark.parametrize("text,match", [
    ("offset_s,level\n0,50\n", "missing column 'dba'"),
    ("0,50\n1,51\n", "missing column 'offset_s'"),  # no header
    ("offset_s,dba\n0,50\n1,nan\n", "column 'dba' has 1 NaN"),
    ("offset_s,dba\n0,50\n2,51\n1,52\n", "not strictly increasing"),
    ("offset_s,dba\n0,50\n1,loud\n", "column 'dba', data row 1"),
    ("offset_s,dba\n", "no rows"),
])
def test_bad_csv_sidecars_name_file_and_column(memdir, text, match):
    uri = _write(f"{memdir}/bad.csv", text)
    with pytest.raises(SidecarError, match=match) as ei:
        read_spl_sidecar(uri)
    assert ei.value.uri == uri and ei.value.kind == "sidecar"


def test_missing_sidecar_and_parquet_column(tmp_path):
    with pytest.raises(SidecarError, match="absent.csv.*not found"):
        read_spl_sidecar(str(tmp_path / "absent.csv"))
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"offset_s": [0.0, 1.0]}), path)
    with pytest.raises(SidecarError, match="s.parquet: missing column 'dba'"):
        read_spl_sidecar(str(path))


def test_window_spl_energetic_mean_and_centred_windows():
    seconds = np.arange(10, dtype=np.float64)
    dba = np.where(seconds % 2 == 0, 60.0, 70.0)
    # 20 centred windows of 1 s at hop 0.5 (upstream SONYC layout)
    starts = window_starts_seconds(20, 0.5, 1.0, True)
    out = window_spl_from_sidecar(seconds, dba, starts, 1.0, "clip.csv")
    assert out.shape == (20,)
    assert out[0] == pytest.approx(60.0)  # [-0.5, 0.5): second 0 only
    assert out[1] == pytest.approx(60.0)  # [0, 1): second 0 only
    assert out[2] == pytest.approx(10 * np.log10((1e6 + 1e7) / 2))  # [0.5, 1.5): seconds 0, 1
    # brute force over arbitrary overlapping windows
    rng = np.random.default_rng(0)
    lev = rng.uniform(40, 100, 10)
    st = rng.uniform(-0.9, 8.0, 50)
    got = window_spl_from_sidecar(seconds, lev, st, 1.7, "x.csv")
    for t, s0 in enumerate(st):
        rows = (seconds < s0 + 1.7) & (seconds + 1.0 > s0)
        assert got[t] == pytest.approx(10 * np.log10(np.mean(10 ** (lev[rows] / 10))), abs=1e-9)


def test_window_without_coverage_is_an_error():
    with pytest.raises(SidecarError, match="late.csv.*window 1"):
        window_spl_from_sidecar(np.arange(3.0), np.full(3, 50.0), np.array([0.0, 3.0]), 1.0, "late.csv")
    with pytest.raises(SidecarError, match="late.csv"):
        window_spl_from_sidecar(np.arange(3.0), np.full(3, 50.0), np.array([-1.0]), 1.0, "late.csv")


# --------------------------------------------------------------------------- relevance
NY = ZoneInfo(RELEVANCE.timezone)


def _ts(*args, tz=NY, fold=0) -> float:
    return datetime(*args, tzinfo=tz, fold=fold).timestamp()


def test_ties_use_min_rank_louder_is_higher():
    t = _ts(2019, 3, 4, 10, 0)
    spl = np.array([60.0, 50.0, 60.0, 70.0, 60.0])
    scores = relevance_scores(spl, t + np.arange(5) * 60.0, ["s1"] * 5)
    np.testing.assert_allclose(scores, [2 / 5, 1 / 5, 2 / 5, 1.0, 2 / 5])
    np.testing.assert_allclose(scores, rankdata(spl, method="min") / 5)


def test_single_window_bin_scores_one():
    assert relevance_scores([42.0], [_ts(2019, 3, 4, 10, 0)], ["s"]).tolist() == [1.0]


def test_local_two_hour_boundary():
    """01:59 and 02:00 New York time are different bins (in UTC both are in 06:00-08:00)."""
    t = [_ts(2019, 3, 5, 1, 59), _ts(2019, 3, 5, 2, 0), _ts(2019, 3, 5, 0, 30)]
    scores = relevance_scores([70.0, 50.0, 60.0], t, ["s"] * 3)
    np.testing.assert_allclose(scores, [1.0, 1.0, 0.5])
    utc = RelevanceParams(timezone="UTC")
    np.testing.assert_allclose(relevance_scores([70.0, 50.0, 60.0], t, ["s"] * 3, params=utc),
                               [1.0, 0.5, 1.0])  # 06:59, 07:00 share a bin; 05:30 alone


def test_dst_transitions():
    # spring forward 2019-03-10: 01:59 EST and 03:00 EDT are one minute apart, different slots
    t0 = _ts(2019, 3, 10, 1, 59)
    s = relevance_scores([60.0, 50.0], [t0, t0 + 60.0], ["s", "s"])
    np.testing.assert_allclose(s, [1.0, 1.0])
    # fall back 2019-11-03: 01:30 EDT and 01:30 EST (an hour apart) are the same local slot
    first, second = _ts(2019, 11, 3, 1, 30, fold=0), _ts(2019, 11, 3, 1, 30, fold=1)
    assert second - first == 3600
    np.testing.assert_allclose(relevance_scores([60.0, 50.0], [first, second], ["s", "s"]), [1.0, 0.5])


def test_bins_split_by_sensor_week_and_iso_year():
    t = _ts(2019, 3, 4, 10, 0)  # Monday
    week = 7 * 86400.0
    # same sensor and slot, weeks apart -> separate bins
    np.testing.assert_allclose(relevance_scores([50.0, 60.0], [t, t + week], ["a", "a"]), [1.0, 1.0])
    # same time, two sensors: separate unless per_sensor=False
    np.testing.assert_allclose(relevance_scores([50.0, 60.0], [t, t], ["a", "b"]), [1.0, 1.0])
    merged = relevance_scores([50.0, 60.0], [t, t], None, params=RelevanceParams(per_sensor=False))
    np.testing.assert_allclose(merged, [0.5, 1.0])
    # Monday of ISO week 1 in 2019 vs 2020 (both ISO week 1, Monday, 10:00): different bins
    a, b = _ts(2018, 12, 31, 10, 0), _ts(2019, 12, 30, 10, 0)
    np.testing.assert_allclose(relevance_scores([50.0, 60.0], [a, b], ["a", "a"]), [1.0, 1.0])


def test_matches_brute_force_with_datetime(rng):
    n = 300
    t = _ts(2019, 3, 1, 0, 0) + rng.uniform(0, 40 * 86400, n)  # spans the March DST change
    spl = np.round(rng.uniform(40, 90, n))  # rounding makes ties
    sensors = rng.choice(["s1", "s2"], n)
    keys = []
    for ti, si in zip(t, sensors):
        d = datetime.fromtimestamp(ti, tz=timezone.utc).astimezone(NY)
        iso = d.isocalendar()
        keys.append((d.hour // RELEVANCE.bin_hours, d.weekday(), iso.year, iso.week, si))
    expected = np.empty(n)
    for k in set(keys):
        idx = np.array([i for i, kk in enumerate(keys) if kk == k])
        expected[idx] = rankdata(spl[idx], method="min") / idx.size
    got = relevance_scores(spl, t, sensors)
    np.testing.assert_allclose(got, expected)
    assert np.all((got > 0) & (got <= 1))


def test_bad_relevance_inputs_name_field():
    t = [_ts(2019, 3, 4, 10, 0)] * 2
    with pytest.raises(ParameterError, match="'spl_dba'"):
        relevance_scores([50.0, np.nan], t, ["a", "a"])
    with pytest.raises(ParameterError, match="'unix_seconds'"):
        relevance_scores([50.0, 51.0], [t[0], np.inf], ["a", "a"])
    with pytest.raises(ParameterError, match="'sensors'"):
        relevance_scores([50.0, 51.0], t, None)
    with pytest.raises(ParameterError, match="timezone"):
        relevance_scores([50.0, 51.0], t, ["a", "a"], params=RelevanceParams(timezone="Mars/Olympus"))
