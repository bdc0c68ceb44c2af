"""`sea pipeline embed`: Beam pipeline shape, dead letters, incremental refresh, runners.

Everything runs for real: Beam's own runners (in-process FnApiRunner,
multi-processing, PortableRunner with LOOPBACK workers against the embedded and
a local job service, DaskRunner on a real ``dask.distributed.LocalCluster``),
real FLAC/WAV files written with soundfile, real Parquet.

The corpus is tiny (10 good 2-s clips, 6 bad files = 37 % bad, one per failure
kind). Most runs use a small Keras teacher saved to a ``.keras`` file and loaded
through ``get_teacher(PATH)``; the L3 network (``l3-random``) costs ~0.5 s per
window on the shared 2-core machines, so it gets one dedicated test.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipelines.embed_config import EmbedConfig
from pipelines.embed_corpus import build
from pipelines.embed_corpus import parse_args as embed_args
from pipelines.embed_corpus import run as embed_job
from sea_core.errors import ParameterError, SchemaError
from sea_core.datasets.layout import frames_partition_dir
from sea_core.datasets.schema import FRAMES_SCHEMA_VERSION, check_schema, frames_schema
from tests.conftest import TINY_SR


def run(argv: list[str]) -> dict:
    """The embed job on ``sea pipeline embed`` flags; returns the run summary."""
    return embed_job(*embed_args(argv))


SR = 48_000
SECONDS = 2.0
TZ = ZoneInfo("America/New_York")
BASE = int(datetime(2019, 3, 4, 9, 0, tzinfo=TZ).timestamp())
SENSORS = ("b827eb000001", "b827eb000002")
TINY_DIM = 16  # output of the tiny_teacher fixture (tests/conftest.py)


# --------------------------------------------------------------------------- corpus + teacher
def _clip_path(up: Path, sensor: str, ts: int, ext: str = "flac") -> Path:
    day = datetime.fromtimestamp(ts, TZ).date().isoformat()
    p = up / f"sensor_{sensor}" / day / f"{ts}.{ext}"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _sidecar(up: Path, spl: Path, audio: Path, levels) -> Path:
    q = (spl / audio.relative_to(up)).with_suffix(".csv")
    q.parent.mkdir(parents=True, exist_ok=True)
    q.write_text("offset_s,dba\n" + "".join(f"{i},{v:.1f}\n" for i, v in enumerate(levels)))
    return q


def _tone(i: int, seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng([seed, i]).standard_normal(t.size)
    return (0.04 * (i + 1) * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * noise).astype(np.float32)


def add_good(root: Path, i: int, seed: int = 0, ts: int | None = None) -> Path:
    up, spl = root / "upstream", root / "spl"
    p = _clip_path(up, SENSORS[i % 2], BASE + 600 * i if ts is None else ts)
    sf.write(p, _tone(i, seed=seed), SR, subtype="PCM_16", format="FLAC")
    _sidecar(up, spl, p, [50.0 + i, 51.0 + i])
    return p


def make_corpus(root: Path, n_good: int = 10) -> tuple[list[str], dict[str, str]]:
    """Good clips with sidecars, and one bad file per failure kind (uri -> kind)."""
    up, spl = root / "upstream", root / "spl"
    good = [str(add_good(root, i)) for i in range(n_good)]
    bad: dict[str, str] = {}
    p = _clip_path(up, SENSORS[0], BASE + 7001)
    p.write_bytes(np.random.default_rng(7).bytes(5000))
    bad[str(p)] = "unreadable"
    p = _clip_path(up, SENSORS[0], BASE + 7002, "wav")
    sf.write(p, np.zeros(0, np.float32), SR, subtype="PCM_16")
    bad[str(p)] = "empty"
    p = _clip_path(up, SENSORS[1], BASE + 7003)
    sf.write(p, np.full(SR // 2, 0.1, np.float32), SR, subtype="PCM_16", format="FLAC")
    _sidecar(up, spl, p, [60.0])
    bad[str(p)] = "too_short"
    p = _clip_path(up, SENSORS[1], BASE + 7004, "wav")
    y = np.full(int(SECONDS * SR), 0.1, np.float32)
    y[100] = np.nan
    sf.write(p, y, SR, subtype="FLOAT")
    _sidecar(up, spl, p, [60.0, 60.0])
    bad[str(p)] = "non_finite"
    p = up / f"sensor_{SENSORS[0]}" / "2019-03-04" / "not-a-time.flac"
    sf.write(p, np.full(int(SECONDS * SR), 0.1, np.float32), SR, format="FLAC")
    bad[str(p)] = "bad_name"
    p = _clip_path(up, SENSORS[1], BASE + 7005)  # no sidecar: dead only with --require-sidecar
    sf.write(p, _tone(3), SR, subtype="PCM_16", format="FLAC")
    bad[str(p)] = "sidecar"
    return good, bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad = make_corpus(root)
    return root, good, bad


def app_args(corpus, teacher: Path, out: Path, *, input_=None, require=True) -> list[str]:
    root = corpus[0]
    args = ["--input", str(input_ or root / "upstream"), "--output", str(out),
            "--teacher", str(teacher), "--teacher-opt", "frontend=none",
            "--teacher-opt", f"sample_rate={TINY_SR}", "--hop-seconds", "1.0",
            "--batch-size", "8", "--shard-size", "4", "--spl-sidecar", str(root / "spl")]
    return args + (["--require-sidecar"] if require else [])


def part_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes()
            for p in sorted(out.glob("**/part-*.parquet")) if "/." not in str(p)}


def assert_same_output(a: Path, b: Path) -> None:
    fa, fb = part_files(a), part_files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs between {a} and {b}"


@pytest.fixture(scope="module")
def reference(corpus, tiny_teacher, tmp_path_factory):
    """One-shot run on the default runner (one worker thread per CPU)."""
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = run(app_args(corpus, tiny_teacher, out))
    return out, summary


# --------------------------------------------------------------------------- default runner
def test_counts_dead_letters_and_metrics(corpus, reference):
    _, good, bad = corpus
    out, s = reference
    c = s["counts"]
    assert (c["inputs"], c["ok"], c["dead_lettered"]) == (16, 10, 6)
    assert c["inputs"] == c["ok"] + c["dead_lettered"] and s["balanced"]
    assert c["windows"] == 30  # 2-s clips, centred, hop 1 s, 1-s windows -> 3 each
    assert c["by_failure_kind"] == {k: 1 for k in bad.values()}
    dl = pq.read_table(out / "dead_letter" / "part-00000.parquet")
    assert dl.schema.equals(__import__("sea_core.datasets.schema", fromlist=["x"]).dead_letter_schema(),
                            check_metadata=False)
    got = {r["uri"]: r for r in dl.to_pylist()}
    assert {u: r["error_kind"] for u, r in got.items()} == bad
    stages = {bad[u]: r["stage"] for u, r in got.items()}
    assert stages == {"unreadable": "decode", "empty": "decode", "non_finite": "decode",
                      "too_short": "frame", "bad_name": "list", "sidecar": "spl"}
    assert all(r["message"] and r["error_class"].endswith("Error") for r in got.values())
    m = s["metrics"]  # Beam Metrics counters per failure kind (FnApiRunner reports them)
    assert {k: m[f"dead_letter.{k}"] for k in bad.values()} == {k: 1 for k in bad.values()}
    assert (m["inputs"], m["ok"], m["windows"]) == (16, 10, 30)
    assert s["runner"].startswith("FnApiRunner") and (out / "_SUCCESS").exists()
    man = pq.read_table(out / "manifest.parquet").to_pylist()
    assert sorted(r["uri"] for r in man) == sorted(good + list(bad))
    assert {r["uri"] for r in man if r["status"] == "dead"} == set(bad)


def test_frames_rows_schema_and_values(corpus, reference, tiny_teacher):
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.io import read_audio
    from sea_core.models.teachers import get_teacher
    from sea_core.precision import resolve_precision

    root, good, _ = corpus
    out, s = reference
    files = sorted((out / "frames").glob("sensor_key=*/day_key=*/part-00000.parquet"))
    assert [f.relative_to(out / "frames").parts[:2] for f in files] == \
        [(f"sensor_key={x}", "day_key=2019-03-04") for x in SENSORS]
    for f in files:
        check_schema(pq.read_schema(f), "frames", FRAMES_SCHEMA_VERSION, where=str(f))
        assert pq.read_schema(f).equals(frames_schema(TINY_DIM, 8000), check_metadata=False)
    # plain readers, without the project
    t = pq.read_table(out / "frames", partitioning=None)
    assert t.num_rows == 30
    assert ds.dataset(out / "frames", format="parquet", partitioning="hive").count_rows() == 30
    keys = list(zip(t.column("uri").to_pylist(), t.column("window_index").to_pylist()))
    assert len(set(keys)) == len(keys)
    rows = [r for r in t.to_pylist() if r["uri"] == good[4]]
    assert [r["window_index"] for r in rows] == [0, 1, 2]
    assert [r["window_start_s"] for r in rows] == [-0.5, 0.5, 1.5]
    assert rows[0]["recording_id"] == hashlib.sha256(Path(good[4]).read_bytes()).hexdigest()
    assert rows[0]["sensor"] == SENSORS[0] and rows[0]["day"] == "2019-03-04"
    assert rows[0]["start_time"].timestamp() == BASE + 2400
    assert rows[0]["teacher_id"] == s["teacher_id"] and s["teacher_id"].startswith("keras:tiny")
    # sidecar levels 54, 55 dB for seconds 0, 1: windows [-0.5,.5) [.5,1.5) [1.5,2.5)
    mid = 10 * np.log10((10 ** 5.4 + 10 ** 5.5) / 2)
    np.testing.assert_allclose([r["spl_dba"] for r in rows], [54.0, mid, 55.0], atol=1e-4)
    assert {r["spl_source"] for r in t.to_pylist()} == {"sidecar"}
    # embeddings = the teacher on the same windows; student audio = 8-kHz int16 of them
    audio, _ = read_audio(good[4], target_sr=TINY_SR)
    windows, _ = frame_audio(audio, sr=TINY_SR, window_samples=TINY_SR, hop_seconds=1.0)
    # (default --teacher-precision auto: the precision the summary records)
    assert s["teacher_precision"] == resolve_precision("auto")
    teacher = get_teacher(str(tiny_teacher), frontend="none", sample_rate=TINY_SR,
                          precision=s["teacher_precision"])
    np.testing.assert_allclose(np.array([r["teacher_emb"] for r in rows]),
                               teacher.embed(windows), atol=1e-5)
    a8, _ = read_audio(good[4], target_sr=8000)
    w8, _ = frame_audio(a8, sr=8000, window_samples=8000, hop_seconds=1.0, n_windows=3)
    st = np.array([r["student_audio"] for r in rows], dtype=np.int16)
    assert st.shape == (3, 8000)
    assert np.abs(st.astype(np.float64) - np.clip(np.round(w8 * 32768), -32768, 32767)).max() <= 1
    # relevance: min-rank / count of the 2-hour bin; the loudest window of each bin scores 1
    for sensor in SENSORS:
        part = [r for r in t.to_pylist() if r["sensor"] == sensor]
        bins: dict = {}
        for r in part:
            bins.setdefault(r["start_time"].astimezone(TZ).hour // 2, []).append(r)
        for members in bins.values():
            spl = np.array([r["spl_dba"] for r in members])
            rel = np.array([r["relevance"] for r in members])
            assert np.all((rel > 0) & (rel <= 1))
            assert rel[np.argmax(spl)] == 1.0
            assert rel[np.argmin(spl)] == pytest.approx(1 / len(members))


def test_frames_readable_without_sea(reference):
    """Plain pyarrow, pandas and DuckDB read the whole frames dataset: no project code, no
    reader options. Every column keeps its file type and values; the hive directory keys
    (sensor_key, day_key) come as extra columns equal to sensor and day."""
    import duckdb
    import pandas as pd

    out, s = reference
    frames = out / "frames"
    names = frames_schema(TINY_DIM, 8000).names
    # what the run says it wrote: totals in the summary, windows per recording in the manifest
    man = pq.read_table(out / "manifest.parquet").to_pylist()
    want: dict = {}
    for r in man:
        if r["status"] == "ok":
            want[(r["sensor"], r["day"])] = want.get((r["sensor"], r["day"]), 0) + r["windows"]
    assert sum(want.values()) == s["totals"]["windows"] == s["counts"]["windows"] == 30
    assert len(want) == s["totals"]["partitions"] == 2
    files = sorted(frames.glob("*/*/part-00000.parquet"))
    assert len(files) == len(want)
    # each file alone is self-describing: its sensor/day columns name its partition
    singles = []
    for f in files:
        one = pq.read_table(f)
        assert one.column_names == names
        (sensor,), (day,) = set(one.column("sensor").to_pylist()), set(one.column("day").to_pylist())
        assert f.parent.relative_to(frames).as_posix() == f"sensor_key={sensor}/day_key={day}"
        assert one.num_rows == want[(sensor, day)]
        singles.append(one)
    by_file = pa.concat_tables(singles)
    order = [("sensor", "ascending"), ("uri", "ascending"), ("window_index", "ascending")]

    def check_arrow(t: pa.Table, hive: bool = True) -> None:
        assert t.num_rows == s["counts"]["windows"]
        assert t.column_names[:len(names)] == names
        assert set(t.column_names) - set(names) == ({"sensor_key", "day_key"} if hive else set())
        assert t.select(names).sort_by(order).equals(by_file.sort_by(order))  # types + values
        if not hive:
            return
        assert t.column("sensor_key").cast(pa.string()).to_pylist() == t.column("sensor").to_pylist()
        assert t.column("day_key").cast(pa.string()).to_pylist() == t.column("day").to_pylist()
        got = t.group_by(["sensor", "day"]).aggregate([("window_index", "count")]).to_pylist()
        assert {(r["sensor"], r["day"]): r["window_index_count"] for r in got} == want

    check_arrow(pq.read_table(str(frames)))
    check_arrow(pq.read_table(frames))
    check_arrow(ds.dataset(frames, partitioning="hive").to_table())
    check_arrow(ds.dataset(str(frames), format="parquet").to_table(), hive=False)

    df = pd.read_parquet(frames)
    assert len(df) == 30 and list(df.columns[:len(names)]) == names
    assert (df["sensor"] == df["sensor_key"].astype(str)).all()
    assert (df["day"] == df["day_key"].astype(str)).all()
    assert df.groupby(["sensor", "day"]).size().to_dict() == want
    assert df["teacher_emb"].map(len).eq(TINY_DIM).all()
    assert df["start_time"].dt.tz is not None

    con = duckdb.connect()
    glob = (frames / "**" / "*.parquet").as_posix()
    for opts in (", hive_partitioning = true", ""):
        rel = f"read_parquet('{glob}'{opts})"
        assert con.execute(f"SELECT count(*) FROM {rel}").fetchone()[0] == 30
        rows = con.execute(f"SELECT count(*), sensor, day, typeof(sensor), typeof(day) FROM {rel} "
                           "GROUP BY sensor, day ORDER BY sensor, day").fetchall()
        assert {(r[1], r[2]): r[0] for r in rows} == want
        assert {(r[3], r[4]) for r in rows} == {("VARCHAR", "VARCHAR")}
        per_sensor = con.execute(f"SELECT count(*), sensor FROM {rel} GROUP BY sensor").fetchall()
        assert sorted((sen, n) for n, sen in per_sensor) == \
            sorted((sen, sum(v for (x, _), v in want.items() if x == sen)) for sen in SENSORS)
        # filtering on a directory key prunes partitions and agrees with the file column
        n = con.execute(f"SELECT count(*) FROM {rel} WHERE sensor_key = '{SENSORS[1]}' "
                        f"AND sensor = '{SENSORS[1]}'").fetchone()[0]
        assert n == sum(v for (x, _), v in want.items() if x == SENSORS[1])
    emb = con.execute(f"SELECT teacher_emb FROM read_parquet('{glob}') LIMIT 1").fetchone()[0]
    assert len(emb) == TINY_DIM


def test_version1_layout_refused_then_replaced(corpus, tiny_teacher, reference, tmp_path):
    """An output in the old sensor=/day= layout (frames schema 1): the readers and an
    --incremental run refuse it; a full run replaces it with the current layout."""
    import json

    from sea_core.datasets.frames import list_partitions

    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    for f in sorted((out / "frames").glob("*/*/part-00000.parquet")):
        t = pq.read_table(f)
        meta = {**t.schema.metadata, b"sea.schema_version": b"1"}
        sensor, day = t.column("sensor")[0].as_py(), t.column("day")[0].as_py()
        old = out / "frames" / f"sensor={sensor}" / f"day={day}" / f.name
        old.parent.mkdir(parents=True)
        pq.write_table(t.replace_schema_metadata(meta), old)
        shutil.rmtree(f.parent.parent)
    man = pq.read_table(out / "manifest.parquet")
    settings = json.loads(man.schema.metadata[b"sea.settings"])
    settings["frames_schema_version"] = "1"
    shutil.rmtree(out / "manifest.parquet")  # a single-file manifest (as written before): still read
    pq.write_table(man.replace_schema_metadata(
        {**man.schema.metadata, b"sea.settings": json.dumps(settings, sort_keys=True).encode()}),
        out / "manifest.parquet")
    with pytest.raises(SchemaError, match="schema version '1' of 'frames' is not supported"):
        list_partitions(out)
    with pytest.raises(ParameterError, match="frames_schema_version='1'"):
        run(app_args(corpus, tiny_teacher, out) + ["--incremental"])
    assert len(list((out / "frames").glob("sensor=*/day=*/*.parquet"))) == 2  # untouched
    # current-version files in old-style directories are refused too, naming the layout
    for victim in (out / "frames").glob("sensor=*/day=*/*.parquet"):
        t = pq.read_table(victim)
        pq.write_table(t.replace_schema_metadata(
            {**t.schema.metadata, b"sea.schema_version": FRAMES_SCHEMA_VERSION.encode()}), victim)
    with pytest.raises(SchemaError, match="sensor_key=<id>/day_key="):
        list_partitions(out)
    s = run(app_args(corpus, tiny_teacher, out))
    assert s["balanced"] and not list((out / "frames").glob("sensor=*"))
    assert_same_output(reference[0], out)
    assert [(p.sensor, p.day) for p in list_partitions(out)] == \
        [(x, "2019-03-04") for x in SENSORS]


def test_build_is_testable_and_sidecar_fallback(corpus, tiny_teacher, tmp_path):
    """build(p, cfg) on its own; without --require-sidecar a missing sidecar means computed SPL."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that, equal_to

    root, _, bad = corpus
    cfg = EmbedConfig(input=str(root / "upstream"), output=str(tmp_path / "o"),
                      teacher=str(tiny_teacher),
                      teacher_options=(("frontend", "none"), ("sample_rate", TINY_SR)),
                      batch_size=8, hop_seconds=1.0, shard_size=16,
                      spl_sidecar=str(root / "spl"), require_sidecar=False)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        results = build(p, cfg)
        assert_that(results | beam.Map(lambda r: (r["key"][1], r["rows"], r["action"])),
                    equal_to([(SENSORS[0], 15, "written"), (SENSORS[1], 18, "written"),
                              ("", 5, "written")]))
    t = pq.read_table(tmp_path / "o" / "frames", partitioning=None)
    nosc = [u for u, k in bad.items() if k == "sidecar"][0]
    src = {r["uri"]: r["spl_source"] for r in t.select(["uri", "spl_source"]).to_pylist()}
    assert src.pop(nosc) == "computed" and set(src.values()) == {"sidecar"}


