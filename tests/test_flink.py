"""The Beam pipelines on Apache Flink for real, through Beam's FlinkRunner.

``sea pipeline embed`` -> ``select`` -> ``fit-pca`` -> ``build-training-set`` run on a
small ``sea synth`` corpus (plus one corrupt, one too-short and one badly named file, so
dead letters come from the listing, the decoder and the framer) twice: on the default
in-process runner and with ``--runner=FlinkRunner --flink_master=[local]`` (the Beam Flink
job server's embedded Flink mini-cluster, Python SDK workers in LOOPBACK, parallelism 2).
Every Parquet file (frames, dead letters, selection, training shards) and the PCA arrays
must be byte-identical, and the counts, Beam metrics counters and manifests equal.

The job-server jar comes from ``infra/flink/get_job_server.sh`` (Maven, cached under
``~/.cache/sea/flink``); the tests skip, with the reason, only when Java is missing or no
jar can be fetched. ``test_flink_session_cluster`` (also ``slow``) repeats the run against
a standalone Flink session cluster (JobManager + TaskManager started from the jars of the
``apache-flink-libraries`` PyPI package by ``infra/flink/local_cluster.sh``, bound to
127.0.0.1) with ``--flink_master=localhost:<rest port>``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from benchmarks.synthetic import run_chain as run_chain_stages

pytestmark = pytest.mark.flink

ROOT = Path(__file__).resolve().parents[1]
FLINK_INFRA = ROOT / "infra" / "flink"
JAR_NAME = re.compile(r"beam-runners-flink-(\d+\.\d+)-job-server-(\d+\.\d+\.\d+)")
DIMS = (32, 8)
EXIT_NOT_AVAILABLE = 3  # get_job_server.sh / local_cluster.sh: the thing cannot be had here


def _script_env() -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def job_server_jar() -> Path:
    """The Beam Flink job-server jar (fetched with Maven on first use, then cached)."""
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: the Beam Flink job server is a Java program "
                    "(apt-get install openjdk-17-jre-headless)")
    proc = subprocess.run(["bash", str(FLINK_INFRA / "get_job_server.sh")], env=_script_env(),
                          capture_output=True, text=True, timeout=850)
    if proc.returncode == EXIT_NOT_AVAILABLE:
        pytest.skip("no Beam Flink job-server jar could be fetched with Maven: "
                    + proc.stderr.strip().replace("\n", "; ")[-600:])
    assert proc.returncode == 0, proc.stderr
    jar = Path(proc.stdout.strip().splitlines()[-1])
    assert jar.is_file() and JAR_NAME.search(jar.name), jar
    return jar


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flink_args(jar: Path, java_tmp: Path, master: str = "[local]") -> list[str]:
    """FlinkRunner flags; the job server's JVM temp files (Flink's RPC jar) go to java_tmp."""
    flink_minor = JAR_NAME.search(jar.name).group(1)
    return ["--runner=FlinkRunner", f"--flink_master={master}", f"--flink_version={flink_minor}",
            f"--flink_job_server_jar={jar}", "--environment_type=LOOPBACK", "--parallelism=2",
            f"--job_server_jvm_property=-Djava.io.tmpdir={java_tmp}"]


# --------------------------------------------------------------------------- corpus
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """24 synthetic 10-s clips with SPL sidecars + 3 bad files (uri -> expected failure kind)."""
    from sea_core.params import SYNTH
    from sea_core.synth import synthesize

    root = tmp_path_factory.mktemp("flink_corpus")
    synthesize(root, replace(SYNTH, sensors=3, days=2, clips_per_day=4, labelled_clips=0))
    clips = sorted((root / "upstream").rglob("*.flac"))
    assert len(clips) == 24
    first = clips[0]
    bad = {}
    corrupt = first.with_name(f"{int(first.stem) + 1}.flac")
    corrupt.write_bytes(np.random.default_rng(19).bytes(6000))
    bad[str(corrupt)] = "unreadable"
    short = first.with_name(f"{int(first.stem) + 2}.flac")
    sf.write(short, np.full(4000, 0.05, np.float32), 48_000, subtype="PCM_16", format="FLAC")
    bad[str(short)] = "too_short"
    badly_named = first.with_name("not-a-time.flac")
    shutil.copyfile(first, badly_named)
    bad[str(badly_named)] = "bad_name"
    return root, bad


def sea(*argv: str) -> None:
    from pipelines.job.cli import main

    rc = main(list(argv))
    assert rc == 0, f"sea {' '.join(argv)} exited {rc}"


def run_chain(corpus: Path, out: Path, beam_args: list[str]) -> dict[str, float]:
    """embed -> select -> fit-pca (default runner: its bytes are compared) -> build-training-set;
    wall seconds per stage."""
    t0 = time.perf_counter()
    sea("pipeline", "embed", "--input", str(corpus / "upstream"), "--output", str(out / "embed"),
        "--teacher", "aisfx", "--spl-sidecar", str(corpus / "spl"), *beam_args)
    seconds = {"embed": round(time.perf_counter() - t0, 2)}
    seconds |= run_chain_stages(str(out / "embed"), str(out), fraction=0.3, dims=DIMS,
                                beam_args=beam_args, local_fit_pca=True)
    return seconds | {"total": round(time.perf_counter() - t0, 2)}


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """The chain on the default runner (Beam's in-process FnApiRunner)."""
    out = tmp_path_factory.mktemp("flink_ref") / "default"
    return out, run_chain(corpus[0], out, [])


# --------------------------------------------------------------------------- comparison
DATA_FILES = ("embed/frames/**/*.parquet", "embed/dead_letter/*.parquet",
              "selection/selection.parquet/*.parquet", "pca/reduction.npz", "trainset/*/*.parquet")


def data_files(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for pattern in DATA_FILES for p in sorted(out.glob(pattern))}


def assert_same_results(ref: Path, out: Path, corpus) -> None:
    root, bad = corpus
    a, b = data_files(ref), data_files(out)
    assert sorted(a) == sorted(b)
    assert sum(k.startswith("embed/frames/") for k in a) == 6  # 3 sensors x 2 days
    assert sum(k.startswith("trainset/") for k in a) == 6
    for name in a:
        if name.endswith(".parquet"):
            assert pq.read_table(a[name]).equals(pq.read_table(b[name]), check_metadata=True), name
        assert a[name].read_bytes() == b[name].read_bytes(), f"{name} differs"

    s_ref = json.loads((ref / "embed" / "run_summary.json").read_text())
    s_out = json.loads((out / "embed" / "run_summary.json").read_text())
    assert s_out["runner"] == "FlinkRunner" and s_out["balanced"]
    assert s_out["counts"] == s_ref["counts"]
    c = s_out["counts"]
    assert (c["inputs"], c["ok"], c["dead_lettered"]) == (27, 24, 3)
    assert c["by_failure_kind"] == {k: 1 for k in bad.values()}
    counters = {k: v for k, v in s_ref["metrics"].items() if not isinstance(v, dict)}
    assert counters["windows"] == c["windows"] > 0
    assert {k: s_out["metrics"].get(k) for k in counters} == counters  # Beam metrics from Flink
    dl = pq.read_table(out / "embed" / "dead_letter" / "part-00000.parquet").to_pylist()
    assert {r["uri"]: r["error_kind"] for r in dl} == bad
    assert {bad[r["uri"]]: r["stage"] for r in dl} == {"unreadable": "decode", "too_short": "frame",
                                                       "bad_name": "list"}
    man = [pq.read_table(d / "embed" / "manifest.parquet").drop_columns(["run_id"]) for d in (ref, out)]
    assert man[0].equals(man[1])

    sel = [json.loads((d / "selection" / "selection.json").read_text()) for d in (ref, out)]
    for key in ("windows", "n_selected", "total_requested", "groups", "logdet"):
        assert sel[0][key] == sel[1][key], key
    card = [json.loads((d / "trainset" / "dataset_card.json").read_text()) for d in (ref, out)]
    assert card[0]["counts"] == card[1]["counts"]
    assert sum(card[1]["counts"][s] for s in ("train", "validate", "test")) == c["windows"]


def _report(label: str, ref: dict, got: dict) -> None:
    ratio = got["total"] / ref["total"]
    print(f"\n[flink] wall seconds, default runner: {ref}\n[flink] wall seconds, {label}: {got}"
          f"\n[flink] ratio {label} / default (total): {ratio:.2f}")


# --------------------------------------------------------------------------- tests
def test_get_job_server_is_cached(job_server_jar):
    """A second call prints the same jar at once, without Maven."""
    env = _script_env() | {"MVN": "/nonexistent/mvn"}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(FLINK_INFRA / "get_job_server.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == job_server_jar
    assert time.perf_counter() - t0 < 30


def test_flink_local_equals_default_runner(corpus, reference, job_server_jar, tmp_path):
    out = tmp_path / "flink"
    timings = run_chain(corpus[0], out, flink_args(job_server_jar, tmp_path))
    assert_same_results(reference[0], out, corpus)
    _report("FlinkRunner [local]", reference[1], timings)


@pytest.fixture(scope="module")
def session_cluster(job_server_jar, tmp_path_factory):
    """A standalone Flink session cluster (JobManager + TaskManager JVMs) on 127.0.0.1."""
    flink_minor = JAR_NAME.search(job_server_jar.name).group(1)
    state = tmp_path_factory.mktemp("flink_cluster")
    env = _script_env() | {"FLINK_MINOR": flink_minor, "CLUSTER_DIR": str(state),
                           "REST_PORT": str(_free_port()), "RPC_PORT": str(_free_port())}
    script = str(FLINK_INFRA / "local_cluster.sh")
    proc = subprocess.run(["bash", script, "start"], env=env, capture_output=True, text=True,
                          timeout=850)
    try:
        if proc.returncode == EXIT_NOT_AVAILABLE:
            pytest.skip("no Flink session cluster could be started here: "
                        + proc.stderr.strip().replace("\n", "; ")[-600:])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield proc.stdout.strip().splitlines()[-1]  # host:port of the REST endpoint
    finally:
        stop = subprocess.run(["bash", script, "stop"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert stop.returncode == 0, stop.stderr


@pytest.mark.slow
def test_flink_session_cluster(corpus, reference, job_server_jar, session_cluster, tmp_path):
    out = tmp_path / "flink_cluster"
    timings = run_chain(corpus[0], out, flink_args(job_server_jar, tmp_path, master=session_cluster))
    assert_same_results(reference[0], out, corpus)
    _report(f"FlinkRunner session cluster {session_cluster}", reference[1], timings)
