"""The poster's efficiency and specialisation claims, measured on a finished ``sea run`` (issue 18).

``sea experiment data --run DIR``
    *Less training data*: students trained on 10 / 30 / 100 % of the run's training
    windows (seeded row subsets of the train split; validate/test unchanged), 3 seeds;
    downstream micro-AUPRC (MIL, test split) mean ± std.
``sea experiment convergence --run DIR``
    *Faster convergence*: epochs to reach 95 % of the final validation-loss improvement
    at learning rates 1e-5 and 1e-4, for the SEA student (PCA targets at the run's dim)
    and the baseline: the same student trained on the teacher's full 512-d embedding
    without PCA (conventional embedding distillation — the same audio, loss and
    architecture, only the targets differ, so the comparison isolates what the PCA
    targets do; a student trained on the downstream labels has 10x fewer clips and
    another loss, so its epochs would not be comparable).
``sea experiment specialisation --run DIR``
    *Specialisation*: student / teacher per-class AUPRC on the in-domain classes (present
    in the upstream corpus) and on the out-of-domain ones (``sea synth
    --hold-out-classes``: absent upstream, present in the labelled set). Uses the run's
    own evaluation and, when present, the data experiment's 100 % students (more seeds).

Results go to ``DIR/experiments/<name>/`` (resumable cells) and to ``report.json``
(``data_experiment``, ``convergence_experiment``, ``specialisation_experiment``),
rendered by ``report.html`` as tables and mean ± std figures. Every result records
wall seconds per cell.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipelines.job.stages import StageLog, load_run, mean_std, update_report
from sea_core.datasets.layout import CORPUS_CARD_NAME, RUN_EMBED_DIR, RUN_EVALUATION_DIR, RUN_TRAINSET_DIR, RUN_TRAIN_DIR
from sea_core.errors import DataError, ParameterError
from sea_core.params import EXPERIMENT, ExperimentParams

__all__ = ["subset_trainset", "raw_target_trainset", "epochs_to_fraction", "data_experiment",
           "convergence_experiment", "specialisation_experiment", "POSTER_EXPERIMENTS"]

log = logging.getLogger(__name__)

POSTER_EXPERIMENTS = ("data", "convergence", "specialisation")


# ----------------------------------------------------------------------------- training sets
def _copy_split(src: Path, dst: Path, split: str) -> None:
    (dst / split).mkdir(parents=True, exist_ok=True)
    for f in sorted((src / split).glob("*.parquet")):
        shutil.copyfile(f, dst / split / f.name)


def _card_fields(src: Path) -> dict:
    card = json.loads((src / "dataset_card.json").read_text())
    return {k: v for k, v in card.items() if k not in ("counts", "shards", "schema_version",
                                                       "dims", "student_samples", "student_sample_rate")}


def subset_trainset(src, dst, *, fraction: float, seed: int) -> dict:
    """``dst``: ``src`` with a seeded ``fraction`` of the train rows (validate/test copied)."""
    from sea_core.datasets.trainset import write_card, write_shard

    if not 0 < fraction <= 1:
        raise ParameterError(f"fraction must be in (0, 1], got {fraction}")
    src, dst = Path(src), Path(dst)
    card = json.loads((src / "dataset_card.json").read_text())
    files = sorted((src / RUN_TRAIN_DIR).glob("*.parquet"))
    if not files:
        raise DataError(f"{src / 'train'}: no training shards")
    import pyarrow as pa
    table = pa.concat_tables([pq.read_table(f) for f in files])
    n = table.num_rows
    keep = np.sort(np.random.default_rng(seed).choice(n, size=max(1, int(round(fraction * n))),
                                                      replace=False))
    write_shard(dst / RUN_TRAIN_DIR / "part-00000.parquet", table.take(pa.array(keep)))
    for split in ("validate", "test"):
        _copy_split(src, dst, split)
    return write_card(dst, dims=card["dims"], student_samples=card["student_samples"],
                      **_card_fields(src), subset={"fraction": fraction, "seed": seed, "of": n})


def raw_target_trainset(src, dst, frames) -> dict:
    """``dst``: the rows of ``src`` with the teacher's full embedding as the only target (no PCA)."""
    import pyarrow as pa

    from pipelines.job.comparison import frames_arrays
    from sea_core.datasets.trainset import training_table, write_card, write_shard

    src, dst = Path(src), Path(dst)
    fr = frames_arrays(Path(frames))
    index = {w: i for i, w in enumerate(fr["window_id"].tolist())}
    dim = int(fr["teacher_emb"].shape[1])
    card = json.loads((src / "dataset_card.json").read_text())
    for split in ("train", "validate", "test"):
        for f in sorted((src / split).glob("*.parquet")):
            t = pq.read_table(f, columns=["window_id", "sensor", "day", "student_audio"])
            ids = t.column("window_id").to_pylist()
            missing = [w for w in ids if w not in index]
            if missing:
                raise DataError(f"{f}: window {missing[0]!r} is not in the frames {frames}")
            audio = np.asarray(t.column("student_audio").combine_chunks().values, np.int16).reshape(
                t.num_rows, -1)
            emb = fr["teacher_emb"][[index[w] for w in ids]]
            write_shard(dst / split / f.name, training_table(
                window_ids=ids, sensors=t.column("sensor").to_pylist(), days=t.column("day").to_pylist(),
                audio_int16=audio, targets={dim: emb}))
    del pa
    return write_card(dst, dims=(dim,), student_samples=card["student_samples"],
                      **{**_card_fields(src), "targets": "raw teacher embedding (no PCA)"})