def test_l3_random_teacher_default_hop(tmp_path, caplog):
    """The real L3 network (random weights), its corpus hop (0.5 s), computed SPL; no Prism."""
    from sea_core.audio.framing import frame_audio
    from sea_core.audio.spl import leq_dba

    root = tmp_path / "c"
    up = root / "upstream"
    paths = []
    for i in range(2):
        p = _clip_path(up, SENSORS[0], BASE + 60 * i)
        sf.write(p, _tone(i, seconds=1.5), SR, subtype="PCM_16", format="FLAC")
        paths.append(p)
    p = _clip_path(up, SENSORS[0], BASE + 999)
    p.write_bytes(b"")
    with caplog.at_level(logging.INFO):
        s = run(["--input", str(up / "**" / "*.flac"), "--output", str(tmp_path / "o"),
                 "--teacher", "l3-random", "--batch-size", "4"])
    assert "prism" not in caplog.text.lower()
    assert s["teacher_id"] == "l3-random(seed=0)"
    # default (runners.DEFAULT_LOCAL_MODE): one worker thread per CPU
    assert s["runner"] == f"FnApiRunner(multi_threading, workers={os.cpu_count()})"
    c = s["counts"]
    assert (c["inputs"], c["ok"], c["dead_lettered"], c["windows"]) == (3, 2, 1, 6)
    assert c["by_failure_kind"] == {"unreadable": 1}
    t = pq.read_table(tmp_path / "o" / "frames", partitioning=None)
    assert t.schema.field("teacher_emb").type == pa.list_(pa.float32(), 512)
    r0 = [r for r in t.to_pylist() if r["uri"] == str(paths[0])]
    assert [r["window_start_s"] for r in r0] == [-0.5, 0.0, 0.5]  # 1.5 s: 3 windows
    assert {r["spl_source"] for r in r0} == {"computed"}
    audio, _ = sf.read(paths[0], dtype="float32")
    w, _ = frame_audio(audio, sr=SR, window_samples=SR, hop_seconds=0.5)
    np.testing.assert_allclose([r["spl_dba"] for r in r0], leq_dba(w, SR), atol=1e-3)
    emb = np.array([r["teacher_emb"] for r in r0], dtype=np.float32)
    assert np.isfinite(emb).all() and np.abs(emb).max() > 0
    # fixed-size (padded) batches: a window's vector does not depend on its batch-mates,
    # so the pipeline's vectors are bit-identical to embedding the window on its own
    from pipelines.transforms.teacher import embed_fixed_batches
    from sea_core.models.teachers import get_teacher

    teacher = get_teacher("l3-random", precision=s["teacher_precision"])
    alone = embed_fixed_batches(teacher, w[:1], 4)
    mixed = embed_fixed_batches(teacher, np.concatenate([w[1:], w[:1]]), 4)
    np.testing.assert_array_equal(alone[0], mixed[-1])
    np.testing.assert_array_equal(emb[0], alone[0])


