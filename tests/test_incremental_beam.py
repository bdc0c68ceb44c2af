"""The --incremental plan as a Beam join equals the launcher-side reference plan (``plan_run``).

A corpus of real (tiny) files and a previous manifest with new, changed, unchanged
and removed recordings, dead letters, an unparseable name and frames partitions on
disk that the manifest does not know: the plan job (Beam's FnApiRunner, real
Parquet in a staging directory) and its in-process evaluation (the default
runner's path) must decide exactly what ``plan_run`` decides - counts, the files
to process, the partitions to rebuild and the rows each keeps - and the launcher
reads only ``counts.json`` back. The two paths stage the same files, and the two
finalize paths write byte-identical manifest shards over an output written for
that plan; an embed run + refresh gives the same output on either path. The last
test runs a real incremental refresh on DaskRunner (LocalCluster, 2 worker
processes) against moto's S3 server and checks it equals a one-shot run of the
new corpus.
"""
from __future__ import annotations

import os
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.transforms.diff import COUNTS_NAME, run_plan_in_process, run_plan_job
from pipelines.transforms.finalize import (MANIFEST_STAGING, run_finalize_in_process,
                                           run_finalize_job)
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

PLAN = {"beam": run_plan_job, "in_process": run_plan_in_process}
"""The plan job and its in-process evaluation (the default runner's path)."""
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


