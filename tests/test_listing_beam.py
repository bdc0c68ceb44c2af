"""The embed listing (the plan step: a Beam job, or in the launcher on the in-process runner)
keeps the listing contract (OWNERSHIP.md).

* a listing that matches nothing -> "no input matches <pattern>", exit 2, nothing written or removed
* --incremental removing > 10 % of the manifest -> refused (exit 2) unless --allow-removals
* an --input path that does not exist -> "input not found: <path>", exit 2
* a glob follows symlinked files; a directory named like audio is a dead letter (stage 'list')
"""
from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq
import pytest

from pipelines.transforms.diff import run_plan_in_process, run_plan_job
from pipelines.transforms.list_inputs import _read_units, _row_groups, list_inputs, split_spec
from pipelines.job.cli import main as sea_main
from sea_core.errors import DataError
from tests.test_embed_pipeline import SENSORS, app_args, make_corpus

PLAN = {"beam": run_plan_job, "in_process": run_plan_in_process}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad = make_corpus(root, n_good=6)
    up = root / "upstream"
    # a symlinked recording and a directory whose name looks like a recording
    target = tmp_path_factory.mktemp("elsewhere") / "1551711111.flac"
    shutil.copy(good[0], target)
    link = up / f"sensor_{SENSORS[1]}" / "2019-03-04" / "1551711111.flac"
    os.symlink(target, link)
    (up / f"sensor_{SENSORS[0]}" / "2019-03-04" / "1551712222.flac").mkdir()
    return root, good, bad, str(link)


def _planned(path: str, spec: str, staging) -> list:
    """The files the plan step (a full run, no manifest) stages for ``spec``, sorted by URI;
    the staging is removed afterwards."""
    plan = PLAN[path](spec, manifest_url=None, manifest_rows=0, layout_root=str(staging) + "-out",
                      staging=str(staging), incremental=False, shard_size=3, settings=None)
    files = [i for part in _row_groups(plan.units_url) for unit in _read_units(part)
             for i in unit if not hasattr(i, "keep_uris")]
    assert plan.counts["listed"] == plan.counts["process"] == len(files)
    plan.cleanup()
    return sorted(files, key=lambda f: f.uri)


@pytest.mark.parametrize("path", sorted(PLAN))
def test_glob_is_split_per_sensor_prefix_and_listed_by_the_plan(corpus, tmp_path, path):
    root, _, _, link = corpus
    pattern = f"{root}/upstream/*/*/*.flac"
    parts = list(split_spec(pattern))
    assert sorted(p for _, p in parts) == sorted(f"{root}/upstream/sensor_{s}/*/*.flac" for s in SENSORS)
    planned = _planned(path, pattern, tmp_path / "stage")
    assert planned == list_inputs(pattern)
    uris = {f.uri: f for f in planned}
    assert link in uris and uris[link].size > 0                      # the symlink is followed
    odd = [u for u, f in uris.items() if f.version == "directory"]
    assert odd == [f"{root}/upstream/sensor_{SENSORS[0]}/2019-03-04/1551712222.flac"]
    assert not (tmp_path / "stage").exists()                          # staging removed
    # a directory input and a manifest give the same files through their own splits
    assert _planned(path, str(root / "upstream"), tmp_path / "s2") == \
        list_inputs(str(root / "upstream"))
    manifest = tmp_path / "m.txt"
    manifest.write_text("\n".join(sorted(uris)) + "\n")
    assert [f.uri for f in _planned(path, str(manifest), tmp_path / "s3")] == sorted(uris)


def test_contract_errors_exit_2_and_touch_nothing(corpus, tiny_teacher, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    nothing = str(corpus[0] / "upstream" / "*" / "*" / "*.nope")
    assert sea_main(["pipeline", "embed", *app_args(corpus, tiny_teacher, out, input_=nothing,
                                                    require=False)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].count("no input matches") == 1 and nothing in err[-1]
    assert not out.exists()
    missing = str(tmp_path / "no" / "such" / "dir")
    assert sea_main(["pipeline", "embed", *app_args(corpus, tiny_teacher, out, input_=missing,
                                                    require=False)]) == 2
    assert f"input not found: {missing}" in capsys.readouterr().err
    assert not out.exists()
    from pipelines.embed_corpus import parse_args, plan

    cfg, _ = parse_args(app_args(corpus, tiny_teacher, out, input_=nothing, require=False))
    with pytest.raises(DataError, match="no input matches"):  # the same with the plan's Beam job
        plan(cfg, beam_job=True)
    assert not out.exists()


def test_incremental_removal_guard(corpus, tiny_teacher, tmp_path, capsys):  # noqa: F811
    from pipelines.embed_corpus import parse_args, run as embed_job

    def run(argv):
        return embed_job(*parse_args(argv))

    root, good, _, _ = corpus
    out = tmp_path / "out"
    run(app_args(corpus, tiny_teacher, out, require=False))
    manifest = pq.read_table(out / "manifest.parquet")  # a directory of shards

    def manifest_bytes():
        return {p.name: p.read_bytes() for p in sorted((out / "manifest.parquet").iterdir())}

    before = manifest_bytes()
    assert list(before) == ["manifest-00000-of-00001.parquet"]
    one = tmp_path / "one.txt"
    one.write_text(good[1] + "\n")
    args = app_args(corpus, tiny_teacher, out, input_=str(one), require=False) + ["--incremental"]
    assert sea_main(["pipeline", "embed", *args]) == 2
    err = capsys.readouterr().err
    assert f"would remove {manifest.num_rows - 1} of the {manifest.num_rows}" in err
    assert manifest_bytes() == before and (out / "_SUCCESS").exists()
    summary = run(args + ["--allow-removals"])
    assert summary["counts"]["removed"] == manifest.num_rows - 1
    assert pq.read_table(out / "manifest.parquet").num_rows == 1