# --------------------------------------------------------------------------- runners
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def job_service():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m",
                             "apache_beam.runners.portability.local_job_service_main",
                             f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "the job service exited"
                time.sleep(0.3)
        else:
            pytest.fail("the local job service did not start within 60 s")
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def dask_cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.parametrize("runner", ["in_memory", "multi_processing",
                                    pytest.param("portable_embedded", marks=pytest.mark.portable),
                                    pytest.param("portable_job_service", marks=pytest.mark.portable),
                                    pytest.param("dask", marks=pytest.mark.dask)])
def test_runners_write_identical_output(runner, corpus, tiny_teacher, reference, tmp_path,
                                        request):
    flags = {  # the reference ran on the default runner (multi_threading)
        "in_memory": lambda: ["--direct_running_mode=in_memory"],
        "multi_processing": lambda: ["--direct_running_mode=multi_processing",
                                     "--direct_num_workers=2"],
        "portable_embedded": lambda: ["--runner=PortableRunner", "--job_endpoint=embed",
                                      "--environment_type=LOOPBACK"],
        "portable_job_service": lambda: ["--runner=PortableRunner",
                                         f"--job_endpoint={request.getfixturevalue('job_service')}",
                                         "--environment_type=LOOPBACK"],
        "dask": lambda: ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                         f"--dask_client_address={request.getfixturevalue('dask_cluster')}",
                         "--dask_npartitions=3"],  # several dask partitions per stage
    }[runner]()
    out = tmp_path / "out"
    s = run(app_args(corpus, tiny_teacher, out) + flags)
    assert s["counts"] == reference[1]["counts"] and s["balanced"]
    assert_same_output(reference[0], out)  # same rows, same bytes
    assert (out / "_SUCCESS").exists()


