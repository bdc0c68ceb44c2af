"""A hostile corpus through `sea pipeline embed` (issue 13): nothing lost, nothing aborted.

The fixture holds good recordings (one reached through a symlink) and one entry
of each kind of bad input a user or an operator meets: corrupt, empty, zero-byte,
truncated, too short, too long, NaN samples, a header declaring 1 Hz, too many
channels, a text file, a broken symlink, an unparsable name, a directory named
like a recording, and SPL sidecars with an absurd level (1e39), an implausible
one (5000 dBA), a negative one and an unparsable cell. The run must end with
exit 0, ``inputs == ok + dead_lettered`` and the listed (stage, kind, reason)
per file, on the default runner and on DaskRunner (a real LocalCluster).

The listing contract (also re-implemented by the Beam listing of issue 15) is
tested at the CLI level: exit status, one-line message, files untouched.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipelines.job.cli import main as sea_main
from tests.conftest import TINY_SR

ROOT = Path(__file__).resolve().parents[1]
SR = 48_000
TZ = ZoneInfo("America/New_York")
BASE = int(datetime(2019, 3, 4, 9, 0, tzinfo=TZ).timestamp())
SENSOR = "b827eb00000a"
TINY_TEACHER_UNITS = (16, 8)  # hidden units, output dim of the tiny_teacher fixture (conftest)
MAX_SECONDS = 5.0


def _path(up: Path, ts: int, ext: str = "flac") -> Path:
    day = datetime.fromtimestamp(ts, TZ).date().isoformat()
    p = up / f"sensor_{SENSOR}" / day / f"{ts}.{ext}"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _tone(i: int, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(i).standard_normal(t.size)
    return (0.05 * (i + 1) * np.sin(2 * np.pi * (220 + 40 * i) * t) + 0.01 * noise).astype(np.float32)


def _sidecar(up: Path, spl: Path, audio: Path, body: str) -> None:
    q = (spl / audio.relative_to(up)).with_suffix(".csv")
    q.parent.mkdir(parents=True, exist_ok=True)
    q.write_text("offset_s,dba\n" + body)


def make_hostile_corpus(root: Path) -> tuple[list[str], dict[str, tuple[str, str, str]]]:
    """-> (good uris, {bad uri: (stage, error_kind, substring of the message)})."""
    up, spl = root / "upstream", root / "spl"
    good: list[str] = []
    for i in range(4):
        p = _path(up, BASE + 600 * i)
        sf.write(p, _tone(i), SR, subtype="PCM_16", format="FLAC")
        _sidecar(up, spl, p, "0,55.0\n1,56.0\n")
        good.append(str(p))
    # a good recording reached through a symlink (a glob must follow it as a directory does)
    real = root / "elsewhere" / "real.flac"
    real.parent.mkdir(parents=True)
    sf.write(real, _tone(7), SR, subtype="PCM_16", format="FLAC")
    link = _path(up, BASE + 600 * 4)
    link.symlink_to(real)
    good.append(str(link))

    bad: dict[str, tuple[str, str, str]] = {}

    def add(ts_offset: int, ext: str, expected: tuple[str, str, str]) -> Path:
        p = _path(up, BASE + 10_000 + ts_offset, ext)
        bad[str(p)] = expected
        return p

    add(1, "flac", ("decode", "unreadable", "cannot decode")).write_bytes(
        np.random.default_rng(1).bytes(5000))                                 # random bytes
    sf.write(add(2, "wav", ("decode", "empty", "zero samples")), np.zeros(0, np.float32), SR,
             subtype="PCM_16")                                                # 0 samples
    add(3, "flac", ("decode", "unreadable", "0 bytes")).write_bytes(b"")    # zero-byte file
    full = root / "tmp_full.wav"
    sf.write(full, _tone(3), SR, subtype="PCM_16")
    add(4, "wav", ("decode", "unreadable", "truncated")).write_bytes(
        full.read_bytes()[:len(full.read_bytes()) // 2])                     # truncated WAV
    sf.write(add(5, "flac", ("frame", "too_short", "")), np.full(SR // 4, 0.1, np.float32), SR,
             subtype="PCM_16", format="FLAC")                                 # 0.25 s
    sf.write(add(6, "flac", ("decode", "too_long", "cap")),
             _tone(1, seconds=MAX_SECONDS + 1), SR, subtype="PCM_16", format="FLAC")
    y = _tone(2)
    y[123] = np.nan
    sf.write(add(7, "wav", ("decode", "non_finite", "not finite")), y, SR, subtype="FLOAT")
    # a 1.2-KB WAV whose header declares 1 Hz (would decode to 517 windows / 1.8 GB)
    sf.write(add(8, "wav", ("decode", "bad_sample_rate", "1 Hz")),
             np.random.default_rng(8).uniform(-0.5, 0.5, 600).astype(np.float32), 1,
             subtype="PCM_16")
    sf.write(add(9, "wav", ("decode", "channel_layout", "channels")),
             np.zeros((100, 65), np.float32), SR, subtype="PCM_16")           # 65 channels
    add(10, "wav", ("decode", "unreadable", "cannot decode")).write_text(
        "this is a text file, not audio\n" * 20)
    add(11, "flac", ("decode", "unreadable", "not found")).symlink_to(root / "gone.flac")
    p = up / f"sensor_{SENSOR}" / "2019-03-04" / "not-a-time.flac"
    sf.write(p, _tone(5), SR, subtype="PCM_16", format="FLAC")
    bad[str(p)] = ("list", "bad_name", "")
    d = add(12, "flac", ("list", "not_a_file", "directory"))                  # 1551710011.flac/
    d.mkdir()
    (d / "notes.txt").write_text("a directory named like a recording\n")
    for k, (body, why) in enumerate((("0,1e39\n1,50\n", "outside"),          # absurd level
                                     ("0,5000\n1,50\n", "outside"),           # implausible level
                                     ("0,-3\n1,50\n", "outside"),             # negative level
                                     ("0,abc\n1,50\n", "cannot parse"))):     # unparsable cell
        p = add(20 + k, "flac", ("spl", "sidecar", why))
        sf.write(p, _tone(k), SR, subtype="PCM_16", format="FLAC")
        _sidecar(up, spl, p, body)
    return good, bad


KINDS = {"unreadable", "empty", "too_short", "too_long", "non_finite", "bad_sample_rate",
         "channel_layout", "bad_name", "not_a_file", "sidecar"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    good, bad = make_hostile_corpus(root)
    return root, good, bad


def embed_args(root: Path, teacher: Path, out: Path, input_: str | None = None) -> list[str]:
    return ["pipeline", "embed", "--input", input_ or f"{root}/upstream/*/*/*",
            "--output", str(out), "--teacher", str(teacher), "--teacher-opt", "frontend=none",
            "--teacher-opt", f"sample_rate={TINY_SR}", "--hop-seconds", "1.0",
            "--batch-size", "8", "--shard-size", "4", "--spl-sidecar", str(root / "spl"),
            "--max-seconds", str(MAX_SECONDS)]


def check_hostile_output(out: Path, good: list[str], bad: dict) -> dict:
    s = json.loads((out / "run_summary.json").read_text())
    c = s["counts"]
    assert (c["inputs"], c["ok"], c["dead_lettered"]) == (len(good) + len(bad), len(good), len(bad))
    assert c["inputs"] == c["ok"] + c["dead_lettered"] and s["balanced"]
    assert s["status"] == "finished" and (out / "_SUCCESS").exists()
    rows = {r["uri"]: r for r in pq.read_table(out / "dead_letter" / "part-00000.parquet").to_pylist()}
    assert set(rows) == set(bad)
    for uri, (stage, kind, why) in bad.items():
        r = rows[uri]
        assert (r["stage"], r["error_kind"]) == (stage, kind), (uri, r)
        assert why in r["message"], (uri, r["message"])
    frames = pq.read_table(out / "frames", partitioning=None)
    assert set(frames.column("uri").to_pylist()) == set(good)
    assert np.isfinite(frames.column("spl_dba").to_numpy()).all()
    assert np.isfinite(frames.column("relevance").to_numpy()).all()
    return s


def test_hostile_corpus_has_every_kind(hostile):
    _, good, bad = hostile
    assert len(bad) >= 12 and {k for _, k, _ in bad.values()} == KINDS
    assert any(os.path.islink(g) for g in good)


def test_hostile_corpus_default_runner(hostile, tiny_teacher, tmp_path, capsys):
    root, good, bad = hostile
    out = tmp_path / "out"
    assert sea_main(embed_args(root, tiny_teacher, out)) == 0
    assert f"{len(good) + len(bad)} inputs: {len(good)} ok, {len(bad)} dead-lettered" in \
        capsys.readouterr().out
    s = check_hostile_output(out, good, bad)
    assert s["counts"]["by_stage"]["spl"] == 4  # every bad sidecar: that recording only


@pytest.fixture
def dask_cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


@pytest.mark.dask
def test_hostile_corpus_dask_runner(hostile, tiny_teacher, tmp_path, dask_cluster):
    root, good, bad = hostile
    out = tmp_path / "out"
    rc = sea_main(embed_args(root, tiny_teacher, out)
                  + ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                     f"--dask_client_address={dask_cluster}", "--dask_npartitions=3"])
    assert rc == 0
    s = check_hostile_output(out, good, bad)
    assert "Dask" in s["runner"]


# --------------------------------------------------------------------------- listing (CLI level)
def _tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_output(tmp_path_factory, tiny_teacher):
    """A finished output of 12 good recordings (for the removal guard)."""
    root = tmp_path_factory.mktemp("small")
    up = root / "upstream"
    for i in range(12):
        sf.write(_path(up, BASE + 600 * i), _tone(i, seconds=1.5), SR, subtype="PCM_16",
                 format="FLAC")
    out = root / "out"
    args = ["pipeline", "embed", "--input", str(up), "--output", str(out), "--teacher",
            str(tiny_teacher), "--teacher-opt", "frontend=none", "--teacher-opt",
            f"sample_rate={TINY_SR}", "--hop-seconds", "1.0"]
    assert sea_main(args) == 0
    return root, out, args


def test_mistyped_glob_is_an_error_and_touches_nothing(small_output, tmp_path, capsys):
    root, out, args = small_output
    before = _tree(out)
    typo = f"{root}/upstreem/**/*.flac"
    a = list(args)
    a[a.index("--input") + 1] = typo
    for extra in (["--incremental"], []):
        capsys.readouterr()
        assert sea_main(a + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"no input matches {typo}" in err[0]
        assert _tree(out) == before  # nothing removed, nothing (not even _SUCCESS) rewritten
    # into a new output: nothing is created either
    fresh = tmp_path / "fresh"
    b = list(a)
    b[b.index("--output") + 1] = str(fresh)
    assert sea_main(b) == 2 and not fresh.exists()


def test_missing_input_path_is_an_error(small_output, tmp_path, capsys):
    root, out, args = small_output
    missing = tmp_path / "no_such_dir"
    a = list(args)
    a[a.index("--input") + 1] = str(missing)
    a[a.index("--output") + 1] = str(tmp_path / "o")
    assert sea_main(a) == 2
    err = capsys.readouterr().err
    assert f"input not found: {missing}" in err and "bad_name" not in err
    assert not (tmp_path / "o").exists()


def test_incremental_removal_guard(small_output, tmp_path, capsys):
    import shutil

    root, out0, args = small_output
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    up = root / "upstream"
    files = sorted(str(p) for p in up.rglob("*.flac"))
    lst = tmp_path / "subset.txt"
    a = list(args)
    a[a.index("--output") + 1] = str(out)
    a[a.index("--input") + 1] = str(lst)
    # 1 of 12 removed (8 %): allowed
    lst.write_text("\n".join(files[1:]) + "\n")
    assert sea_main(a + ["--incremental"]) == 0
    s = json.loads((out / "run_summary.json").read_text())
    assert s["counts"]["removed"] == 1 and s["balanced"]
    # 3 more of 11 (27 %): refused, nothing touched
    before = _tree(out)
    lst.write_text("\n".join(files[4:]) + "\n")
    capsys.readouterr()
    assert sea_main(a + ["--incremental"]) == 2
    err = capsys.readouterr().err
    assert "would remove 3 of the 11 recordings" in err and "--allow-removals" in err
    assert _tree(out) == before
    # explicitly allowed
    assert sea_main(a + ["--incremental", "--allow-removals"]) == 0
    s = json.loads((out / "run_summary.json").read_text())
    assert s["counts"]["removed"] == 3 and s["totals"]["recordings_ok"] == 8


def test_scheduled_refresh_keeps_the_removal_guard():
    """The scheduled refresh runs `sea pipeline embed --incremental` without --allow-removals,
    so the same guard (exit 2, output untouched) stops a refresh whose listing came back empty."""
    sys.path.insert(0, str(ROOT / "infra" / "schedule"))
    try:
        import schedule as sched
    finally:
        sys.path.pop(0)
    s = sched.load_schedule()
    argv = sched.render(s, "2026-01-05")
    embed = [a for a in argv.values() if "embed" in a and "--incremental" in a]
    assert embed, argv
    assert all("--allow-removals" not in a for a in embed)


def test_glob_follows_symlinks_like_a_directory(hostile):
    from pipelines.transforms.list_inputs import list_inputs

    root, good, _ = hostile
    link = next(g for g in good if os.path.islink(g))
    by_glob = {f.uri: f for f in list_inputs(f"{root}/upstream/**/*.flac")}
    by_dir = {f.uri: f for f in list_inputs(str(root / "upstream"))}
    assert link in by_glob and link in by_dir
    flac = {u for u in by_dir if u.endswith(".flac")}
    assert set(by_glob) == flac
    assert by_glob[link].size == os.path.getsize(os.path.realpath(link)) > 0


# --------------------------------------------------------------------------- leftovers after a kill
def test_temp_files_cleaned_and_summary_replaced_after_a_kill(small_output, tmp_path):
    import shutil

    root, out0, args = small_output
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    old = json.loads((out / "run_summary.json").read_text())
    assert old["balanced"]
    # a 0-byte temp file that a writer killed mid-write leaves beside a partition
    part = next((out / "frames").rglob("part-00000.parquet"))
    stale = part.with_name(f".{part.name}.tmp-0123abcd")
    stale.write_bytes(b"")
    with pytest.raises(Exception):  # what a reader that does not skip hidden files meets
        pads.dataset(out / "frames", format="parquet", ignore_prefixes=[]).to_table()
    # a real SIGKILL of a rerun as soon as it has planned
    a = list(args)
    a[a.index("--output") + 1] = str(out)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *a], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = out / "run_summary.json"
    deadline = time.time() + 120
    seen = None
    while time.time() < deadline and proc.poll() is None:
        try:
            doc = json.loads(summary.read_text())
        except (OSError, ValueError):
            doc = None
        if doc and doc.get("run_id") != old["run_id"]:
            seen = doc
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert seen is not None, "the rerun never wrote its own summary"
    assert proc.returncode == -signal.SIGKILL, "the rerun ended before it could be killed"
    left = json.loads(summary.read_text())
    assert left["run_id"] != old["run_id"] and not left["balanced"]  # not the stale 'balanced'
    assert not (out / "_SUCCESS").exists()
    # the next run removes the temp file and ends readable by any reader
    assert sea_main(a) == 0
    assert not stale.exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    t = pads.dataset(out / "frames", format="parquet", ignore_prefixes=[]).to_table()
    assert t.num_rows > 0
    assert json.loads(summary.read_text())["balanced"]


# --------------------------------------------------------------------------- decode / sidecar units
def test_decoded_size_checked_before_decoding(tmp_path):
    from sea_core.audio.io import decode_bytes
    from sea_core.errors import AudioTooLongError, SampleRateError

    p = tmp_path / "one_hz.wav"
    sf.write(p, np.zeros(600, np.float32), 1, subtype="PCM_16")
    assert p.stat().st_size < 1300
    with pytest.raises(SampleRateError, match="1 Hz is below the 8000-Hz floor"):
        decode_bytes(p.read_bytes(), str(p), min_sample_rate=8000)
    q = tmp_path / "long.flac"
    sf.write(q, np.zeros(8000 * 12, np.float32), 8000, subtype="PCM_16", format="FLAC")
    with pytest.raises(AudioTooLongError, match="12.0 s declared"):
        decode_bytes(q.read_bytes(), str(q), max_seconds=10)
    audio, sr = decode_bytes(q.read_bytes(), str(q), max_seconds=12)
    assert (audio.size, sr) == (96000, 8000)


def test_sidecar_levels_out_of_range_name_file_and_row(tmp_path):
    from sea_core.audio.spl import read_spl_sidecar
    from sea_core.errors import SidecarError

    for body, row in (("0,50\n1,1e39\n", 1), ("0,5000\n", 0), ("0,50\n1,60\n2,-1\n", 2)):
        p = tmp_path / "s.csv"
        p.write_text("offset_s,dba\n" + body)
        with pytest.raises(SidecarError, match=f"outside \\[0, 194\\] dBA \\(first at data row {row}"):
            read_spl_sidecar(str(p))
    p.write_text("offset_s,dba\n0,0\n1,194\n")
    assert read_spl_sidecar(str(p))[1].tolist() == [0.0, 194.0]
