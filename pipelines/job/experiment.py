"""The paper's two experiments on one corpus.

``sea experiment sampling --run DIR``
    The sampling table (seed poster section 7): for each sampling method
    (random, relevance, diversity, diversity+relevance) and each seed, select the
    PCA fitting set, fit scaler + PCA, build the training set, train a student,
    evaluate it downstream; micro-AUPRC mean +- std per method.
``sea experiment students --run DIR``
    The model table (poster section 6): teacher and students S0-S3 (512/256/128/64-d)
    with embedding dim, model size, activation memory and micro-AUPRC.

Both reuse a finished ``sea run`` output directory ``DIR`` (its frames,
annotations, run settings) and write under ``DIR/experiments/<name>/``. Every
cell (method x seed, or student dim) is a resumable stage: a rerun skips
finished cells. Results are added to ``DIR/report.json`` (keys
``sampling_experiment`` / ``students_experiment``) and ``report.html`` is
re-rendered.

The cheap variant ``sea run`` always does (no student trained) is
:func:`pipelines.job.comparison.sampling_comparison`.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipelines.job.stages import StageLog, load_run, mean_std, update_report
from sea_core.datasets.layout import RUN_EMBED_DIR, RUN_EVALUATION_DIR, RUN_TRAINSET_DIR, RUN_TRAIN_DIR
from sea_core.errors import ParameterError
from sea_core.params import DOWNSTREAM_QUICK, EXPERIMENT, STUDENT_EMB_DIMS, ExperimentParams
from sea_core.sampling import METHODS

__all__ = ["sampling_experiment", "students_experiment",
           "activation_bytes", "network_params", "main"]

log = logging.getLogger(__name__)

STUDENT_NAMES = {512: "Student 0", 256: "Student 1", 128: "Student 2", 64: "Student 3"}
"""The poster's names of the four student sizes."""


# ----------------------------------------------------------------------------- helpers
def network_params(model) -> int:
    """Weights of the network proper: front-end constants (DFT/mel matrices) excluded."""
    from sea_core.models.layers import walk_layers

    return int(sum(l.count_params() for l in walk_layers(model)
                   if type(l).__module__ != "sea_core.models.layers"))


def _float32_bytes(tensors) -> int:
    """Bytes of one example of each tensor (batch axis dropped), float32."""
    tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return sum(4 * math.prod(d for d in t.shape[1:] if d is not None) for t in tensors)


def activation_bytes(model) -> dict:
    """Float32 activation memory of a Keras model at batch 1.

    ``largest_tensor``: the biggest single activation (the poster's "Act. Mem."
    column: e.g. 64 x 51 x 64 x 4 B = 0.84 MB for Student 0's first conv);
    ``peak_in_out``: the largest input + output of one layer (a sequential
    executor's working set without in-place reuse).
    """
    from sea_core.models.layers import walk_layers

    largest, peak = 0, 0
    for layer in walk_layers(model):
        try:
            out_b, in_b = _float32_bytes(layer.output), _float32_bytes(layer.input)
        except (AttributeError, ValueError):  # layers without a single call site
            continue
        largest = max(largest, out_b)
        peak = max(peak, in_b + out_b)
    return {"largest_tensor": int(largest), "peak_in_out": int(peak)}


def _selection_k(report: dict) -> int:
    return int(report["selection"]["counts"]["selected"])