# --------------------------------------------------------------------------- incremental
def test_incremental_subset_then_full_equals_one_shot(corpus, tiny_teacher, reference, tmp_path):
    root, good, bad = corpus
    out = tmp_path / "out"
    subset = sorted(good[::2] + list(bad)[:3])
    lst = tmp_path / "subset.txt"
    lst.write_text("# first half\n" + "\n".join(subset) + "\n")
    s1 = run(app_args(corpus, tiny_teacher, out, input_=lst))
    assert s1["counts"]["inputs"] == len(subset)
    s2 = run(app_args(corpus, tiny_teacher, out) + ["--incremental"])
    c = s2["counts"]
    assert (c["inputs"], c["unchanged"], c["changed"], c["removed"]) == (16 - len(subset),
                                                                         len(subset), 0, 0)
    assert c["inputs"] == c["ok"] + c["dead_lettered"]
    assert s2["totals"]["windows"] == 30 and s2["totals"]["recordings_ok"] == 10
    assert_same_output(reference[0], out)
    before = part_files(out)
    s3 = run(app_args(corpus, tiny_teacher, out) + ["--incremental"])  # idempotent, no work
    assert s3["counts"]["inputs"] == 0 and s3["timings_s"]["pipeline"] == 0.0
    assert part_files(out) == before and (out / "_SUCCESS").exists()


