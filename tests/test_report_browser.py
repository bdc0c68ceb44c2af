"""report.html as a reader sees it: headless Chromium (Debian's chromium + chromium-driver).

The page is rendered from the report.json of a real tiny run (tests/data/report_tiny.json,
see tests/test_report.py), opened in the browser with every host name unresolvable, and a
full-page screenshot is written next to it (``report_screenshot.png``). tests/test_run.py
does the same on the report of the run it makes.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from report_browser import assert_reader_sees_a_report, browser_or_skip, open_page

FIXTURE = Path(__file__).parent / "data" / "report_tiny.json"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_report_page_in_chromium(tmp_path):
    from sea_core.report import headline, write_report

    browser_or_skip()
    report = json.loads(FIXTURE.read_text())
    out = tmp_path / "out"
    _, html_path = write_report(report, out)
    shot = out / "report_screenshot.png"
    seen = open_page(html_path, shot)
    assert_reader_sees_a_report(seen)
    assert len(seen["images"]) == 6
    h = headline(report)
    head = seen["headline_text"]
    assert h["verdict"] in head
    assert f"int8 / teacher = {h['auprc']['int8_over_teacher']:.2f}" in head
    assert f"{report['deploy']['flash_bytes']:,} B" in head and "585,000 B" in head
    assert "Dead-lettered inputs: 1 of" in head
    # the headline is what the reader sees first, above every section
    assert seen["ids"].index("headline") < seen["ids"].index("memory")
    width, height = _png_size(shot)
    assert width == 1280 and height == seen["height"] > 1000
    print(f"screenshot: {shot}")


def test_the_browser_check_can_fail(tmp_path):
    """A broken image, a network reference and a script error are all caught."""
    browser_or_skip()
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><html><body><h1>no headline</h1>"
                    "<img alt=bad src='data:image/png;base64,AAAA'>"
                    "<img alt=net src='http://example.invalid/x.png'>"
                    "<script>console.error('boom')</script></body></html>")
    seen = open_page(page)
    assert any("boom" in e["message"] for e in seen["errors"])
    assert [i["naturalWidth"] for i in seen["images"]] == [0, 0]
    assert seen["scripts"] == 1 and seen["headline_text"] is None
    with pytest.raises(AssertionError):
        assert_reader_sees_a_report(seen)
