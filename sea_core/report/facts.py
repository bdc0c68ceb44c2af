"""The headline figures of a report and its verdict, derived from ``report.json`` alone
(no plotting, no HTML): the student built, its int8 flash and RAM against the board budget,
the paper and the project's goals, micro-AUPRC of teacher / float / int8 student."""
from __future__ import annotations

import math

from sea_core.params import DEPLOY_TARGETS, STUDENT_MEL64, DeployTargets

__all__ = ["headline", "is_num", "model_keys"]


def is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _student_window_seconds(report: dict) -> tuple[float | None, str]:
    """The student's window in seconds and where it came from.

    ``window_seconds`` recorded in report.json wins (top level, ``student``, ``deploy``,
    ``deploy.student`` or ``dataset_card``; a dict form uses its ``student`` entry);
    otherwise it is derived from the student's window in samples.
    """
    dep = report.get("deploy") or {}
    card = report.get("dataset_card") or {}
    for holder in (report, report.get("student") or {}, dep, dep.get("student") or {}, card):
        for key in ("window_seconds", "student_window_seconds"):
            v = holder.get(key)
            if isinstance(v, dict):
                v = v.get("student")
            if is_num(v):
                return float(v), "report.json"
    rate = card.get("student_sample_rate") or STUDENT_MEL64.sample_rate
    for samples in ((dep.get("student") or {}).get("window_samples"), dep.get("window_samples"),
                    card.get("student_samples")):
        if is_num(samples) and samples > 0:
            return samples / rate, f"{samples:,} samples at {rate:,} Hz"
    return None, ""


def _micro(entry: dict) -> tuple[float | None, str | None]:
    """MIL micro-AUPRC of one evaluated model: test split, else validate."""
    mil = (entry or {}).get("mil") or {}
    for split in ("test", "validate"):
        v = (mil.get(split) or {}).get("micro_auprc")
        if is_num(v):
            return float(v), split
    return None, None


def model_keys(evaluation: dict) -> dict[str, str]:
    """role (teacher / student / int8) -> the evaluation's model label."""
    keys = {}
    for label in (evaluation.get("models") or {}):
        role = ("teacher" if label.startswith("teacher") else "int8" if label.startswith("int8")
                else "student" if label.startswith("student") else None)
        if role and role not in keys:
            keys[role] = label
    return keys


def headline(report: dict, targets: DeployTargets = DEPLOY_TARGETS) -> dict:
    """The figures of the headline block, derived from ``report`` (``None`` where missing)."""
    cfg = report.get("config") or {}
    dep = report.get("deploy") or {}
    board = dep.get("board") or {}
    tspec = cfg.get("teacher_spec") or {}
    window, window_source = _student_window_seconds(report)
    teacher_window = (tspec["window_samples"] / tspec["sample_rate"]
                      if is_num(tspec.get("window_samples")) and tspec.get("sample_rate") else None)
    shape = (dep.get("input") or {}).get("shape") or []
    emb_dim = (dep.get("student") or {}).get("emb_dim") or cfg.get("emb_dim")
    flash, ram = dep.get("flash_bytes"), dep.get("ram_bytes")
    arena = (dep.get("ram") or {}).get("arena_bytes")
    out = {
        "student": {"emb_dim": emb_dim, "window_seconds": window, "window_source": window_source,
                    "head": (dep.get("student") or {}).get("head") or cfg.get("head"),
                    "input": f"{shape[1]} × {shape[2]} log-mel" if len(shape) == 4 else None,
                    "teacher": cfg.get("teacher"), "teacher_window_seconds": teacher_window,
                    "epochs": ((report.get("train") or {}).get("epochs_run")),
                    "deploy_mode": dep.get("mode")},
        "board": {"name": board.get("name"), "flash_bytes": board.get("flash_bytes"),
                  "ram_bytes": board.get("ram_bytes")},
        "memory": {"flash_bytes": flash, "ram_bytes": ram, "arena_bytes": arena},
        "paper": {"model": targets.paper_model, "flash_bytes": targets.paper_flash_bytes,
                  "ram_bytes": targets.paper_ram_bytes},
        "goals": {"flash_bytes": targets.flash_goal_bytes, "arena_bytes": targets.arena_goal_bytes,
                  "ram_bytes": targets.ram_goal_bytes},
    }
    fits_board = None
    if is_num(flash) and is_num(ram) and board.get("flash_bytes") and board.get("ram_bytes"):
        fits_board = flash <= board["flash_bytes"] and ram <= board["ram_bytes"]
    goals_met = {"flash": flash <= targets.flash_goal_bytes if is_num(flash) else None,
                 "arena": arena <= targets.arena_goal_bytes if is_num(arena) else None,
                 "ram": ram <= targets.ram_goal_bytes if is_num(ram) else None}
    out["fits_board"], out["goals_met"] = fits_board, goals_met

    evaluation = report.get("evaluation") or {}
    keys = model_keys(evaluation)
    auprc, splits = {}, set()
    for role in ("teacher", "student", "int8"):
        v, split = _micro((evaluation.get("models") or {}).get(keys.get(role, ""), {}))
        auprc[role] = v
        if split:
            splits.add(split)
    ratio = (auprc["int8"] / auprc["teacher"]
             if auprc["int8"] is not None and auprc["teacher"] else None)
    out["auprc"] = {**auprc, "int8_over_teacher": ratio, "labels": keys,
                    "split": "/".join(sorted(splits, reverse=True)) or None}

    emb = report.get("embed") or {}
    counts = emb.get("counts") or {}
    out["dead_letters"] = {"count": counts.get("dead_lettered", len(emb.get("dead_letters") or [])),
                           "inputs": counts.get("inputs"), "listed": len(emb.get("dead_letters") or [])}
    out["wall_seconds"] = report.get("wall_seconds")
    out["this_invocation_seconds"] = report.get("this_invocation_seconds")
    out["problems"] = list(report.get("consistency_problems") or [])
    out["stages"] = list(report.get("stages") or {})
    out["checked"] = "consistency_problems" in report
    out["verdict"], out["verdict_class"] = _verdict(out)
    return out


def _verdict(h: dict) -> tuple[str, str]:
    board, mem, goals = h["board"], h["memory"], h["goals"]
    if h["fits_board"] is None:
        return "No int8 student was measured in this run: nothing to fit on a board.", "bad"
    name = board["name"] or "the board"
    if not h["fits_board"]:
        why = [f"{what} {mem[k]:,} B > {board[k]:,} B" for what, k in (("flash", "flash_bytes"),
                                                                       ("RAM", "ram_bytes"))
               if mem[k] > board[k]]
        return f"DOES NOT FIT {name}: {'; '.join(why)}.", "bad"
    text = (f"FITS {name}: flash {mem['flash_bytes']:,} B of {board['flash_bytes']:,} B, "
            f"RAM {mem['ram_bytes']:,} B of {board['ram_bytes']:,} B.")
    missed = [f"{what} {mem[k]:,} B > {goals[g]:,} B" for what, k, g, met in (
        ("flash", "flash_bytes", "flash_bytes", h["goals_met"]["flash"]),
        ("TFLM arena", "arena_bytes", "arena_bytes", h["goals_met"]["arena"]),
        ("total RAM", "ram_bytes", "ram_bytes", h["goals_met"]["ram"])) if met is False]
    if missed:
        plural = "s" if len(missed) > 1 else ""
        return text + f" Misses the project's goal{plural}: {'; '.join(missed)}.", "warn"
    return text + " Meets every project goal (flash, TFLM arena, total RAM).", "ok"