def test_interrupted_run_restarts_to_same_output(corpus, tiny_teacher, reference, tmp_path):
    """Partitions written, manifest not (the run died): the restart ends byte-identical."""
    root, good, bad = corpus
    out = tmp_path / "out"
    lst = tmp_path / "subset.txt"
    lst.write_text("\n".join(good[:4]) + "\n")
    run(app_args(corpus, tiny_teacher, out, input_=lst))
    # the full refresh got as far as one partition before dying: no manifest update, no _SUCCESS
    part = Path("frames") / frames_partition_dir(SENSORS[1], "2019-03-04") / "part-00000.parquet"
    shutil.copyfile(reference[0] / part, out / part)
    (out / "_SUCCESS").unlink()
    s = run(app_args(corpus, tiny_teacher, out) + ["--incremental"])
    assert s["counts"]["inputs"] == 12 and s["balanced"]
    assert_same_output(reference[0], out)


def test_incremental_change_add_remove(corpus, tiny_teacher, tmp_path):
    """Changed, new and removed recordings: partitions rebuilt, relevance recomputed, no
    duplicates, removals reported, and the result equals a one-shot run of the new corpus."""
    src, _, _ = corpus
    root = tmp_path / "c"
    shutil.copytree(src, root)
    c = (root, None, None)
    out = tmp_path / "out"
    run(app_args(c, tiny_teacher, out))
    old = pq.read_table(out / "frames", partitioning=None)
    changed = add_good(root, 2, seed=99)          # same name, new content
    removed = root / "upstream" / f"sensor_{SENSORS[1]}" / "2019-03-04" / f"{BASE + 600 * 5}.flac"
    removed.unlink()
    new = add_good(root, 11, ts=BASE + 86_400)     # sensor 2, next day: a new partition
    time.sleep(0.01)
    s = run(app_args(c, tiny_teacher, out) + ["--incremental"])
    k = s["counts"]
    assert (k["inputs"], k["changed"], k["new"], k["removed"]) == (2, 1, 1, 1)
    assert s["removed"] == [str(removed)] and s["balanced"]
    t = pq.read_table(out / "frames", partitioning=None)
    keys = list(zip(t.column("uri").to_pylist(), t.column("window_index").to_pylist()))
    assert len(keys) == len(set(keys)) == 30
    assert sorted(p.parent.name for p in (out / "frames").glob("*/*/part-00000.parquet")) == \
        ["day_key=2019-03-04", "day_key=2019-03-04", "day_key=2019-03-05"]
    assert str(removed) not in set(t.column("uri").to_pylist())
    assert str(new) in set(t.column("uri").to_pylist())
    ids = dict(zip(t.column("uri").to_pylist(), t.column("recording_id").to_pylist()))
    old_ids = dict(zip(old.column("uri").to_pylist(), old.column("recording_id").to_pylist()))
    assert ids[str(changed)] != old_ids[str(changed)]
    assert ids[str(changed)] == hashlib.sha256(changed.read_bytes()).hexdigest()
    one_shot = tmp_path / "one_shot"
    run(app_args(c, tiny_teacher, one_shot))
    assert_same_output(one_shot, out)
    with pytest.raises(ParameterError, match="other settings"):
        run(app_args(c, tiny_teacher, out) + ["--incremental", "--hop-seconds", "0.5"])