def epochs_to_fraction(val_losses, q: float = 0.95) -> int | None:
    """First epoch (1-based) whose val loss has made ``q`` of the run's total improvement
    ``L_1 - L_final`` (measured from the first epoch's loss; scale-free, so PCA targets and
    raw 512-d targets compare). ``L_1`` itself counts as epoch 1; None for an empty history."""
    v = np.asarray([x for x in val_losses if x is not None], float)
    if v.size == 0:
        return None
    start, final = v[0], v[-1]
    if not start > final:
        return 1
    need = start - q * (start - final)
    return int(np.flatnonzero(v <= need + 1e-12)[0]) + 1


def _mean_std(values) -> tuple[float, float]:
    return mean_std(list(values))


def _train(cell: Path, data: Path, *, emb_dim: int, head: str, lr: float, batch_size: int,
           epochs: int, steps_per_epoch, seed: int, fixed_lr: bool = False) -> dict:
    from sea_core.train import TrainConfig, train

    extra = dict(early_stop_patience=epochs + 1, reduce_lr_patience=epochs + 1) if fixed_lr else {}
    t0 = time.perf_counter()
    s = train(TrainConfig(data=str(data), out=str(cell / RUN_TRAIN_DIR), emb_dim=emb_dim, head=head,
                          learning_rate=lr, batch_size=batch_size, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, seed=seed, register=False, progress=False,
                          **extra))
    return {"history": s["history"], "train_rows": s["train_rows"], "train_seconds": round(time.perf_counter() - t0, 2)}


def _evaluate_student(cell: Path, report: dict, seed: int, params: ExperimentParams) -> dict:
    from sea_core.api import load_embedder
    from sea_core.evaluate import evaluate
    from sea_core.params import DOWNSTREAM_QUICK

    cfg = report["config"]
    t0 = time.perf_counter()
    res = evaluate(annotations=cfg["annotations"], audio_dir=cfg["audio_dir"], models=[],
                   embedders={"student": load_embedder(model=str(cell / RUN_TRAIN_DIR / "model.keras"))},
                   out=str(cell / RUN_EVALUATION_DIR),
                   params=replace(DOWNSTREAM_QUICK, epochs=params.downstream_epochs), seed=seed)
    mil = res["models"]["student"]["mil"]
    split = "test" if "test" in mil else "validate"
    return {"micro_auprc": mil[split]["micro_auprc"], "split": split,
            "per_class_auprc": mil[split]["per_class_auprc"],
            "evaluate_seconds": round(time.perf_counter() - t0, 2)}


def _table_html(columns, rows) -> dict:
    return {"columns": list(columns), "rows": [[str(c) for c in r] for r in rows]}


