"""ListParts and ListInputs alone on a TestPipeline (real files, real staged Parquet); the plan
job staging the listing as work units."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

import pipelines.transforms.list_inputs as li
from pipelines.transforms.diff import UNITS_DIR, run_plan_job
from pipelines.transforms.list_inputs import ListInputs, ListParts, list_inputs, stage_units
from pipelines.transforms.records import DIRECTORY_VERSION, InputFile, Touch, frames_key
from tests.conftest import CLIP_BASE, write_clip


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("list") / "upstream"
    clips = [write_clip(root, s, CLIP_BASE + 60 * i, seconds=0.2, seed=i)
             for s in ("aa01", "bb02") for i in range(3)]
    (root / "sensor_aa01" / "2019-03-04" / "notes.txt").write_text("not audio")
    (root / "sensor_bb02" / "2019-03-04" / f"{CLIP_BASE + 999}.wav").mkdir()  # a directory named like audio
    return root, clips


@pytest.mark.parametrize("kind", ["directory", "glob", "manifest"])
def test_plan_job_stages_the_listing_as_work_units(upstream, tmp_path, kind):
    root, clips = upstream
    folder = str(root / "sensor_bb02" / "2019-03-04" / f"{CLIP_BASE + 999}.wav")
    if kind == "manifest":
        spec = tmp_path / "inputs.txt"
        spec.write_text("# recordings\n" + "".join(f"{c}\n" for c in clips) + f"{clips[0]}\n")
        expected = {str(c): c.stat().st_size for c in clips}
    else:
        spec = root if kind == "directory" else root / "*" / "*" / "*.wav"
        expected = {str(c): c.stat().st_size for c in clips} | {folder: 0}
    staging = tmp_path / "staging"

    run_plan_job(str(spec), manifest_url=None, manifest_rows=0, layout_root=str(tmp_path / "out"),
                 staging=str(staging), incremental=False, shard_size=2, settings=None)

    rows = [r for f in sorted((staging / UNITS_DIR).glob("part-*.parquet"))
            for r in pq.read_table(f).to_pylist() if r["kind"] == "file"]
    assert {r["uri"]: r["size"] for r in rows} == expected and len(rows) == len(expected)
    assert {r["uri"] for r in rows if r["version"] == DIRECTORY_VERSION} == expected.keys() & {folder}
    assert all(r["version"] for r in rows)  # mtime / etag recorded for change detection
    assert sorted(expected) == [f.uri for f in list_inputs(str(spec))]  # same as the in-process listing


def test_list_inputs_reads_the_staged_units_back(upstream, tmp_path, monkeypatch):
    root, clips = upstream
    files = list_inputs(str(root))
    touches = [Touch(frames_key("cc03", "2019-03-04"), frozenset({"mem://a.wav", "mem://b.wav"})),
               Touch(frames_key("aa01", "2019-03-05"))]
    units = [files[0:2], files[2:4], files[4:6], files[6:], touches]  # shards of 2 files, touches
    assert [len(u) for u in units] == [2, 2, 2, 1, 2]
    monkeypatch.setattr(li, "UNITS_PER_ROW_GROUP", 2)  # several row groups -> several read elements
    url = str(tmp_path / "units.parquet")
    assert stage_units(units, url) == 9
    assert pq.ParquetFile(url).num_row_groups == 3

    with test_pipeline.TestPipeline() as p:
        got = p | ListInputs(url)
        assert_that(got, equal_to(units))
    assert all(isinstance(f, InputFile) and f.size >= 0 for f in files)


def _stat_of(path) -> InputFile:
    st = path.stat()
    return InputFile(uri=str(path), size=st.st_size, version=f"mtime:{st.st_mtime}")


def test_list_parts_yields_every_input_file_once(upstream, tmp_path):
    """Directory / glob / manifest specs -> the InputFiles (uri, size, mtime version) the workers
    list; a folder named like audio is a DIRECTORY_VERSION entry, an unstattable manifest URI
    has size -1; no duplicates for these specs (the manifest repeats a URI)."""
    root, clips = upstream
    folder = InputFile(uri=str(root / "sensor_bb02" / "2019-03-04" / f"{CLIP_BASE + 999}.wav"),
                       size=0, version=DIRECTORY_VERSION)
    clips_listed = [_stat_of(c) for c in clips]
    missing = str(root / "sensor_aa01" / "2019-03-04" / "1.wav")
    spec = tmp_path / "inputs.txt"
    spec.write_text("# recordings\n" + "".join(f"{c}\n" for c in clips[:4]) + f"{clips[1]}\n{missing}\n")

    with test_pipeline.TestPipeline() as p:
        assert_that(p | "Dir" >> ListParts(str(root)), equal_to(clips_listed + [folder]),
                    label="CheckDir")
        assert_that(p | "Glob" >> ListParts(str(root / "*" / "*" / "*.wav")),
                    equal_to(clips_listed + [folder]), label="CheckGlob")
        assert_that(p | "Manifest" >> ListParts(str(spec)),
                    equal_to(clips_listed[:4] + [InputFile(uri=missing, size=-1, version="")]),
                    label="CheckManifest")
    assert len(clips_listed) == 6 and all(f.size > 44 for f in clips_listed)  # real WAVs (header + data)