# --------------------------------------------------------------------------- CLI and options
def test_cli_options_and_runner_defaults(capsys):
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipelines.embed_config import config_from_options
    from pipelines.runners import select_runner
    from pipelines.job import cli

    assert cli.main(["pipeline", "embed", "--help"]) == 0
    assert "--incremental" in capsys.readouterr().out
    opts = PipelineOptions(["--input", "x/*.flac", "--output", "o", "--batch-size", "4",
                            "--direct_num_workers=2", "--teacher-opt", "seed=3",
                            "--teacher", "l3-random"])
    cfg = config_from_options(opts)
    assert (cfg.batch_size, cfg.teacher_options) == (4, (("seed", 3),))
    assert opts.view_as(DirectOptions).direct_num_workers == 2
    runner, label = select_runner(opts)
    # default local run: one worker thread per CPU (runners.DEFAULT_LOCAL_MODE); a given
    # --direct_num_workers is kept
    assert isinstance(runner, FnApiRunner)
    assert label == "FnApiRunner(multi_threading, workers=2)"
    assert select_runner(PipelineOptions([]))[1] == \
        f"FnApiRunner(multi_threading, workers={os.cpu_count()})"
    assert select_runner(PipelineOptions(["--direct_running_mode=in_memory"]))[1] == \
        "FnApiRunner(in_memory)"  # an explicit mode wins, even Beam's own default
    assert select_runner(PipelineOptions(["--direct_running_mode=multi_processing",
                                          "--direct_num_workers=3"]))[1] == \
        "FnApiRunner(multi_processing, workers=3)"
    assert isinstance(select_runner(PipelineOptions(["--runner=DirectRunner"]))[0], FnApiRunner)
    assert select_runner(PipelineOptions(["--runner=DaskRunner"]))[0].endswith("DaskRunner")
    with pytest.raises(ParameterError, match="--output"):
        config_from_options(PipelineOptions(["--input", "x"]))
    with pytest.raises(ParameterError, match="--require-sidecar"):
        config_from_options(PipelineOptions(["--input", "x", "--output", "o",
                                             "--require-sidecar"]))