# ----------------------------------------------------------------------------- cells
def _train_and_evaluate(cell: Path, trainset: Path, report: dict, *, emb_dim: int, seed: int,
                        params: ExperimentParams, evaluate_teacher: bool = False) -> dict:
    """Train a student on ``trainset`` and evaluate it downstream (float)."""
    from sea_core.api import load_embedder
    from sea_core.evaluate import evaluate
    from sea_core.train import TrainConfig, train

    cfg = report["config"]
    summary = train(TrainConfig(data=str(trainset), out=str(cell / RUN_TRAIN_DIR), emb_dim=emb_dim,
                                head=cfg["head"], learning_rate=cfg["learning_rate"],
                                batch_size=cfg["batch_size"], epochs=params.epochs,
                                steps_per_epoch=params.steps_per_epoch, seed=seed,
                                register=False, progress=False))
    model_path = cell / RUN_TRAIN_DIR / "model.keras"
    embedders = {"student": load_embedder(model=str(model_path))}
    if evaluate_teacher:
        embedders = {f"teacher:{cfg['teacher']}": load_embedder(model_type=cfg["teacher"]),
                     **embedders}
    results = evaluate(annotations=cfg["annotations"], audio_dir=cfg["audio_dir"], models=[],
                       embedders=embedders, out=str(cell / RUN_EVALUATION_DIR),
                       params=replace(DOWNSTREAM_QUICK, epochs=params.downstream_epochs),
                       seed=seed)
    out = {"train": {k: summary[k] for k in ("epochs_run", "best_val_loss", "train_rows")},
           "models": {}}
    for label, entry in results["models"].items():
        out["models"][label] = {split: entry["mil"][split]["micro_auprc"]
                                for split in ("test", "validate") if split in entry["mil"]}
    return out


def sampling_experiment(run_dir: str | Path, *, params: ExperimentParams = EXPERIMENT,
                        beam_args: list[str] | None = None) -> dict:
    """The poster's sampling table on the run's corpus (see the module docstring)."""
    from pipelines.job.chain import run_chain

    run_dir = Path(run_dir)
    report = load_run(run_dir)
    cfg = report["config"]
    frames = run_dir / RUN_EMBED_DIR
    out = run_dir / "experiments" / "sampling"
    stages = StageLog(out)
    k = _selection_k(report)
    rows = []
    for method in params.methods:
        if method not in METHODS:
            raise ParameterError(f"--methods: {method!r} is not one of {METHODS}")
        for seed in params.seeds:
            name = f"{method.replace('+', '_')}-seed{seed}"
            cell = out / name

            def work(method=method, seed=seed, cell=cell):
                sel, pca, _ = run_chain(frames, cell, method=method, mode=params.mode, k=k,
                                        seed=seed, dims=(cfg["emb_dim"],), beam_args=beam_args or ())
                res = _train_and_evaluate(cell, cell / RUN_TRAINSET_DIR, report, emb_dim=cfg["emb_dim"],
                                          seed=seed, params=params)
                micro = res["models"]["student"]
                return {"counts": {"selected": sel["n_selected"], **res["train"]},
                        "method": method, "seed": seed, "logdet": sel.get("logdet", {}),
                        "explained_variance": float(np.sum(
                            np.asarray(pca["explained_variance_ratio"])[:cfg["emb_dim"]])),
                        "micro_auprc_test": micro.get("test"),
                        "micro_auprc_validate": micro.get("validate")}

            rec = stages.run(name, work)
            rows.append({k_: rec[k_] for k_ in ("method", "seed", "logdet", "explained_variance",
                                                "micro_auprc_test", "micro_auprc_validate")})
    table = []
    for method in params.methods:
        mine = [r for r in rows if r["method"] == method]
        mean, std = mean_std([r["micro_auprc_test"] for r in mine])
        vmean, vstd = mean_std([r["micro_auprc_validate"] for r in mine])
        table.append({"method": method, "mean": mean, "std": std, "validate_mean": vmean,
                      "validate_std": vstd, "n_seeds": len(mine),
                      "explained_variance_mean": mean_std([r["explained_variance"] for r in mine])[0]})
    result = {"metric": "float student downstream micro-AUPRC (test split; MIL classifier)",
              "k": k, "emb_dim": cfg["emb_dim"], "mode": params.mode, "seeds": list(params.seeds),
              "epochs": params.epochs, "rows": rows, "table": table,
              "markdown": _sampling_markdown(table)}
    (out / "sampling_experiment.json").write_text(json.dumps(result, indent=2))
    update_report(run_dir, "sampling_experiment", result)
    return result


