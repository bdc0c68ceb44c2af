"""The budget report of a deployment: ``deploy_report.json`` / ``deploy_report.md``.

:func:`build_report` assembles the figures measured by the other steps (flash, RAM
accounting, MACs and the Cortex-M7 latency estimate, TFLM verification, int8 fidelity, the
memory options, the goals and the paper's figures from :data:`~sea_core.params.QUANT`, the
board budget and its verdict); :func:`write_report` publishes both files;
:func:`check_report` raises when the int8 fidelity is too low or the board is exceeded
(after the report is written).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sea_core.errors import BudgetError, DeployError
from sea_core.params import QUANT, BoardBudget, QuantParams, StudentSpec
from sea_core.storage import publish_text

__all__ = ["latency_estimate", "memory_notes", "build_report", "write_report", "check_report"]


def latency_estimate(macs: int, q: QuantParams = QUANT) -> dict:
    """Seconds per window on a ``q.mcu_hz`` Cortex-M7 at each of ``q.macs_per_cycle``."""
    return {"macs_per_window": int(macs),
            "seconds_per_window": {f"{m:g}": macs / (m * q.mcu_hz) for m in q.macs_per_cycle}}


def memory_notes(opt: dict, q: QuantParams = QUANT) -> list[str]:
    """Report notes of ``--optimize memory``: int4 layers, the options measured, missed goals."""
    notes = []
    if opt["int4_ops"]:
        g = opt["int4_groups"] or 1
        notes.append(f"int4 per-channel filters on ops {opt['int4_ops']} of the int8 graph (largest "
                     f"convs, activations int8), each split into {g} output-channel group(s) + "
                     f"CONCATENATION so that TFLM's int4 unpack scratch is 1/{g} of the filter")
    notes.append(f"option {opt['chosen']!r} chosen among " + ", ".join(
        f"{o['name']} ({o.get('flash_total_bytes', 0):,} B flash / {o.get('arena_bytes', 0):,} B "
        f"arena / {o.get('ram_bytes', 0):,} B RAM)" if "error" not in o
        else f"{o['name']} (fails: TFLM)" for o in opt["options"]))
    best = next(o for o in opt["options"] if o.get("chosen"))
    if opt["missed_goals"]:
        why = [t.get("note") or f"int4 on ops {t['int4_ops']}: {t['model_bytes']:,} B, mean cosine "
               f"{t['mean_cosine']:.4f}" for t in opt["int4_trail"]]
        notes.append(f"memory goals missed: {', '.join(opt['missed_goals'])} (flash <= "
                     f"{q.flash_goal_bytes:,} B, arena <= {q.arena_goal_bytes:,} B, RAM <= "
                     f"{q.ram_goal_bytes:,} B); chose {best['name']!r}, the option that fits the "
                     f"board with the smallest flash + RAM"
                     + (f"; int4 trail: {'; '.join(why)}" if why else ""))
    return notes


def build_report(*, model_name: str, spec: StudentSpec, board: BoardBudget, optimize: str,
                 include_frontend: bool, info, layout: dict, flash: dict, fe_scratch: int,
                 base_macs: int, n_representative: int, n_held_out: int, held_out_split: str,
                 fidelity: dict, memory: dict | None, notes: list[str], tflite_path: Path,
                 q: QuantParams = QUANT) -> dict:
    """The ``deploy_report.json`` dict.

    ``layout`` = the chosen option's ``arena``, ``stitch``, ``app_buffers``, ``macs``,
    ``patched``, ``verification``; ``flash`` = ``model_bytes`` and ``frontend_bytes``;
    ``fidelity`` = :func:`sea_core.deploy.verify.cosine_stats` without its values.
    """
    arena, stitch, app_buffers = layout["arena"], layout["stitch"], layout["app_buffers"]
    macs, patched = layout["macs"], layout["patched"]
    in_bytes = int(np.prod(info.input.shape))
    flash_total = flash["model_bytes"] + flash["frontend_bytes"]
    ram_sum = max(arena, fe_scratch) + app_buffers
    fits = flash_total <= board.flash_bytes and ram_sum <= board.ram_bytes
    goal_key = f"{q.latency_goal_macs_per_cycle:g}"
    lat_chosen = latency_estimate(macs, q)
    lat_int8 = latency_estimate(base_macs, q)
    latency = {"mcu_hz": q.mcu_hz, "macs_per_cycle": list(q.macs_per_cycle),
               "window_seconds": spec.window_seconds, "chosen": lat_chosen, "int8": lat_int8,
               "memory": lat_chosen if patched else None,
               "patch_mac_overhead": (macs / lat_int8["macs_per_window"] - 1) if patched else 0.0,
               "goal_seconds": q.latency_goal_seconds,
               "goal_macs_per_cycle": q.latency_goal_macs_per_cycle,
               "goal_met": lat_chosen["seconds_per_window"][goal_key] <= q.latency_goal_seconds}
    verdict = ("fits" if fits else "OVER BUDGET: " + "; ".join(
        s for s in (f"flash {flash_total:,} B > {board.flash_bytes:,} B"
                    if flash_total > board.flash_bytes else "",
                    f"RAM {ram_sum:,} B > {board.ram_bytes:,} B" if ram_sum > board.ram_bytes else "")
        if s))
    return {
        "model": model_name, "window_samples": int(spec.window_samples),
        "window_seconds": float(spec.window_seconds),
        "tflite_path": str(Path(tflite_path).resolve()), "flash_bytes": int(flash_total),
        "ram_bytes": int(ram_sum), "verdict": verdict,
        "board": {"name": board.name, "flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes},
        "student": {"emb_dim": spec.emb_dim, "head": spec.head,
                    "window_samples": spec.window_samples},
        "mode": optimize, "include_frontend": include_frontend,
        "representative_windows": int(n_representative), "held_out_windows": int(n_held_out),
        "held_out_split": held_out_split,
        "flash": {"model_bytes": flash["model_bytes"], "frontend_bytes": flash["frontend_bytes"],
                  "total_bytes": flash_total},
        "ram": {"arena_bytes": int(arena), "app_buffer_bytes": app_buffers,
                "input_bytes": 0 if include_frontend else in_bytes, "stitch_bytes": stitch,
                "frontend_scratch_bytes": fe_scratch, "frontend_scratch_in_arena": True,
                "total_bytes": int(ram_sum),
                "accounting": ("one arena: " + ("stage A and stage B run one after the other in the "
                               "same arena buffer (max of their TFLM arenas); " if patched else "")
                               + "the front-end scratch reuses the arena buffer before the "
                               "interpreter runs; RAM = max(arena, front-end scratch) + int8 log-mel"
                               + (" + stitched map" if patched else ""))},
        "macs": int(macs),
        "latency": latency, "ops": list(info.ops), "op_counts": info.op_counts,
        "input": {"shape": list(info.input.shape), "scale": info.input.scale,
                  "zero_point": info.input.zero_point},
        "output": {"shape": list(info.output.shape), "scale": info.output.scale,
                   "zero_point": info.output.zero_point},
        "verification": layout["verification"], "fidelity": fidelity, "memory": memory,
        "goals": {"flash_goal_bytes": q.flash_goal_bytes, "arena_goal_bytes": q.arena_goal_bytes,
                  "ram_goal_bytes": q.ram_goal_bytes,
                  "flash_met": flash_total <= q.flash_goal_bytes, "arena_met": arena <= q.arena_goal_bytes,
                  "ram_met": ram_sum <= q.ram_goal_bytes,
                  "latency_goal_seconds": q.latency_goal_seconds,
                  "latency_goal_macs_per_cycle": q.latency_goal_macs_per_cycle,
                  "latency_met": latency["goal_met"]},
        "paper": {"flash_bytes": q.paper_flash_bytes, "ram_bytes": q.paper_ram_bytes,
                  "model": "8-bit Student 2 (128-d), Cortex-M7 2 MB flash / 1 MB RAM"},
        "budget": {"board": board.name, "flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes,
                   "fits": fits, "verdict": verdict},
        "notes": notes + ["arena figures are measured on the x86-64 host build of TFLM "
                          "(64-bit pointers: a Cortex-M arena is a little smaller)",
                          "RAM total = max(arena, front-end scratch) + application buffers "
                          "(the exported sea_embed() runs the front-end in the arena buffer)",
                          f"latency: MACs / ({q.mcu_hz / 1e6:g} MHz x MACs per cycle), "
                          f"an estimate (CMSIS-NN int8 convs sustain ~0.5-2 MACs/cycle on a "
                          f"Cortex-M7); patching recomputes the halo overlaps"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def check_report(report: dict, out_dir: Path, *, q: QuantParams = QUANT) -> None:
    """Raise once the report is written: int8 fidelity below ``q.min_mean_cosine``
    (:class:`DeployError`) or over the board budget (:class:`BudgetError`)."""
    fid = report["fidelity"]
    if fid["mean"] < q.min_mean_cosine:
        raise DeployError(f"int8 fidelity too low: mean cosine {fid['mean']:.4f} < "
                          f"{q.min_mean_cosine} on {fid['n']} held-out windows "
                          f"(min {fid['min']:.4f}); report in {out_dir}")
    if not report["budget"]["fits"]:
        raise BudgetError(f"{report['model']} does not fit board {report['budget']['board']}: "
                          f"{report['verdict'][len('OVER BUDGET: '):]} "
                          f"(report: {Path(out_dir) / 'deploy_report.md'})")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    """``deploy_report.json`` and ``deploy_report.md`` (a table of the headline figures)."""
    out_dir = Path(out_dir)
    jp = out_dir / "deploy_report.json"
    publish_text(jp, json.dumps(report, indent=2, sort_keys=False, default=_json_default) + "\n")
    b = report["budget"]
    rows = [
        ("model", report["model"]), ("mode", report["mode"]),
        ("board", f"{b['board']} ({b['flash_bytes']:,} B flash / {b['ram_bytes']:,} B RAM)"),
        ("flash: model bytes", report["flash"]["model_bytes"]),
        ("flash: front-end constants", report["flash"]["frontend_bytes"]),
        ("flash: total", report["flash"]["total_bytes"]),
        ("RAM: TFLM arena (peak)", report["ram"]["arena_bytes"]),
        ("RAM: application buffers", report["ram"]["app_buffer_bytes"]),
        ("RAM: front-end scratch", report["ram"]["frontend_scratch_bytes"]),
        ("RAM: total", report["ram"]["total_bytes"]),
        ("MACs per window", report["macs"]),
        ("ops", ", ".join(f"{k} x{v}" for k, v in report["op_counts"].items())),
        ("TFLM == TFLite (BUILTIN_REF)", report["verification"]["tflm_equals_tflite"]),
        ("cosine int8 vs float (min / p5 / median / mean)",
         " / ".join(f"{report['fidelity'][k]:.4f}" for k in ("min", "p5", "median", "mean"))),
        ("TFLM ms per window (host)", report["verification"].get("tflm_ms_per_window")),
        ("verdict", b["verdict"]),
    ]
    md = ["# Deployment report", "", "| item | value |", "|---|---|"]
    md += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    options = (report.get("memory") or {}).get("options")
    if options:
        md += ["", "## Memory options measured (TFLM)", "",
               "| option | flash total B | arena B | mean cosine | TFLM ms | flash goal | arena goal | chosen |",
               "|---|---|---|---|---|---|---|---|"]
        for o in options:
            if "error" in o:
                md.append(f"| {o['name']} | - | - | - | - | - | - | fails: {o['error'][:80]} |")
                continue
            md.append(f"| {o['name']} | {o['flash_total_bytes']:,} | {o['arena_bytes']:,} | "
                      f"{o['mean_cosine']:.4f} | {o['tflm_ms_per_window']:.1f} | "
                      f"{'met' if o['flash_met'] else 'no'} | {'met' if o['arena_met'] else 'no'} | "
                      f"{'yes' if o['chosen'] else ''} |")
    if report.get("notes"):
        md += ["", *[f"- {n}" for n in report["notes"]]]
    mp = out_dir / "deploy_report.md"
    publish_text(mp, "\n".join(md) + "\n")
    return jp, mp


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