def _fmt(v, nd=3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def _markdown(t: dict) -> str:
    lines = ["| " + " | ".join(t["columns"]) + " |", "|" + "---|" * len(t["columns"])]
    lines += ["| " + " | ".join(r) + " |" for r in t["rows"]]
    return "\n".join(lines) + "\n"


def _finish(run_dir: Path, out: Path, key: str, result: dict) -> dict:
    result["markdown"] = _markdown(result["html_table"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{key}.json").write_text(json.dumps(result, indent=2))
    update_report(run_dir, key, result)
    return result


# ----------------------------------------------------------------------------- experiments
def data_experiment(run_dir, *, fractions=(0.1, 0.3, 1.0), seeds=(0, 1, 2),
                    params: ExperimentParams = EXPERIMENT) -> dict:
    """Less training data: micro-AUPRC mean ± std over ``seeds`` per training-data fraction."""
    run_dir = Path(run_dir)
    report = load_run(run_dir)
    cfg = report["config"]
    src = run_dir / RUN_TRAINSET_DIR
    if not (src / "dataset_card.json").is_file():
        raise DataError(f"{src}: the run's training set is missing")
    out = run_dir / "experiments" / "data"
    stages = StageLog(out)
    rows = []
    for fraction in fractions:
        for seed in seeds:
            name = f"frac{fraction:g}-seed{seed}"
            cell = out / name

            def work(fraction=fraction, seed=seed, cell=cell):
                card = subset_trainset(src, cell / RUN_TRAINSET_DIR, fraction=fraction, seed=seed)
                tr = _train(cell, cell / RUN_TRAINSET_DIR, emb_dim=cfg["emb_dim"], head=cfg["head"],
                            lr=cfg["learning_rate"], batch_size=cfg["batch_size"], epochs=params.epochs,
                            steps_per_epoch=params.steps_per_epoch, seed=seed)
                ev = _evaluate_student(cell, report, seed, params)
                return {"counts": {"train_rows": card["counts"]["train"]}, "fraction": fraction,
                        "seed": seed, "train_rows": card["counts"]["train"], **ev,
                        "train_seconds": tr["train_seconds"],
                        "final_val_loss": tr["history"][-1]["val_loss"] if tr["history"] else None}

            rec = stages.run(name, work)
            rows.append({k: rec.get(k) for k in ("fraction", "seed", "train_rows", "micro_auprc", "split",
                                                 "per_class_auprc", "train_seconds", "evaluate_seconds",
                                                 "final_val_loss")})
    table, html_rows = [], []
    for fraction in fractions:
        mine = [r for r in rows if r["fraction"] == fraction]
        mean, std = _mean_std(r["micro_auprc"] for r in mine)
        wall = float(sum(r["train_seconds"] + r["evaluate_seconds"] for r in mine))
        table.append({"method": f"{fraction:.0%} of windows", "fraction": fraction, "mean": mean, "std": std,
                      "n_seeds": len(mine), "train_rows": mine[0]["train_rows"] if mine else 0,
                      "wall_seconds": round(wall, 1)})
        html_rows.append([f"{fraction:.0%}", mine[0]["train_rows"] if mine else 0,
                          f"{_fmt(mean)} ± {_fmt(std)}", len(mine), f"{wall:.0f}"])
    return _finish(run_dir, out, "data_experiment", {
        "metric": f"float student downstream micro-AUPRC ({rows[0]['split'] if rows else 'test'} split; "
                  f"MIL) vs fraction of the training windows; mean ± std over seeds",
        "emb_dim": cfg["emb_dim"], "epochs": params.epochs, "seeds": list(seeds), "rows": rows,
        "table": table, "html_table": _table_html(
            ["training windows", "rows", "micro-AUPRC (mean ± std)", "seeds", "wall s"], html_rows)})


def convergence_experiment(run_dir, *, learning_rates=(1e-5, 1e-4), epochs: int = 8, seed: int = 0,
                           q: float = 0.95, params: ExperimentParams = EXPERIMENT) -> dict:
    """Epochs to ``q`` of the final val-loss improvement: SEA (PCA) student vs raw-512-d baseline."""
    run_dir = Path(run_dir)
    report = load_run(run_dir)
    cfg = report["config"]
    src = run_dir / RUN_TRAINSET_DIR
    out = run_dir / "experiments" / "convergence"
    stages = StageLog(out)
    raw = out / "raw_trainset"
    stages.run("raw_trainset", lambda: {"counts": raw_target_trainset(src, raw, run_dir / RUN_EMBED_DIR)["counts"]})
    raw_dim = json.loads((raw / "dataset_card.json").read_text())["dims"][0]
    rows = []
    for lr in learning_rates:
        for target, data, dim in (("SEA (PCA)", src, cfg["emb_dim"]), ("raw teacher", raw, raw_dim)):
            name = f"{'sea' if target.startswith('SEA') else 'raw'}-lr{lr:g}"
            cell = out / name

            def work(lr=lr, data=data, dim=dim, cell=cell, target=target):
                tr = _train(cell, data, emb_dim=dim, head=cfg["head"], lr=lr, batch_size=cfg["batch_size"],
                            epochs=epochs, steps_per_epoch=params.steps_per_epoch, seed=seed, fixed_lr=True)
                vl = [h["val_loss"] for h in tr["history"]]
                return {"counts": {"epochs": len(vl)}, "target": target, "emb_dim": dim,
                        "learning_rate": lr, "val_loss": vl, "epochs_to_q": epochs_to_fraction(vl, q),
                        "train_seconds": tr["train_seconds"]}

            rec = stages.run(name, work)
            rows.append({k: rec.get(k) for k in ("target", "emb_dim", "learning_rate", "val_loss",
                                                 "epochs_to_q", "train_seconds")})
    html_rows, table = [], []
    for lr in learning_rates:
        sea = next(r for r in rows if r["learning_rate"] == lr and r["target"].startswith("SEA"))
        base = next(r for r in rows if r["learning_rate"] == lr and not r["target"].startswith("SEA"))
        ratio = (base["epochs_to_q"] / sea["epochs_to_q"]) if sea["epochs_to_q"] else None
        for r in (sea, base):
            html_rows.append([f"{lr:g}", r["target"], r["emb_dim"], r["epochs_to_q"], len(r["val_loss"]),
                              _fmt(r["val_loss"][0], 4), _fmt(r["val_loss"][-1], 4),
                              _fmt(ratio, 2) if r is sea else "", f"{r['train_seconds']:.0f}"])
        table.append({"method": f"lr {lr:g}: baseline / SEA epochs", "mean": ratio, "std": 0.0})
    return _finish(run_dir, out, "convergence_experiment", {
        "metric": f"epochs until the val loss has made {q:.0%} of its improvement over {epochs} epochs "
                  "(fixed learning rate, no early stop); baseline = same student on the raw teacher "
                  "embedding (no PCA)",
        "epochs": epochs, "seed": seed, "q": q, "rows": rows, "table": table,
        "html_table": _table_html(["lr", "targets", "dim", f"epochs to {q:.0%}", "epochs run",
                                   "val loss ep. 1", "final", "speed-up", "wall s"], html_rows)})


def specialisation_experiment(run_dir) -> dict:
    """Student / teacher per-class AUPRC, in-domain vs out-of-domain classes (see the docstring)."""
    run_dir = Path(run_dir)
    report = load_run(run_dir)
    card = report.get("corpus") or {}
    held = list(((card.get("params") or {}).get("upstream_held_out")) or [])
    if not held:
        cpath = Path(report["config"].get("corpus") or "") / CORPUS_CARD_NAME
        if cpath.is_file():
            held = list(json.loads(cpath.read_text())["params"].get("upstream_held_out") or [])
    if not held:
        raise DataError(f"{run_dir}: the run's corpus holds no class back from the upstream corpus; "
                        "make one with `sea synth --hold-out-classes music,human-voice --out C` and "
                        "`sea run --corpus C --out DIR`")
    ev_path = run_dir / RUN_EVALUATION_DIR / "evaluation.json"
    if not ev_path.is_file():
        raise DataError(f"{ev_path}: the run's evaluation is missing")
    ev = json.loads(ev_path.read_text())
    teacher_label = next((m for m in ev["models"] if m.startswith("teacher:")), None)
    if teacher_label is None or "student" not in ev["models"]:
        raise DataError(f"{ev_path}: needs a teacher and a student")
    tm = ev["models"][teacher_label]["mil"]
    split = "test" if "test" in tm else "validate"
    teacher = tm[split]["per_class_auprc"]
    students = [("run", ev["models"]["student"]["mil"][split]["per_class_auprc"])]
    for f in sorted((run_dir / "experiments" / "data").glob("frac1-seed*/evaluation/evaluation.json")):
        mil = json.loads(f.read_text())["models"]["student"]["mil"]
        if split in mil:
            students.append((f.parent.parent.name, mil[split]["per_class_auprc"]))
    classes = list(teacher)
    groups = {"in-domain": [c for c in classes if c not in held], "out-of-domain": [c for c in classes if c in held]}

    def ratio(student: dict, names: list[str]) -> float | None:
        s = [student[c] for c in names if student.get(c) is not None and teacher.get(c)]
        t = [teacher[c] for c in names if student.get(c) is not None and teacher.get(c)]
        return float(np.mean(s) / np.mean(t)) if s and np.mean(t) > 0 else None

    rows = [{"student": name, "group": g, "ratio": ratio(st, names)}
            for name, st in students for g, names in groups.items()]
    table, html_rows = [], []
    for g, names in groups.items():
        vals = [r["ratio"] for r in rows if r["group"] == g and r["ratio"] is not None]
        mean, std = _mean_std(vals)
        table.append({"method": g, "mean": mean, "std": std, "n_students": len(vals)})
        t_mean = float(np.mean([teacher[c] for c in names if teacher.get(c) is not None])) if names else None
        html_rows.append([g, ", ".join(names), _fmt(t_mean), f"{_fmt(mean)} ± {_fmt(std)}", len(vals)])
    return _finish(run_dir, run_dir / "experiments" / "specialisation", "specialisation_experiment", {
        "metric": f"mean per-class AUPRC of the student / of the teacher ({split} split, MIL), "
                  "per class group; ± std over students (the run's and the data experiment's 100 % seeds)",
        "held_out_classes": held, "split": split, "teacher_per_class": teacher,
        "students": {n: s for n, s in students}, "rows": rows, "table": table,
        "html_table": _table_html(["classes", "members", "teacher AUPRC", "student / teacher (mean ± std)",
                                   "students"], html_rows)})
