"""The --incremental plan as a Beam join equals the launcher-side reference plan (``plan_run``).

A corpus of real (tiny) files and a previous manifest with new, changed, unchanged
and removed recordings, dead letters, an unparseable name and frames partitions on
disk that the manifest does not know: the plan job (Beam's FnApiRunner, real
Parquet in a staging directory) must decide exactly what ``plan_run`` decides -
counts, the files to process, the partitions to rebuild and the rows each keeps -
and the launcher reads only ``counts.json`` back. The second test runs a real
incremental refresh on DaskRunner (LocalCluster, 2 worker processes) against
moto's S3 server and checks it equals a one-shot run of the new corpus.
"""
from __future__ import annotations

import os
import shutil
import time

import pyarrow.parquet as pq
import pytest

from pipelines.transforms.diff import COUNTS_NAME, run_plan_job
from pipelines.transforms.list_inputs import _read_units, _row_groups, list_inputs
from pipelines.transforms.manifest import (ManifestRow, manifest_footer, plan_run, read_manifest,
                                           write_manifest)
from pipelines.transforms.records import DEAD_LETTER_KEY, InputFile, Touch, frames_key
from pipelines.transforms.write import OutputLayout

try:  # moto's in-process S3 server (the fixture of tests/test_object_store.py)
    from tests.test_object_store import s3  # noqa: F401
except pytest.skip.Exception as exc:
    _NO_S3 = str(exc)

    @pytest.fixture()
    def s3():
        pytest.skip(_NO_S3)

SENSORS = ("s1", "s2", "s3")
DAYS = ("2019-03-04", "2019-03-05", "2019-03-06")


def _ts(day: str, i: int) -> int:
    base = {"2019-03-04": 1551718800, "2019-03-05": 1551805200, "2019-03-06": 1551891600}[day]
    return base + 60 * i  # 12:00 UTC + i minutes: the same local (New York) day


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


@pytest.fixture()
def scenario(tmp_path):
    """(input dir, output dir, previous manifest rows) after adds, changes and removals."""
    up = tmp_path / "upstream"
    files = []
    for s in SENSORS:
        for d in DAYS:
            for i in range(12):
                p = str(up / f"sensor_{s}" / d / f"{_ts(d, i)}.flac")
                _write(p, bytes(10 + i))
                files.append(p)
    odd = str(up / f"sensor_{SENSORS[0]}" / DAYS[0] / "not-a-time.flac")
    _write(odd, b"x" * 7)
    files.append(odd)
    listed_before = {f.uri: f for f in list_inputs(str(up))}
    # the previous run: every 5th recording dead, the rest ok in its partition
    rows = {}
    for n, (uri, f) in enumerate(sorted(listed_before.items())):
        parts = uri.split("/")
        sensor, day = parts[-3][len("sensor_"):], parts[-2]
        dead = n % 5 == 0 or uri == odd
        rows[uri] = ManifestRow(uri=uri, size=f.size, version=f.version,
                                content_hash=None if dead else f"h{n}", run_id="r0",
                                status="dead" if dead else "ok", sensor=None if dead else sensor,
                                day=None if dead else day, windows=0 if dead else 2)
    out = tmp_path / "out"
    write_manifest(str(out / "manifest.parquet"), rows, {"teacher_id": "t"}, n_shards=3)
    # a frames partition the manifest does not know (an interrupted run) and a known one on disk
    layout = OutputLayout(root=str(out), emb_dim=4, student_samples=8)
    for key in (frames_key("s9", "2019-03-07"), frames_key(SENSORS[1], DAYS[1])):
        _write(layout.path(key), b"not read by the plan")
    # changes: 4 rewritten with another size, 5 removed (one dead), 6 new (one a new partition)
    time.sleep(0.01)
    for p in files[3:7]:
        _write(p, b"changed" * 3)
    for p in files[20:24] + [files[25]]:
        os.unlink(p)
    for i in range(5):
        _write(str(up / f"sensor_{SENSORS[2]}" / DAYS[2] / f"{_ts(DAYS[2], 100 + i)}.flac"), b"n" * 5)
    _write(str(up / "sensor_s4" / DAYS[0] / f"{_ts(DAYS[0], 1)}.flac"), b"new sensor")
    return up, out, rows, layout