# --------------------------------------------------------------------------- teacher precision
def test_teacher_precision_recorded_and_incremental_mix_refused(corpus, tiny_teacher, tmp_path):
    from pipelines.transforms.relevance import file_precision
    from pipelines.transforms.manifest import read_manifest

    src, _, _ = corpus
    root = tmp_path / "c"
    shutil.copytree(src, root)
    c = (root, None, None)
    out = tmp_path / "out"
    s = run(app_args(c, tiny_teacher, out) + ["--teacher-precision", "fp32"])
    assert (s["teacher_precision"], s["embed_config"]["teacher_precision"]) == ("fp32", "fp32")
    assert s["settings"]["teacher_precision"] == "fp32"
    parts = sorted((out / "frames").glob("*/*/part-00000.parquet"))
    assert parts and {file_precision(str(p)) for p in parts} == {"fp32"}
    bf = tmp_path / "bf16"
    s16 = run(app_args(c, tiny_teacher, bf) + ["--teacher-precision", "bf16"])
    assert s16["teacher_precision"] == "bf16" and s16["teacher_id"] == s["teacher_id"]
    t32 = pq.read_table(out / "frames", partitioning=None)
    t16 = pq.read_table(bf / "frames", partitioning=None)
    a = np.stack(t32.column("teacher_emb").to_numpy(zero_copy_only=False))
    b = np.stack(t16.column("teacher_emb").to_numpy(zero_copy_only=False))
    assert a.shape == b.shape and not np.array_equal(a, b)  # the bf16 path ran
    assert np.allclose(a, b, atol=0.05)

    new = add_good(root, 11, ts=BASE + 600 * 7 + 60)  # sensor 2, first day: existing partition
    with pytest.raises(ParameterError, match="teacher precision 'fp32'.*'bf16'.*"
                                             "--allow-mixed-precision"):
        run(app_args(c, tiny_teacher, out) + ["--incremental", "--teacher-precision", "bf16"])
    s2 = run(app_args(c, tiny_teacher, out) + ["--incremental", "--teacher-precision", "bf16",
                                               "--allow-mixed-precision"])
    assert s2["counts"]["inputs"] == 1 and s2["teacher_precision"] == "bf16"
    assert s2["teacher_precision_recorded"] == "bf16+fp32"
    assert read_manifest(str(out / "manifest.parquet"))[1]["teacher_precision"] == "bf16+fp32"
    t = pq.read_table(out / "frames", partitioning=None)
    key = t.filter(pa.compute.equal(t.column("uri"), str(new)))
    part = out / "frames" / frames_partition_dir(key.column("sensor")[0].as_py(),
                                                 key.column("day")[0].as_py()) / "part-00000.parquet"
    assert file_precision(str(part)) == "bf16+fp32"
    assert {file_precision(str(p)) for p in parts if p != part} == {"fp32"}
    # the mixed output keeps asking: a further bf16 refresh needs the flag again
    add_good(root, 12, ts=BASE + 600 * 8 + 60)
    with pytest.raises(ParameterError, match="teacher precision 'bf16\\+fp32'"):
        run(app_args(c, tiny_teacher, out) + ["--incremental", "--teacher-precision", "bf16"])
    with pytest.raises(ParameterError, match="--teacher-precision"):
        run(app_args(c, tiny_teacher, out) + ["--teacher-precision", "half"])


def test_tail_padding_quantum_only_when_rows_are_batch_invariant():
    from pipelines.transforms.teacher import batch_invariant, embed_fixed_batches
    from sea_core.models.teachers import get_teacher

    rng = np.random.default_rng(7)
    for precision in ("fp32", "bf16"):
        teacher = get_teacher("l3-random", seed=1, precision=precision)
        w = (0.1 * rng.standard_normal((13, teacher.spec.window_samples))).astype(np.float32)
        sizes = []
        embed = teacher.embed
        teacher.embed = lambda x, batch_size=None: (sizes.append((len(x), batch_size)),
                                                    embed(x, batch_size=batch_size))[1]
        padded = embed_fixed_batches(teacher, w, 8)
        short = embed_fixed_batches(teacher, w, 8, 2)
        # 13 windows: one full pass of 8, then the tail of 5 padded to 8 or to 6
        assert sizes == [(8, 8), (8, 8), (8, 8), (6, 6)]
        del teacher.embed
        if batch_invariant(teacher, 8, 2):
            np.testing.assert_array_equal(padded, short)
        else:  # the pipeline then pads to the full batch: nothing to compare
            assert not np.array_equal(embed_fixed_batches(teacher, w[:6], 6)[:5], padded[8:])
