"""``report.html`` from ``report.json``: the page a person reads after ``sea run``.

Top to bottom: a headline block (the student that was built, its int8 flash and RAM
against the board budget, the paper's 8-bit Student 2 and the project's goals, test
micro-AUPRC of teacher / float / int8 student, wall time, dead letters and a verdict
line), then flash/RAM, downstream quality (per-class figure, AUPRC table), sampling,
experiments, training, stages, dead letters and the raw ``report.json`` (collapsed).
A section whose data the run does not have is left out.

The page is one self-contained file: figures are PNGs embedded as data URIs, there is
no script and no external reference. Each file is published by ``sea_core.storage`` (temporary key, then move), so a reader
never sees a half-written page.

Modules: :mod:`~sea_core.report.facts` (the headline figures and the verdict, from
report.json alone), :mod:`~sea_core.report.figures` (the matplotlib figures, as PNG),
:mod:`~sea_core.report.page` (the HTML sections and the whole page); this package
writes the two files (:func:`write_report`).
"""
from __future__ import annotations

import json
from pathlib import Path

from sea_core import storage
from sea_core.report.facts import headline
from sea_core.report.page import render_html

__all__ = ["headline", "render_html", "write_report"]


def write_report(report: dict, out_dir: str | Path) -> tuple[Path | str, Path | str]:
    """Write ``report.json`` and ``report.html`` into ``out_dir`` (local path or fsspec URL)."""
    out = str(out_dir)
    json_path = storage.join(out, "report.json")
    html_path = storage.join(out, "report.html")
    page = render_html(report)  # before writing anything: a failed render leaves both files as they were
    storage.publish_text(json_path, json.dumps(report, indent=2, default=str))
    storage.publish_text(html_path, page)
    return (json_path, html_path) if storage.is_url(out) else (Path(json_path), Path(html_path))