def _staged(url: str) -> tuple[list[InputFile], dict[tuple, frozenset]]:
    files, touches = [], {}
    for part in _row_groups(url):
        for unit in _read_units(part):
            for item in unit:
                if isinstance(item, Touch):
                    assert tuple(item.key) not in touches
                    touches[tuple(item.key)] = item.keep_uris
                else:
                    files.append(item)
    return files, touches


@pytest.mark.parametrize("incremental", [True, False])
def test_plan_job_equals_the_launcher_plan(scenario, tmp_path, incremental):
    up, out, rows, layout = scenario
    manifest = str(out / "manifest.parquet")
    files_, n_rows, settings = manifest_footer(manifest)
    assert len(files_) == 3 and n_rows == len(rows) and settings == {"teacher_id": "t"}
    previous, _ = read_manifest(manifest)
    assert previous == rows
    listed = list_inputs(str(up))
    ref = plan_run(listed, previous, incremental=incremental,
                   keys_on_disk=layout.frames_keys_on_disk())
    staging = str(tmp_path / f"staging-{incremental}")
    got = run_plan_job(str(up), manifest_url=manifest, manifest_rows=n_rows, layout_root=str(out),
                       staging=staging, incremental=incremental, shard_size=4, settings=settings)
    c = got.counts
    # the launcher got counts only; the scenario exercises every branch
    assert set(os.listdir(staging)) == {COUNTS_NAME, "units"} | ({"keep"} if incremental else set())
    assert (c["listed"], c["previous"], c["process"]) == (len(listed), len(rows), len(ref.process))
    assert (c["changed"], c["unchanged"], c["removed"]) == (len(ref.changed), len(ref.unchanged),
                                                            len(ref.removed))
    assert c["new"] == len(ref.process) - len(ref.changed) and c["touches"] == len(ref.touches)
    assert got.removed == ref.removed and got.incremental == incremental
    if incremental:
        assert (c["changed"], c["removed"], c["new"]) == (4, 5, 6)
    files, touches = _staged(got.units_url)
    assert sorted(files, key=lambda f: f.uri) == ref.process
    assert touches == {tuple(t.key): t.keep_uris for t in ref.touches}
    assert frames_key("s9", "2019-03-07") in touches and DEAD_LETTER_KEY in touches
    assert (frames_key(SENSORS[1], DAYS[1]) in touches) == (not incremental)
    if incremental:
        assert touches[DEAD_LETTER_KEY] and all(touches[k] for k in touches
                                                if k[1] in SENSORS[:2] and k[2] == DAYS[0])
        kept = pq.read_table(got.keep_url).to_pylist()
        assert sorted(r["uri"] for r in kept) == sorted(ref.unchanged)
        assert all(ManifestRow(**r) == rows[r["uri"]] for r in kept)
    # units hold at most shard_size files each
    for part in _row_groups(got.units_url):
        for unit in _read_units(part):
            assert len([i for i in unit if isinstance(i, InputFile)]) <= 4
    got.cleanup()
    assert not os.path.exists(staging)


def test_plan_job_no_manifest_and_nothing_listed(tmp_path):
    up = tmp_path / "up"
    _write(str(up / "sensor_a" / DAYS[0] / f"{_ts(DAYS[0], 0)}.flac"), b"abc")
    got = run_plan_job(str(up), manifest_url=None, manifest_rows=0, layout_root=str(tmp_path / "o"),
                       staging=str(tmp_path / "st"), incremental=True, shard_size=2, settings=None)
    assert not got.incremental and (got.counts["listed"], got.counts["process"]) == (1, 1)
    assert got.counts["touches"] == 2  # its partition + the dead letters
    empty = tmp_path / "empty"
    empty.mkdir()
    none = run_plan_job(str(empty), manifest_url=None, manifest_rows=0, layout_root=str(tmp_path / "o"),
                        staging=str(tmp_path / "st2"), incremental=False, shard_size=2, settings=None)
    assert none.counts["listed"] == 0  # the caller raises "no input matches"


