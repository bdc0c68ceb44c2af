"""Sensor selection by DPP over sensors.csv coordinates, and the sensors.csv reader (issue 18)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.select import parse_args as select_args
from pipelines.select import run as select_job
from sea_core import sensors as S
from pipelines.job.cli import main as cli_main
from sea_core.errors import DataError, ParameterError
from tests.test_training_set_pipeline import SENSORS as FRAME_SENSORS
from tests.test_training_set_pipeline import make_frames


def run_select(argv: list[str]) -> dict:
    """The select job on ``sea pipeline select`` flags; returns ``selection.json``'s content."""
    return select_job(*select_args(argv))


def city(n: int = 12, seed: int = 0) -> dict[str, S.SensorInfo]:
    """n sensors: clusters of three within ~200 m, clusters km apart."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        if i % 3 == 0:
            lat0, lon0 = 40.73 + rng.uniform(-0.05, 0.05), -73.99 + rng.uniform(-0.05, 0.05)
        lat, lon = lat0 + rng.uniform(-0.002, 0.002), lon0 + rng.uniform(-0.002, 0.002)
        out[f"s{i:02d}"] = S.SensorInfo(f"s{i:02d}", lat, lon, 120.0)
    return out


def write_csv(path: Path, rows: list[str], header: str = "sensor,lat,lon,calibration_db") -> Path:
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def test_haversine_known_distance():
    # JFK -> LAX great circle ~ 3983 km
    d = S.haversine_km([40.6413, 33.9416], [-73.7781, -118.4085])
    assert d[0, 0] == 0 and abs(d[0, 1] - 3983) < 10 and d[0, 1] == d[1, 0]


def test_k_dpp_dense_matches_exact_distribution():
    infos = city(5, seed=3)
    ids = sorted(infos)
    ell = S.sensor_kernel([infos[s].lat for s in ids], [infos[s].lon for s in ids])
    k, draws = 2, 4000
    subsets = list(itertools.combinations(range(5), k))
    p = np.array([np.linalg.det(ell[np.ix_(s, s)]) for s in subsets])
    p /= p.sum()
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(subsets, 0)
    for _ in range(draws):
        counts[tuple(S.sample_k_dpp_dense(ell, k, rng).tolist())] += 1
    freq = np.array([counts[s] for s in subsets]) / draws
    assert 0.5 * np.abs(freq - p).sum() < 0.04


def test_greedy_map_dense_equals_brute_force_first_steps():
    infos = city(9, seed=1)
    ids = sorted(infos)
    ell = S.sensor_kernel([infos[s].lat for s in ids], [infos[s].lon for s in ids])
    sel = S.greedy_map_dense(ell, 3)
    # greedy never picks two members of one tight cluster while a cluster is untouched
    assert len({int(i) // 3 for i in sel}) == 3


@pytest.mark.parametrize("method", S.SENSOR_METHODS)
def test_selected_logdet_beats_random_median(method):
    infos = city(12)
    wins = []
    for seed in range(10):
        rec = S.select_sensors(infos, list(infos), 4, method=method, seed=seed)
        wins.append(rec["logdet"] > rec["random_median_logdet"])
    assert np.mean(wins) >= (1.0 if method == "greedy" else 0.7), wins


def test_selection_is_deterministic_per_seed():
    infos = city(12)
    a = S.select_sensors(infos, list(infos), 4, seed=5)
    b = S.select_sensors(infos, list(infos), 4, seed=5)
    assert a == b
    others = {tuple(S.select_sensors(infos, list(infos), 4, seed=s)["chosen"]) for s in range(6)}
    assert len(others) > 1


def test_sensor_without_coordinates_is_named(tmp_path):
    path = write_csv(tmp_path / "sensors.csv", ["a1,40.7,-73.9,", "b2,,,118"])
    infos = S.read_sensors_csv(path)
    assert infos["b2"].calibration_db == 118 and infos["a1"].calibration_db == 120.0
    with pytest.raises(DataError, match=r"sensor 'b2' has no coordinates.*sensors.csv"):
        S.select_sensors(infos, ["a1", "b2"], 1, source=str(path))
    with pytest.raises(DataError, match=r"sensor 'c3' has no row"):
        S.select_sensors(infos, ["a1", "c3"], 1, source=str(path))


@pytest.mark.parametrize("rows,header,match", [
    (["a1,40.7,-73.9"], "sensor,lat", r"sensors.csv: missing column\(s\) lon"),
    (["a1,north,-73.9"], "sensor,lat,lon", r"sensors.csv: line 2: column 'lat' is not a number: 'north'"),
    (["a1,95,-73.9"], "sensor,lat,lon", r"line 2: column 'lat' = 95.0 is outside"),
    (["a1,40,-73.9", "sensor_a1,41,-73"], "sensor,lat,lon", r"line 3: sensor 'a1' listed twice"),
    (["a1,40,"], "sensor,lat,lon", r"line 2: sensor 'a1' has only one of lat/lon"),
    (["a1,40,-73,loud"], "sensor,lat,lon,calibration_db", r"column 'calibration_db' is not a number"),
])
def test_bad_sensors_csv_names_file_line_column(tmp_path, rows, header, match):
    with pytest.raises(DataError, match=match):
        S.read_sensors_csv(write_csv(tmp_path / "sensors.csv", rows, header))


def test_bad_k_and_method():
    infos = city(6)
    with pytest.raises(ParameterError, match=r"--sensors must be in \[1, 6\]"):
        S.select_sensors(infos, list(infos), 7)
    with pytest.raises(ParameterError, match="method"):
        S.select_sensors(infos, list(infos), 2, method="mcmc")


def test_inverse_kernel_is_pd_and_selects():
    infos = city(9)
    lat, lon = [i.lat for i in infos.values()], [i.lon for i in infos.values()]
    assert np.linalg.eigvalsh(S.sensor_kernel(lat, lon, kernel="inverse")).min() > 0
    rec = S.select_sensors(infos, list(infos), 3, kernel="inverse", method="greedy")
    assert rec["logdet"] > rec["random_median_logdet"] and rec["eps_km"] == S.SENSORS.eps_km
    with pytest.raises(ParameterError, match="kernel must be one of"):
        S.sensor_kernel(lat, lon, kernel="rbf")


# --------------------------------------------------------------------------- pipeline select --sensors
@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = make_frames(tmp_path_factory.mktemp("sensors"), rows_per_part=12)
    # a1 and b2 ~150 m apart, c3 5 km away: a 2-DPP should rarely pick {a1, b2}
    write_csv(root / "sensors.csv", ["a1,40.7300,-73.9950,120", "b2,40.7310,-73.9940,120",
                                     "sensor_c3,40.7750,-73.9500,120"])
    return root


def _select(frames: Path, out: Path, *extra: str) -> dict:
    return run_select(["--frames", str(frames), "--output", str(out), "--method", "diversity",
                       "--fraction", "0.5", "--sensors-csv", str(frames / "sensors.csv"), *extra])


def test_pipeline_select_sensors_filters_and_records(frames, tmp_path):
    a = _select(frames, tmp_path / "a", "--sensors", "2", "--sensor-method", "greedy")
    rec = a["sensor_selection"]
    assert rec["candidates"] == sorted(FRAME_SENSORS) and rec["k"] == 2
    assert "c3" in rec["chosen"] and len(rec["chosen"]) == 2
    assert rec["logdet"] > rec["random_median_logdet"]
    chosen_sensors = set(pq.read_table(tmp_path / "a" / "selection.parquet").column("sensor").to_pylist())
    assert chosen_sensors == set(rec["chosen"])
    assert json.loads((tmp_path / "a" / "selection.json").read_text())["sensor_selection"] == rec
    assert rec["windows_all_sensors"] > a["windows"]
    b = _select(frames, tmp_path / "b", "--sensors", "2", "--seed", "3")
    c = _select(frames, tmp_path / "c", "--sensors", "2", "--seed", "3")
    assert b["sensor_selection"]["chosen"] == c["sensor_selection"]["chosen"]
    assert (pq.read_table(tmp_path / "b" / "selection.parquet").equals(
        pq.read_table(tmp_path / "c" / "selection.parquet")))


def test_cli_select_sensor_without_coordinates_exits_2(frames, tmp_path, capsys):
    bad = write_csv(tmp_path / "sensors.csv", ["a1,40.73,-73.99", "b2,,", "c3,40.77,-73.95"])
    rc = cli_main(["pipeline", "select", "--frames", str(frames), "--output", str(tmp_path / "o"),
                   "--method", "random", "--fraction", "0.5", "--sensors", "2",
                   "--sensors-csv", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and "sensor 'b2' has no coordinates" in err and str(bad) in err
    assert not (tmp_path / "o" / "selection.json").exists()


def test_select_sensors_without_csv_is_a_clear_error(tmp_path):
    root = make_frames(tmp_path / "x", rows_per_part=5)
    with pytest.raises(DataError, match="needs sensors.csv"):
        run_select(["--frames", str(root), "--output", str(tmp_path / "o"), "--method", "random",
                    "--fraction", "0.5", "--sensors", "2"])


def test_synth_writes_sensors_csv(tmp_path):
    import dataclasses

    from sea_core import synth
    from tests.test_synth import TINY

    params = dataclasses.replace(TINY, sensors=3, clips_per_day=1)
    card = synth.synthesize(tmp_path / "c", params)
    infos = S.read_sensors_csv(tmp_path / "c" / "sensors.csv")
    assert sorted(infos) == sorted(synth.upstream_sensor_ids(3))
    assert card["bytes"]["sensors"] == (tmp_path / "c" / "sensors.csv").stat().st_size
    ids = synth.upstream_sensor_ids(3)
    d = S.haversine_km([infos[s].lat for s in ids], [infos[s].lon for s in ids])
    assert 0.1 <= d[1, 2] <= 0.3 + 1e-6          # every third sensor is clustered with the previous one
    assert d[0, 1] < 15 and all(i.calibration_db == params.calibration_db for i in infos.values())
    assert S.find_sensors_csv(tmp_path / "c" / "upstream") == tmp_path / "c" / "sensors.csv"


def test_run_refuses_bad_sensors_select_before_writing(tmp_path, capsys):
    rc = cli_main(["run", "--out", str(tmp_path / "o"), "--sensors-select", "0"])
    assert rc == 2 and "--sensors-select must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