def students_experiment(run_dir: str | Path, *, params: ExperimentParams = EXPERIMENT,
                        beam_args: list[str] | None = None) -> dict:
    """The poster's model table on the run's corpus (see the module docstring)."""
    from pipelines.job.chain import fitting_set_size, run_chain
    from sea_core.models.store import load_keras_student
    from sea_core.models.teachers import get_teacher

    run_dir = Path(run_dir)
    report = load_run(run_dir)
    cfg = report["config"]
    dims = tuple(sorted(params.student_dims, reverse=True))
    bad = [d for d in dims if d not in STUDENT_EMB_DIMS]
    if bad:
        raise ParameterError(f"--dims: {bad} not in {STUDENT_EMB_DIMS}")
    frames = run_dir / RUN_EMBED_DIR
    k = fitting_set_size(frames, k=_selection_k(report), dim=max(dims),
                         min_fit_per_dim=cfg["min_fit_per_dim"])
    out = run_dir / "experiments" / "students"
    stages = StageLog(out)

    def prepare():
        sel, _, card = run_chain(frames, out, method=cfg["method"], mode=cfg["mode"], k=k,
                                 seed=cfg["seed"], dims=dims, beam_args=beam_args or ())
        return {"counts": {"selected": sel["n_selected"], **card["counts"]}}

    stages.run("trainset", prepare)
    rows = []
    for i, dim in enumerate(dims):
        cell = out / f"student-{dim}"
        rec = stages.run(f"student-{dim}", lambda dim=dim, cell=cell: {
            "counts": {}, **_train_and_evaluate(cell, out / RUN_TRAINSET_DIR, report, emb_dim=dim,
                                                seed=cfg["seed"], params=params,
                                                evaluate_teacher=(i == 0))})
        if i == 0:
            teacher = get_teacher(cfg["teacher"]).keras_model()
            label = next(m for m in rec["models"] if m.startswith("teacher:"))
            rows.append(_model_row(f"{cfg['teacher']} (teacher)", teacher.output_shape[-1],
                                   network_params(teacher), activation_bytes(teacher),
                                   rec["models"][label]))
        student = load_keras_student(str(cell / RUN_TRAIN_DIR / "model.keras"))
        rows.append(_model_row(STUDENT_NAMES[dim], dim, network_params(student),
                               activation_bytes(student), rec["models"]["student"]))
    result = {"metric": "downstream micro-AUPRC (test split; MIL classifier); size = float32 "
                        "network params (front-end constants excluded); act. mem. = "
                        "largest float32 activation at batch 1",
              "k": k, "epochs": params.epochs, "rows": rows, "markdown": _students_markdown(rows)}
    (out / "students_experiment.json").write_text(json.dumps(result, indent=2))
    update_report(run_dir, "students_experiment", result)
    return result


def _model_row(name: str, dim: int, n_params: int, act: dict, micro: dict) -> dict:
    return {"model": name, "emb_dim": int(dim), "params": n_params,
            "size_mb": 4 * n_params / 1e6, "act_mem_mb": act["largest_tensor"] / 1e6,
            "peak_in_out_mb": act["peak_in_out"] / 1e6,
            "micro_auprc_test": micro.get("test"), "micro_auprc_validate": micro.get("validate")}


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _sampling_markdown(table: list[dict]) -> str:
    lines = ["| sampling | micro-AUPRC test (mean ± std) | validate (mean ± std) | seeds |",
             "|---|---|---|---|"]
    for r in sorted(table, key=lambda r: -np.nan_to_num(r["mean"], nan=-1)):
        lines.append(f"| {r['method']} | {_fmt(r['mean'])} ± {_fmt(r['std'])} | "
                     f"{_fmt(r['validate_mean'])} ± {_fmt(r['validate_std'])} | {r['n_seeds']} |")
    return "\n".join(lines) + "\n"