def test_incomplete_manifest_counts_as_absent(scenario, caplog):
    _, out, rows, _ = scenario
    manifest = out / "manifest.parquet"
    assert manifest_footer(str(manifest))[1] == len(rows)
    victim = sorted(manifest.iterdir())[1]
    victim.unlink()
    assert manifest_footer(str(manifest)) is None and "incomplete manifest" in caplog.text
    assert read_manifest(str(manifest)) == ({}, None)
    shutil.rmtree(manifest)
    assert manifest_footer(str(manifest)) is None


# --------------------------------------------------------------------------- DaskRunner + S3
@pytest.mark.dask
@pytest.mark.slow
def test_incremental_refresh_on_dask_and_s3_equals_one_shot(s3, tmp_path_factory,  # noqa: F811
                                                           tiny_teacher):  # noqa: F811
    """Full run, then change / add / remove recordings, then --incremental on DaskRunner with
    the output on S3: counts as expected and frames equal to a one-shot run of the new corpus."""
    distributed = pytest.importorskip("distributed", reason="needs the dask extra")
    import fsspec

    from pipelines.embed_corpus import parse_args, run
    from tests.test_embed_pipeline import BASE, SENSORS as EMB_SENSORS, add_good, app_args
    from tests.test_object_store import BUCKET, _frames

    fs, _ = s3
    root = tmp_path_factory.mktemp("inc_corpus")
    for i in range(6):
        add_good(root, i)
    c = (root, None, None)
    out = f"s3://{BUCKET}/inc/out"
    t_first = time.perf_counter()
    s1 = run(*parse_args(app_args(c, tiny_teacher, out)))               # the first run: in-process
    t_first = time.perf_counter() - t_first
    assert s1["counts"]["inputs"] == 6 and s1["balanced"]
    changed = add_good(root, 2, seed=99)
    removed = root / "upstream" / f"sensor_{EMB_SENSORS[1]}" / "2019-03-04" / f"{BASE + 600 * 5}.flac"
    removed.unlink()
    new = add_good(root, 7, ts=BASE + 86_400)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        t0 = time.perf_counter()
        s = run(*parse_args(app_args(c, tiny_teacher, out) + [
            "--incremental", "--allow-removals", "--runner=DaskRunner",
            f"--dask_client_address={cluster.scheduler_address}"]))
        took = time.perf_counter() - t0
    k = s["counts"]
    assert (k["inputs"], k["changed"], k["new"], k["removed"], k["unchanged"]) == (2, 1, 1, 1, 4)
    assert s["balanced"] and s["removed"] == [str(removed)] and "Dask" in s["runner"]
    assert fs.exists(f"{BUCKET}/inc/out/_SUCCESS") and not fs.exists(f"{BUCKET}/inc/out/_staging")
    man = read_manifest(f"{out}/manifest.parquet")[0]
    assert sorted(man) == sorted(p for p in map(str, (root / "upstream").rglob("*.flac")))
    assert str(new) in man and man[str(changed)].run_id == s["run_id"]
    fsspec.core.url_to_fs(out)[0].invalidate_cache()  # the refresh rewrote frames files
    one_shot = tmp_path_factory.mktemp("inc_ref") / "out"
    run(*parse_args(app_args(c, tiny_teacher, one_shot)))
    assert _frames(out).equals(_frames(one_shot))
    print(f"first run (in-process) {t_first:.1f} s; incremental refresh on DaskRunner + S3: "
          f"{took:.1f} s; timings {s['timings_s']}")
