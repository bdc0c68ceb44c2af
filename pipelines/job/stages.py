"""Resumable stages and the run-directory helpers shared by ``sea run`` and ``sea experiment``.

:class:`StageLog` runs named stages once (``DIR/stages/<name>.json``; a rerun skips
finished ones). :func:`load_run` / :func:`update_report` read a finished run's
``report.json`` and add an experiment's result to it (re-rendering ``report.html``).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from sea_core.datasets.layout import FRAMES_DIR, RUN_EMBED_DIR, RUN_STAGES_DIR
from sea_core import storage
from sea_core.errors import DataError

__all__ = ["StageLog", "load_run", "update_report", "mean_std"]

log = logging.getLogger(__name__)


class StageLog:
    """Runs named stages once; a finished stage's record is reused on rerun.

    ``on_first_record`` is called just before the first stage record is written
    (``run`` locks the settings there: a run that fails before finishing a
    stage leaves nothing that would refuse the corrected rerun).
    """

    def __init__(self, out, on_first_record=None):
        self.dir = storage.join(out, RUN_STAGES_DIR)
        if not storage.is_url(self.dir):
            Path(self.dir).mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict] = {}
        self._on_first_record = on_first_record

    def run(self, name: str, fn) -> dict:
        path = storage.join(self.dir, f"{name}.json")
        if storage.isfile(path):
            record = storage.read_json(path)
            log.info("[%s] done earlier (%.1f s), skipped", name, record["seconds"])
        else:
            log.info("[%s] started", name)
            start = time.perf_counter()
            result = fn()
            record = {"seconds": time.perf_counter() - start, **result}
            if self._on_first_record is not None:
                self._on_first_record()
                self._on_first_record = None
            storage.publish_text(path, json.dumps(record, indent=2, default=str))
            log.info("[%s] finished in %.1f s: %s", name, record["seconds"], record.get("counts"))
        self.records[name] = record
        return record


def load_run(run_dir: Path) -> dict:
    path = run_dir / "report.json"
    if not path.is_file():
        raise DataError(f"{path}: no finished run here; run `sea run --out {run_dir}` first")
    report = json.loads(path.read_text())
    if not (run_dir / RUN_EMBED_DIR / FRAMES_DIR).is_dir():
        raise DataError(f"{run_dir / 'embed' / 'frames'}: the run's frames dataset is missing")
    return report


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def update_report(run_dir: Path, key: str, value: dict) -> None:
    from sea_core.report import write_report

    report = json.loads((run_dir / "report.json").read_text())
    report[key] = value
    write_report(report, run_dir)