@pytest.mark.parametrize("path", sorted(PLAN))
@pytest.mark.parametrize("incremental", [True, False])
def test_plan_job_equals_the_launcher_plan(scenario, tmp_path, incremental, path):
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
    got = PLAN[path](str(up), manifest_url=manifest, manifest_rows=n_rows, layout_root=str(out),
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


@pytest.mark.parametrize("path", sorted(PLAN))
def test_plan_job_no_manifest_and_nothing_listed(tmp_path, path):
    up = tmp_path / "up"
    _write(str(up / "sensor_a" / DAYS[0] / f"{_ts(DAYS[0], 0)}.flac"), b"abc")
    got = PLAN[path](str(up), manifest_url=None, manifest_rows=0, layout_root=str(tmp_path / "o"),
                     staging=str(tmp_path / "st"), incremental=True, shard_size=2, settings=None)
    assert not got.incremental and (got.counts["listed"], got.counts["process"]) == (1, 1)
    assert got.counts["touches"] == 2  # its partition + the dead letters
    empty = tmp_path / "empty"
    empty.mkdir()
    none = PLAN[path](str(empty), manifest_url=None, manifest_rows=0,
                      layout_root=str(tmp_path / "o"), staging=str(tmp_path / "st2"),
                      incremental=False, shard_size=2, settings=None)
    assert none.counts["listed"] == 0  # the caller raises "no input matches"


def _units(url: str) -> list[tuple]:
    """Every staged work unit (its items in order), sorted."""
    return sorted((tuple(u) for part in _row_groups(url) for u in _read_units(part)), key=repr)


def _keep_table(url: str) -> pa.Table | None:
    if not os.path.isdir(url):
        return None
    return pq.read_table(url).sort_by("uri")


def _write_output(plan, layout: OutputLayout) -> tuple[str, str]:
    """The embed job's output for ``plan``, written by hand: every rebuilt frames partition holds
    its kept URIs and the processed files named for it (2-3 windows each), except that every
    4th processed file is dead-lettered instead, one is in both outputs and one in neither.
    Returns (the missing URI, the URI in both outputs)."""
    files, touches = _staged(plan.units_url)
    files = sorted(files, key=lambda f: f.uri)
    missing, both = files[1].uri, files[2].uri
    dead = {f.uri for n, f in enumerate(files) if n % 4 == 0 or "not-a-time" in f.uri} | {both}
    frames = {k: sorted(keep) for k, keep in touches.items() if k != DEAD_LETTER_KEY}
    for f in files:
        key = frames_key(f.uri.split("/")[-3][len("sensor_"):], f.uri.split("/")[-2])
        if f.uri != missing and (f.uri not in dead or f.uri == both) and "not-a-time" not in f.uri:
            frames[key].append(f.uri)
    for key, uris in frames.items():
        rows = [(u, f"id-{u}", w) for u in sorted(uris) for w in range(2 + len(u) % 2)]
        _write_parquet(layout.path(key), {"uri": [r[0] for r in rows],
                                          "recording_id": [r[1] for r in rows],
                                          "window_index": [r[2] for r in rows]})
    dl = sorted(dead | set(touches[DEAD_LETTER_KEY]))
    _write_parquet(layout.path(DEAD_LETTER_KEY), {
        "uri": [u for u in dl for _ in (0, 1)], "stage": [s for _ in dl for s in ("decode", "spl")],
        "error_kind": [k for n, _ in enumerate(dl) for k in (f"kind{n % 3}", "late")]})
    return missing, both


def _write_parquet(path: str, columns: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.table(columns), path)


def _shards(url: str) -> dict[str, bytes]:
    return {name: open(os.path.join(url, name), "rb").read() for name in sorted(os.listdir(url))}


@pytest.mark.parametrize("incremental", [True, False])
def test_in_process_plan_and_finalize_equal_the_beam_jobs(scenario, tmp_path, incremental):
    """Same scenario, both paths: the same counts.json, units and kept rows; then, over an output
    written for that plan, byte-identical manifest shards and the same stats.json."""
    up, out, rows, layout = scenario
    manifest = str(out / "manifest.parquet")
    plans = {path: PLAN[path](str(up), manifest_url=manifest, manifest_rows=len(rows),
                              layout_root=str(out), staging=str(tmp_path / path),
                              incremental=incremental, shard_size=4, settings={"teacher_id": "t"})
             for path in PLAN}
    beam, local = plans["beam"], plans["in_process"]
    assert open(f"{beam.staging}/{COUNTS_NAME}").read() == \
        open(f"{local.staging}/{COUNTS_NAME}").read()
    assert beam.counts["process"] >= 10 and beam.counts["touches"] >= 5
    assert _units(beam.units_url) == _units(local.units_url)
    kept = _keep_table(beam.keep_url)
    assert (kept is None) == (not incremental) and (kept is None or kept.num_rows > 10)
    assert kept is None or kept.equals(_keep_table(local.keep_url))
    assert kept is not None or _keep_table(local.keep_url) is None

    missing, both = _write_output(local, layout)
    settings = {"teacher_id": "t", "run": "r1"}
    final = {"beam": run_finalize_job, "in_process": run_finalize_in_process}
    got = {path: fn(local, layout, run_id="r1", settings=settings, n_shards=3)
           for path, fn in final.items()}
    (stats, shards), (stats_local, shards_local) = got["beam"], got["in_process"]
    assert stats == stats_local
    assert shards.endswith(MANIFEST_STAGING) and _shards(shards) == _shards(shards_local)
    assert len(_shards(shards)) == 3
    k = stats["counts"]
    assert (k["inputs"], k["missing"], k["in_both_outputs"]) == (local.counts["process"], 1, 1)
    assert k["ok"] + k["dead_lettered"] + k["missing"] == k["inputs"] and k["dead_lettered"] > 2
    assert stats["missing"] == [missing] and stats["in_both_outputs"] == [both]
    new = {r["uri"]: r for r in pq.read_table(shards).to_pylist()}
    assert len(new) == k["ok"] + k["dead_lettered"] + local.counts["unchanged"]
    for plan in plans.values():
        plan.cleanup()


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


def _manifest_without_run_ids(out) -> dict[str, tuple]:
    """(rows without the run_id column, schema metadata) of each manifest shard of ``out``."""
    tables = {p.name: pq.read_table(p) for p in sorted((out / "manifest.parquet").iterdir())}
    return {name: (t.drop_columns(["run_id"]).to_pylist(), t.schema.metadata)
            for name, t in tables.items()}


@pytest.mark.slow
def test_embed_and_refresh_equal_with_the_beam_plan_and_finalize_jobs(tiny_teacher, tmp_path,
                                                                      caplog):
    """An embed run and an --incremental refresh (a change, an addition, a removal) on the
    default runner (plan and finalize in the launcher) and with the Beam jobs forced: the same
    frames and dead letters (bytes), manifest (but for run ids) and counts."""
    from pipelines.embed_corpus import parse_args, run
    from tests.test_embed_pipeline import (BASE, SENSORS as EMB_SENSORS, add_good, app_args,
                                           make_corpus, part_files)

    root = tmp_path / "corpus"
    make_corpus(root, n_good=6)
    c = (root, None, None)
    outs = {beam_jobs: tmp_path / f"out-beam-{beam_jobs}" for beam_jobs in (False, True)}

    def embed(beam_jobs: bool, extra=()) -> dict:
        caplog.clear()
        with caplog.at_level("INFO", logger="pipelines.embed_corpus"):
            s = run(*parse_args(app_args(c, tiny_teacher, outs[beam_jobs]) + list(extra)),
                    beam_jobs=beam_jobs)
        said = "as Beam jobs on FnApiRunner" if beam_jobs else "in this process"
        assert f"embed: plan and finalize {said}" in caplog.text
        return s

    def assert_same(a: dict, b: dict) -> None:
        assert a["counts"] == b["counts"] and a["totals"] == b["totals"] and a["balanced"]
        assert part_files(outs[False]) == part_files(outs[True])
        assert _manifest_without_run_ids(outs[False]) == _manifest_without_run_ids(outs[True])

    full = {beam_jobs: embed(beam_jobs) for beam_jobs in outs}
    assert full[False]["counts"]["dead_lettered"] == 6
    assert_same(full[False], full[True])
    add_good(root, 2, seed=99)                                                    # changed
    (root / "upstream" / f"sensor_{EMB_SENSORS[1]}" / "2019-03-04" / f"{BASE + 600 * 5}.flac").unlink()
    add_good(root, 7, ts=BASE + 86_400)                                           # new partition
    refresh = {beam_jobs: embed(beam_jobs, ["--incremental"]) for beam_jobs in outs}
    k = refresh[False]["counts"]
    assert (k["inputs"], k["changed"], k["new"], k["removed"]) == (2, 1, 1, 1)
    assert_same(refresh[False], refresh[True])


# --------------------------------------------------------------------------- DaskRunner + S3
@pytest.mark.dask
@pytest.mark.slow
def test_incremental_refresh_on_dask_and_s3_equals_one_shot(s3, tmp_path_factory,  # noqa: F811
                                                           tiny_teacher, caplog):  # noqa: F811
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
        with caplog.at_level("INFO", logger="pipelines.embed_corpus"):
            s = run(*parse_args(app_args(c, tiny_teacher, out) + [
                "--incremental", "--allow-removals", "--runner=DaskRunner",
                f"--dask_client_address={cluster.scheduler_address}"]))
        took = time.perf_counter() - t0
    assert "embed: plan and finalize as Beam jobs on DaskRunner" in caplog.text
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