def _students_markdown(rows: list[dict]) -> str:
    lines = ["| model | emb. dim | size (MB) | act. mem. (MB) | micro-AUPRC test | validate |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['emb_dim']} | {r['size_mb']:.2f} | {r['act_mem_mb']:.2f} | "
                     f"{_fmt(r['micro_auprc_test'])} | {_fmt(r['micro_auprc_validate'])} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sea experiment",
                                     description="The paper's sampling and student tables on a "
                                                 "finished `sea run` output.")
    sub = parser.add_subparsers(dest="which", required=True)
    for name, help_ in (("sampling", "random / relevance / diversity / diversity+relevance -> "
                                     "PCA -> student -> micro-AUPRC, mean ± std over seeds"),
                        ("students", "teacher and students S0-S3: dim, size, activation "
                                     "memory, micro-AUPRC")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--run", required=True, help="a finished `sea run --out` directory")
        p.add_argument("--epochs", type=int, default=EXPERIMENT.epochs,
                       help="student training epochs per cell")
        p.add_argument("--steps-per-epoch", type=int, default=EXPERIMENT.steps_per_epoch)
        p.add_argument("--downstream-epochs", type=int, default=EXPERIMENT.downstream_epochs)
        if name == "sampling":
            p.add_argument("--methods", default=",".join(EXPERIMENT.methods))
            p.add_argument("--seeds", default=",".join(map(str, EXPERIMENT.seeds)))
            p.add_argument("--mode", default=EXPERIMENT.mode, choices=("reference", "exact", "scalable"))
        else:
            p.add_argument("--dims", default=",".join(map(str, EXPERIMENT.student_dims)))
    _add_poster_parsers(sub)  # issue 18: data / convergence / specialisation
    args, beam_args = parser.parse_known_args(argv)
    if args.which in ("data", "convergence", "specialisation"):
        return _run_poster(args)
    params = replace(EXPERIMENT, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                     downstream_epochs=args.downstream_epochs)
    try:
        if args.which == "sampling":
            params = replace(params, methods=tuple(m for m in args.methods.split(",") if m),
                             seeds=tuple(int(s) for s in args.seeds.split(",") if s), mode=args.mode)
            result = sampling_experiment(args.run, params=params, beam_args=beam_args)
        else:
            params = replace(params, student_dims=tuple(int(d) for d in args.dims.split(",") if d))
            result = students_experiment(args.run, params=params, beam_args=beam_args)
    except ValueError as exc:
        raise ParameterError(f"sea experiment {args.which}: {exc}") from exc
    print(result["markdown"])
    return 0


# ----------------------------------------------------------------------------- the poster's claims (issue 18)
def _add_poster_parsers(sub) -> None:
    """``sea experiment data|convergence|specialisation`` (``pipelines/job/experiment_poster.py``)."""
    p = sub.add_parser("data", help="less training data: 10/30/100 %% of the windows, AUPRC mean ± std")
    p.add_argument("--fractions", default="0.1,0.3,1.0")
    p.add_argument("--seeds", default="0,1,2")
    p = sub.add_parser("convergence", help="epochs to 95 %% of the val-loss improvement at lr 1e-5 / 1e-4, "
                                           "SEA vs raw-512-d baseline")
    p.add_argument("--learning-rates", default="1e-5,1e-4")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("specialisation", help="student / teacher AUPRC, in- vs out-of-domain classes")
    for name in ("data", "convergence", "specialisation"):
        p = sub.choices[name]
        p.add_argument("--run", required=True, help="a finished `sea run --out` directory")
        if name != "specialisation":
            p.add_argument("--epochs", type=int, default=EXPERIMENT.epochs)
            p.add_argument("--steps-per-epoch", type=int, default=EXPERIMENT.steps_per_epoch)
            p.add_argument("--downstream-epochs", type=int, default=EXPERIMENT.downstream_epochs)


def _floats(text: str, flag: str) -> tuple:
    try:
        return tuple(float(v) for v in text.split(",") if v)
    except ValueError:
        raise ParameterError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def _run_poster(args) -> int:
    from pipelines.job import experiment_poster as ep

    if args.which == "specialisation":
        result = ep.specialisation_experiment(args.run)
    else:
        params = replace(EXPERIMENT, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                         downstream_epochs=args.downstream_epochs)
        if args.which == "data":
            result = ep.data_experiment(args.run, fractions=_floats(args.fractions, "--fractions"),
                                        seeds=tuple(int(s) for s in _floats(args.seeds, "--seeds")),
                                        params=params)
        else:
            result = ep.convergence_experiment(args.run, epochs=args.epochs, seed=args.seed,
                                               learning_rates=_floats(args.learning_rates,
                                                                      "--learning-rates"),
                                               params=params)
    print(result["markdown"])
    return 0
