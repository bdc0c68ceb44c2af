"""``sea run``: the whole job, end to end (what ``make demo`` calls).

Stages (each writes ``OUT/stages/<name>.json`` when it finishes; a rerun skips
finished stages, so an interrupted run resumes where it stopped):

1. ``corpus``   synthesise the default SONYC-like corpus (unless ``--corpus``)
2. ``embed``    Beam: teacher embeddings + SPL + relevance -> ``OUT/embed/frames``
3. ``select``   Beam: informed sampling of the PCA fitting set
4. ``pca``      scaler + PCA artifact
   ``compare``  quick sampling comparison: every method's PCA judged on all windows
5. ``trainset`` Beam: PCA targets -> Parquet training shards
6. ``train``    the SEA student (registered in the local model store for a local --out)
7. ``quantize`` full-int8 TFLite, TFLite-Micro verification, C export, budget report
8. ``evaluate`` downstream AUPRC of teacher, float student and int8 student
9. ``report``   ``OUT/report.json`` + ``OUT/report.html``

``--out`` and ``--corpus`` may be fsspec URLs (``s3://``, ``gs://``...): the Beam
stages read and write the store directly; the stages that need local files
(synthesis, training, TFLite conversion, TFLM, evaluation) run in a local
temporary directory (removed afterwards) and their outputs are published to
``--out`` through :mod:`sea_core.storage`. The stage records, the config lock and
the report go through fsspec. A local ``--out`` keeps the same layout.

``report.json`` schema (``REPORT_SCHEMA_VERSION``): ``schema_version``,
``config``, ``stages`` (name -> ``{seconds, counts}``), ``corpus``, ``embed``
(run summary incl. dead letters), ``selection``, ``pca``, ``sampling_comparison``, ``dataset_card``,
``train`` (summary + history), ``deploy`` (report), ``evaluation`` (AUPRC
table per model / classifier / split), ``model_sizes``, ``wall_seconds``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from pipelines.job.stages import StageLog
from sea_core.datasets.layout import CORPUS_CARD_NAME, RUN_DEPLOY_DIR, RUN_SUMMARY_NAME, SPL_DIR, UPSTREAM_DIR
from sea_core import storage

from sea_core.errors import DataError, ParameterError
from sea_core.params import (BOARDS, DOWNSTREAM_QUICK, EXPERIMENT, RUN, STUDENT_EMB_DIMS, STUDENT_MEL64,
                             SYNTH, RunParams, TEACHERS, teacher_spec, teacher_window_name)

__all__ = ["REPORT_SCHEMA_VERSION", "STAGES", "run", "main", "check_report"]

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = "1"
STAGES = ("corpus", "embed", "select", "pca", "compare", "trainset", "train", "quantize", "evaluate")
REPORT_KEYS = ("schema_version", "config", "stages", "corpus", "embed", "selection", "pca",
               "sampling_comparison", "dataset_card", "train", "deploy", "evaluation", "model_sizes", "wall_seconds")


def _corpus_stage(corpus: Path, params: RunParams) -> dict:
    from sea_core.synth import synthesize

    summary = synthesize(corpus, replace(SYNTH, sensors=params.sensors, days=params.days,
                                         clips_per_day=params.clips_per_day,
                                         labelled_clips=params.labelled_clips, seed=params.seed))
    card = json.loads((corpus / CORPUS_CARD_NAME).read_text())
    return {"counts": {"upstream_clips": card["counts"]["upstream_clips"],
                       "labelled_clips": card["counts"]["labelled_clips"]}, "card": card,
            "summary": {k: v for k, v in summary.items() if k != "card"}}


def _embed_stage(corpus, out, params: RunParams, beam_args: list[str]) -> dict:
    from pipelines.embed_config import EmbedConfig
    from pipelines.embed_corpus import run as run_embed

    spl = storage.join(corpus, SPL_DIR)
    cfg = EmbedConfig(input=storage.join(corpus, UPSTREAM_DIR), output=str(out), teacher=params.teacher,
                      teacher_window=params.teacher_window, teacher_precision=params.teacher_precision,
                      spl_sidecar=spl if storage.isdir(spl) else None,
                      hop_seconds=float(params.corpus_hop_seconds) if params.corpus_hop_seconds else None)
    run_embed(cfg, beam_args)
    summary = storage.read_json(storage.join(out, RUN_SUMMARY_NAME))
    counts = summary["counts"]
    if counts["inputs"] != counts["ok"] + counts["dead_lettered"]:
        raise DataError(f"{out}: inputs {counts['inputs']} != ok {counts['ok']} + dead "
                        f"{counts['dead_lettered']}")
    return {"counts": counts, "summary": summary}


def _select_stage(frames: Path, out: Path, params: RunParams, beam_args: list[str]) -> dict:
    from pipelines.job.chain import fitting_set_size, run_select

    k = fitting_set_size(frames, fraction=params.fraction, dim=params.emb_dim,
                         min_fit_per_dim=params.min_fit_per_dim)
    summary = run_select(frames, out, method=params.method, mode=params.mode, k=k, seed=params.seed,
                         sensors=params.sensors_select, beam_args=beam_args)
    sensors = summary.get("sensor_selection") or {}  # issue 18: --sensors-select K
    return {"counts": {"windows": sensors.get("windows_all_sensors", summary["windows"]),
                       "selected": summary["n_selected"], "groups": summary["groups"],
                       **({"sensors_chosen": len(sensors["chosen"])} if sensors else {})},
            "summary": {k: v for k, v in summary.items() if k != "groups_detail"}}


def _pca_stage(frames: Path, selection: Path, out: Path, params: RunParams,
               beam_args: list[str] | None = None) -> dict:
    from pipelines.job.chain import run_fit_pca

    pca = run_fit_pca(frames, selection, out, dims=(params.emb_dim,), beam_args=beam_args or ())
    return {"counts": {"fit_windows": pca["artifact"]["n_fit"]}, "artifact": pca["artifact"],
            "explained_variance_ratio": float(sum(pca["explained_variance_ratio"][:params.emb_dim]))}


def _compare_stage(frames: Path, k: int, params: RunParams) -> dict:
    from pipelines.job.comparison import sampling_comparison

    result = sampling_comparison(frames, k=k, dim=params.emb_dim, seeds=EXPERIMENT.comparison_seeds,
                                 mode=params.mode)
    return {"counts": {"cells": len(result["rows"])}, "result": result}


def _trainset_stage(frames: Path, pca: Path, out: Path, params: RunParams, beam_args) -> dict:
    from pipelines.job.chain import run_training_set

    card = run_training_set(frames, pca, out, dims=(params.emb_dim,), beam_args=beam_args)
    return {"counts": card["counts"], "card": card}


def _train_stage(data, out: Path, params: RunParams, register: bool = True) -> dict:
    from sea_core.train import TrainConfig, train

    summary = train(TrainConfig(data=str(data), out=str(out), register=register, emb_dim=params.emb_dim,
                                head=params.head, learning_rate=params.learning_rate,
                                batch_size=params.batch_size, epochs=params.epochs,
                                seed=params.seed, progress=False))
    return {"counts": {"epochs": summary["epochs_run"], "train_rows": summary["train_rows"],
                       "validate_rows": summary["validate_rows"]}, "summary": summary}


def _quantize_stage(model: Path, data: Path, out: Path, params: RunParams) -> dict:
    from sea_core.deploy import quantize

    report = quantize(str(model), str(data), str(out), board=params.board, optimize="memory",
                      emb_dim=params.emb_dim)
    return {"counts": {"flash_bytes": report.get("flash_bytes"), "ram_bytes": report.get("ram_bytes")},
            "report": report}


def _evaluate_stage(annotations: Path, audio_dir: Path, models: dict, out: Path,
                    params: RunParams) -> dict:
    from sea_core.api import load_embedder
    from sea_core.evaluate import evaluate, int8_embedder, table_markdown

    from sea_core.models.teachers import get_teacher

    teacher = (get_teacher("aisfx", window=params.teacher_window) if params.teacher == "aisfx"
               else params.teacher)
    embedders = {f"teacher:{params.teacher}": load_embedder(model=teacher),
                 "student": load_embedder(model=str(models["student"])),
                 "int8": int8_embedder(str(models["int8"]), window_samples=models["window_samples"])}
    results = evaluate(annotations=str(annotations), audio_dir=str(audio_dir), models=[],
                       embedders=embedders, out=str(out), params=DOWNSTREAM_QUICK, seed=params.seed)
    results["markdown"] = table_markdown(results)
    micro = {m: e["mil"].get("test", e["mil"]["validate"])["micro_auprc"]
             for m, e in results["models"].items()}
    return {"counts": {"models": len(embedders), **{f"clips_{s}": n for s, n in results["clips"].items()}},
            "micro_auprc_test": micro, "results": results}


def _check_same_config(out, config: dict):
    """A rerun resumes only with the settings the finished stages were made with.

    Returns a function that records ``config`` (written atomically once the first
    stage has finished), or None when it is recorded already.
    """
    path = storage.join(out, "stages", "config.json")
    config = json.loads(json.dumps(config, default=str))
    if storage.isfile(path):
        previous = storage.read_json(path)
        changed = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
        if changed:
            raise ParameterError(f"{out}: holds a run made with other settings ({', '.join(changed)}); "
                                 f"use another --out, the same settings to resume, or delete "
                                 f"{storage.join(out, 'stages')} to start over")
        return None

    def record() -> None:
        storage.publish_text(path, json.dumps(config, indent=2, sort_keys=True))

    return record


def _validate(params: RunParams, out, corpus, annotations, audio_dir) -> None:
    """Every setting checked before anything is written (a failed run must not lock --out)."""
    from sea_core.sampling import check_options

    if storage.isfile(out):
        raise ParameterError(f"--out {out}: exists and is not a directory")
    if params.emb_dim not in STUDENT_EMB_DIMS:
        raise ParameterError(f"--emb-dim must be one of {STUDENT_EMB_DIMS}")
    if params.board not in BOARDS:
        raise ParameterError(f"--board must be one of {sorted(BOARDS)}")
    if params.teacher not in TEACHERS:
        raise ParameterError(f"--teacher must be one of {sorted(TEACHERS)} (the evaluate stage "
                             f"loads the teacher by name), got {params.teacher!r}")
    teacher_spec(params.teacher, params.teacher_window)   # ParameterError for a window it lacks
    if params.head not in ("relu", "linear"):
        raise ParameterError(f"--head must be 'relu' or 'linear', got {params.head!r}")
    if params.sensors_select is not None and (isinstance(params.sensors_select, bool)
                                              or not isinstance(params.sensors_select, int)
                                              or params.sensors_select < 1):
        raise ParameterError(f"--sensors-select must be an integer >= 1, got {params.sensors_select!r}")
    check_options(prefix="--", method=params.method)
    check_options(mode=params.mode)   # no --mode flag: RunParams.mode
    if not (isinstance(params.fraction, (int, float)) and 0 < params.fraction <= 1):
        raise ParameterError(f"--fraction must be in (0, 1], got {params.fraction!r}")
    for name in ("sensors", "days", "clips_per_day", "labelled_clips", "epochs", "batch_size"):
        v = getattr(params, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParameterError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if not (isinstance(params.seed, int) and params.seed >= 0):
        raise ParameterError(f"--seed must be a non-negative integer, got {params.seed!r}")
    if corpus is not None:
        c = storage.absolute(corpus)
        if not storage.isdir(c):
            raise DataError(f"{c}: corpus directory not found")
        if not storage.isdir(storage.join(c, UPSTREAM_DIR)):
            raise DataError(f"{c}: expected upstream/sensor_<id>/<YYYY-MM-DD>/<ts>.<ext>")
    for flag, p in (("--annotations", annotations), ("--audio-dir", audio_dir)):
        if p is not None and not storage.exists(p):
            raise DataError(f"{flag} {p}: not found")


def check_report(report: dict) -> list[str]:
    """Problems with a report (schema keys and cross-stage counts); empty when consistent."""
    problems = [f"missing key {k!r}" for k in REPORT_KEYS if k not in report]
    if problems:
        return problems
    if report["schema_version"] != REPORT_SCHEMA_VERSION:
        problems.append(f"schema_version {report['schema_version']!r}")
    emb = report["embed"]["counts"]
    if emb["inputs"] != emb["ok"] + emb["dead_lettered"]:
        problems.append(f"embed: inputs {emb['inputs']} != ok + dead_lettered")
    if len(report["embed"].get("dead_letters", [])) != emb["dead_lettered"]:
        problems.append("embed: dead-lettered inputs are not all listed")
    card_rows = sum(report["dataset_card"]["counts"].values())
    if card_rows != emb["windows"]:
        problems.append(f"windows in ({emb['windows']}) != training rows out ({card_rows})")
    if report["selection"]["counts"]["windows"] != emb["windows"]:
        problems.append("select saw a different number of windows than embed wrote")
    if report["pca"]["counts"]["fit_windows"] != report["selection"]["counts"]["selected"]:
        problems.append("PCA fitted on a different number of windows than selected")
    return problems


def run(out: str | os.PathLike, *, corpus: str | None = None, annotations: str | None = None,
        audio_dir: str | None = None, params: RunParams = RUN, beam_args: list[str] | None = None) -> dict:
    """Run every stage (skipping finished ones); returns the report dict.

    ``out`` (and ``corpus``, ``annotations``, ``audio_dir``) may be fsspec URLs; the
    stages that need local files then work in a temporary directory that is removed
    when the run ends (their outputs are published to ``out``).
    """
    if storage.is_url(out):
        with tempfile.TemporaryDirectory(prefix="sea-run-") as work:
            return _run(str(out).rstrip("/"), Path(work), corpus=corpus, annotations=annotations,
                        audio_dir=audio_dir, params=params, beam_args=beam_args)
    return _run(Path(out), None, corpus=corpus, annotations=annotations, audio_dir=audio_dir,
                params=params, beam_args=beam_args)


def _run(out, work: Path | None, *, corpus, annotations, audio_dir, params: RunParams, beam_args) -> dict:
    """``out``: a local Path (``work`` None) or a URL with a local temporary ``work`` directory."""
    beam_args = list(beam_args or [])
    _validate(params, out, corpus, annotations, audio_dir)
    started = time.perf_counter()
    lock = _check_same_config(out, {**asdict(params), "corpus": corpus, "annotations": annotations,
                                    "audio_dir": audio_dir, "beam_args": beam_args})
    if work is None:
        out.mkdir(parents=True, exist_ok=True)

    def at(*parts: str):
        """Where an output lives in --out (a Path for a local run, else a URL)."""
        return out.joinpath(*parts) if work is None else storage.join(out, *parts)

    def local(*parts: str) -> Path:
        """Where a stage that needs local files writes (the temp dir for a remote --out)."""
        return out.joinpath(*parts) if work is None else work.joinpath(*parts)

    def local_copy(url, *parts: str) -> Path:
        """A local file for ``url`` (itself when local; fetched into the temp dir when remote)."""
        if not storage.is_url(url):
            return Path(url)
        return Path(storage.fetch(url, work.joinpath("inputs", *parts)))

    def published(name: str, fn):
        """Run a local-file stage; for a remote --out publish ``local(name)`` to ``at(name)`` and
        record the published locations instead of the temporary ones."""
        if work is None:
            return fn

        def go() -> dict:
            record = fn()
            storage.publish_tree(local(name), at(name))
            return json.loads(json.dumps(record, default=str).replace(str(work), out))
        return go

    stages = StageLog(out, on_first_record=lock)
    if corpus is None:
        corpus_dir = at("corpus")
        corpus_rec = stages.run("corpus", published("corpus", lambda: _corpus_stage(local("corpus"), params)))
    else:
        corpus_dir = Path(corpus) if not storage.is_url(corpus) else str(corpus).rstrip("/")
        if not storage.isdir(corpus_dir):
            raise DataError(f"{corpus_dir}: corpus directory not found")
        corpus_rec = {"counts": {}, "card": {"path": str(corpus_dir)}}
        if not storage.isdir(storage.join(corpus_dir, UPSTREAM_DIR)):
            raise DataError(f"{corpus_dir}: expected upstream/sensor_<id>/<YYYY-MM-DD>/<ts>.<ext>")
    if work is None:
        corpus_dir = Path(corpus_dir)
        annotations = Path(annotations) if annotations else corpus_dir / "downstream" / "annotations.csv"
        audio_dir = Path(audio_dir) if audio_dir else corpus_dir / "downstream" / "audio"
    else:
        corpus_dir = str(corpus_dir)
        annotations = annotations or storage.join(corpus_dir, "downstream", "annotations.csv")
        audio_dir = audio_dir or storage.join(corpus_dir, "downstream", "audio")

    embed = stages.run("embed", lambda: _embed_stage(corpus_dir, at("embed"), params, beam_args))
    frames = at("embed")
    selection = stages.run("select", lambda: _select_stage(frames, at("selection"), params, beam_args))
    pca = stages.run("pca", lambda: _pca_stage(frames, at("selection"), at("pca"), params,
                                                      beam_args))
    compare = stages.run("compare", lambda: _compare_stage(frames, selection["counts"]["selected"],
                                                           params))
    trainset = stages.run("trainset", lambda: _trainset_stage(frames, at("pca"), at("trainset"),
                                                              params, beam_args))
    # a remote run is not registered in the LOCAL model store (it writes nothing local);
    # its model is published to OUT/train/model.keras
    trained = stages.run("train", published("train", lambda: _train_stage(at("trainset"), local("train"),
                                                                          params, register=work is None)))

    def model_file() -> Path:
        if work is None or local("train", "model.keras").is_file():
            return local("train", "model.keras")
        return local_copy(at("train", "model.keras"), "train", "model.keras")
    deploy = stages.run("quantize", published("deploy", lambda: _quantize_stage(
        model_file(), at("trainset"), local("deploy"), params)))
    if work is None:
        int8_path = deploy["report"].get("tflite_path") or str(next((out / RUN_DEPLOY_DIR).glob("*.tflite")))
    else:
        int8_path = deploy["report"].get("tflite_path") or storage.glob(at("deploy", "*.tflite"))[0]

    def int8_file() -> str:
        if work is None:
            return int8_path
        name = str(int8_path).rsplit("/", 1)[-1]
        if local("deploy", name).is_file():
            return str(local("deploy", name))
        return str(local_copy(int8_path, "deploy", name))
    evaluation = stages.run("evaluate", published("evaluation", lambda: _evaluate_stage(
        local_copy(annotations, "annotations.csv"), local_copy(audio_dir, "audio"),
        {"student": model_file(), "int8": int8_file(),
         "window_samples": trainset["card"]["student_samples"]},
        local("evaluation"), params)))

    window_seconds = trainset["card"]["student_samples"] / STUDENT_MEL64.sample_rate
    dead = []
    dl_dir = at("embed", "dead_letter")
    if work is None and dl_dir.is_dir():
        import pyarrow.parquet as pq
        for f in sorted(dl_dir.rglob("*.parquet")):
            dead += pq.read_table(f).to_pylist()
    elif work is not None and storage.isdir(dl_dir):
        import pyarrow.parquet as pq
        fs, root = storage.url_to_fs(dl_dir)
        for f in sorted(f for f in fs.find(root) if f.endswith(".parquet")):
            with fs.open(f, "rb") as fh:
                dead += pq.read_table(fh).to_pylist()
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "config": {**asdict(params), "corpus": str(corpus_dir), "annotations": str(annotations),
                   "audio_dir": str(audio_dir), "beam_args": beam_args,
                   "teacher_spec": asdict(teacher_spec(params.teacher, params.teacher_window))},
        "stages": {name: {"seconds": rec["seconds"], "counts": rec.get("counts", {})}
                   for name, rec in stages.records.items()},
        "corpus": corpus_rec.get("card"),
        "embed": {**embed["summary"], "counts": embed["counts"], "dead_letters": dead},
        "selection": {"counts": selection["counts"], **selection["summary"]},
        "pca": {"counts": pca["counts"], "explained_variance_ratio": pca["explained_variance_ratio"],
                "artifact": pca["artifact"]},
        "sampling_comparison": compare["result"],
        "dataset_card": {**trainset["card"], "window_seconds": window_seconds},
        "train": {**trained["summary"], "window_seconds": window_seconds},
        "deploy": {**deploy["report"], "window_seconds": window_seconds},
        "evaluation": evaluation["results"],
        "model_sizes": {"student_keras_bytes": storage.size(at("train", "model.keras")),
                        "int8_tflite_bytes": storage.size(int8_path)},
        "wall_seconds": sum(rec["seconds"] for rec in stages.records.values()),
        "this_invocation_seconds": time.perf_counter() - started,
    }
    from sea_core.report import write_report
    problems = check_report(report)
    report["consistency_problems"] = problems
    json_path, html_path = write_report(report, out)
    log.info("report: %s, %s", json_path, html_path)
    if problems:
        raise DataError(f"{json_path}: stage counts disagree: {'; '.join(problems)}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sea run", description="The end-to-end SEA job.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--corpus", help="corpus directory (default: synthesise one)")
    parser.add_argument("--annotations", help="SONYC-UST annotations.csv (default: the corpus')")
    parser.add_argument("--audio-dir", help="labelled audio folder (default: the corpus')")
    parser.add_argument("--teacher", default=RUN.teacher, choices=sorted(TEACHERS))
    parser.add_argument("--teacher-window", default=RUN.teacher_window,
                        help="aisfx analysis window: 1s (default, the paper's student input: 1 s of "
                             "8-kHz audio, 64 x 50 log-mel) or 2.30s (aisfx's native block)")
    parser.add_argument("--teacher-precision", default=RUN.teacher_precision,
                        choices=("auto", "fp32", "bf16"),
                        help="embed stage: bf16 on CPUs with AMX-BF16 / AVX512-BF16 (auto), or fp32")
    parser.add_argument("--emb-dim", type=int, default=RUN.emb_dim, choices=STUDENT_EMB_DIMS)
    parser.add_argument("--head", default=RUN.head, choices=("relu", "linear"))
    parser.add_argument("--sensors", type=int, default=RUN.sensors)
    parser.add_argument("--days", type=int, default=RUN.days)
    parser.add_argument("--clips-per-day", type=int, default=RUN.clips_per_day)
    parser.add_argument("--labelled-clips", type=int, default=RUN.labelled_clips)
    parser.add_argument("--fraction", type=float, default=RUN.fraction)
    parser.add_argument("--method", default=RUN.method)
    parser.add_argument("--epochs", type=int, default=RUN.epochs)
    parser.add_argument("--board", default=RUN.board, choices=sorted(BOARDS))
    parser.add_argument("--seed", type=int, default=RUN.seed)
    parser.add_argument("--sensors-select", type=int, default=RUN.sensors_select,
                        help="select the PCA fitting set from K sensors chosen by a k-DPP over sensors.csv")
    args, beam_args = parser.parse_known_args(argv)
    params = replace(RUN, teacher=args.teacher, teacher_window=teacher_window_name(args.teacher_window),
                     teacher_precision=args.teacher_precision,
                     emb_dim=args.emb_dim, head=args.head,
                     sensors=args.sensors, days=args.days, clips_per_day=args.clips_per_day,
                     labelled_clips=args.labelled_clips, fraction=args.fraction, method=args.method,
                     epochs=args.epochs, board=args.board, seed=args.seed,
                     sensors_select=args.sensors_select)
    report = run(args.out, corpus=args.corpus, annotations=args.annotations, audio_dir=args.audio_dir,
                 params=params, beam_args=beam_args)
    print(report["evaluation"]["markdown"])
    dep = report["deploy"]
    print(f"int8 student: flash {dep.get('flash_bytes')} B, RAM {dep.get('ram_bytes')} B "
          f"({dep.get('verdict', '')}); wall {report['wall_seconds']:.0f} s; "
          f"report: {storage.join(storage.absolute(args.out), 'report.html')}")
    return 0
