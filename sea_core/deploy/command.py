"""``sea quantize``: :func:`quantize` (the orchestrator of the deploy steps) and its CLI.

Steps, one module each:

1. :mod:`~sea_core.deploy.convert`: load the student (``.keras``; with or without the
   in-model front-end). By default the trunk alone is converted (log-mel input, the
   front-end runs on the device from ``frontend_params.h``); ``include_frontend=True``
   converts the audio-input model instead (and fails loudly if float ops remain).
2. :mod:`~sea_core.deploy.data`: the window length from the training set; the
   representative windows (``QUANT.representative_windows``, seeded, from ``train``) and the
   held-out windows; :mod:`~sea_core.deploy.convert`: ``TFLiteConverter`` full int8.
3. :mod:`~sea_core.deploy.memory`: ``optimize='memory'``: patch-based inference, int4 filters
   in output-channel groups, every option measured in TFLM, the one meeting every goal with
   the smallest arena chosen (else the one fitting the board with the smallest flash + RAM);
   ``int4=True`` with ``optimize='int8'``: ungrouped int4 filters until the flash goal.
4. :mod:`~sea_core.deploy.verify`: TFLite-Micro: smallest arena by bisection, the arena the
   interpreter reports, output bit-exact with the TFLite reference kernels on held-out
   windows, int8-vs-float cosine distribution.
5. :mod:`~sea_core.deploy.export`: ``*.tflite``, ``model_data.h/.cc``, ``sea_embed.h/.cc``,
   ``frontend_params.h``; :mod:`~sea_core.deploy.report`: ``deploy_report.json/.md`` (latency
   estimate on a 480 MHz Cortex-M7, the goals and the paper's figures); over the board
   budget -> :class:`BudgetError`.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from sea_core.deploy.convert import convert_int8, load_student, student_trunk
from sea_core.deploy.data import draw_windows, training_window_samples
from sea_core.deploy.export import (export_c, frontend_flash_bytes, frontend_scratch_bytes,
                                    io_defines, patch_defines)
from sea_core.deploy.graph import inspect_model, quantize_input
from sea_core.deploy.memory import choose_int4, optimize_memory
from sea_core.deploy.report import build_report, check_report, memory_notes, write_report
from sea_core.deploy.verify import cosine_stats, int8_outputs, verify_tflm
from sea_core.errors import ParameterError
from sea_core.params import BOARDS, DEFAULT_BOARD, QUANT, BoardBudget, QuantParams

__all__ = ["OPTIMIZE_MODES", "quantize", "build_parser", "main"]

log = logging.getLogger(__name__)

OPTIMIZE_MODES = ("int8", "memory")


def _board(board: str | BoardBudget) -> BoardBudget:
    if isinstance(board, str):
        if board not in BOARDS:
            raise ParameterError(f"unknown board {board!r}; known: {', '.join(BOARDS)}")
        return BOARDS[board]
    return board


def _memory_step(base: bytes, float_out, held_x, x_check, *, optimize: str, int4: bool, fe_flash: int,
                 fe_scratch: int, board: BoardBudget, q: QuantParams):
    """(final model, optimize_memory result or None, report 'memory' section or None, notes)."""
    if optimize == "memory":
        opt = optimize_memory(base, float_out, held_x, x_check, fe_flash=fe_flash,
                              fe_scratch=fe_scratch, board=board, q=q)
        memory = {"int4_ops": opt["int4_ops"], "int4_groups": opt["int4_groups"],
                  "int4_trail": opt["int4_trail"], "int8_model_bytes": len(base),
                  "chosen": opt["chosen"], "options": opt["options"],
                  "missed_goals": opt["missed_goals"]}
        if opt["missed_goals"]:
            log.warning("quantize --optimize memory: goal(s) missed: %s", ", ".join(opt["missed_goals"]))
        return opt["model"], opt, memory, memory_notes(opt, q)
    if not int4:
        return base, None, None, []
    final, int4_ops, trail = choose_int4(base, float_out, held_x, flash_goal=q.flash_goal_bytes - fe_flash,
                                         q=q)
    notes = []
    if int4_ops:
        notes.append(f"int4 per-channel filters on ops {int4_ops} (largest convs), "
                     f"activations int8; int8 model {len(base):,} B -> {len(final):,} B. TFLM "
                     f"unpacks an int4 filter into an arena scratch buffer of its int8 size, "
                     f"so the arena grows by the largest int4 filter")
    return final, None, {"int4_ops": int4_ops, "int4_trail": trail, "int8_model_bytes": len(base)}, notes


def _layout(final: bytes, opt: dict | None, info, x_check, *, include_frontend: bool, q: QuantParams):
    """The chosen option as deployed: C arrays, defines, arena, buffers, verification, MACs."""
    in_bytes = int(np.prod(info.input.shape))
    if opt is not None and opt["patched"]:
        pm = opt["pm"]
        plan = pm["plan"]
        defines, tables = patch_defines(plan, pm, int(info.input.shape[-1]))
        verification = {"tflm_equals_tflite": True, "checked_windows": len(x_check),
                        "tflm_ms_per_window": pm["tflm_ms_per_window"],
                        "one_arena_bytes": pm["arena_bytes"],
                        "stage_a_min_arena_bytes": pm["arena_a"], "stage_b_min_arena_bytes": pm["arena_b"],
                        "stage_a_arena_used_bytes": pm["arena_used_a"],
                        "stage_b_arena_used_bytes": pm["arena_used_b"],
                        "both_stages_resident_bytes": pm["both_resident_bytes"],
                        "mcunet_peak_bytes": pm["mcunet_peak_bytes"]}
        note = (f"patch-based inference: ops[:{plan.split}] run on {plan.n_patches} patches of "
                f"{plan.patch[0]}x{plan.patch[1]}, then ops[{plan.split}:] on the stitched map "
                f"({plan.stitch_bytes:,} B); both stages run one after the other in ONE arena of "
                f"max(stage A {pm['arena_a']:,}, stage B {pm['arena_b']:,}) = {pm['arena_bytes']:,} B "
                f"(verified in TFLM at that size: stage A's interpreter released before stage B's "
                f"is built; exported as sea_embed() in sea_embed.cc)")
        return {"patched": True,
                "stages": {"sea_stage_a_model": pm["stage_a"], "sea_stage_b_model": pm["stage_b"]},
                "defines": defines, "tables": tables, "arena": pm["arena_bytes"],
                "stitch": plan.stitch_bytes, "app_buffers": in_bytes + plan.stitch_bytes,
                "verification": verification, "macs": plan.macs, "notes": [note],
                "memory": {"patch_plan": plan.as_dict(), "arena_bytes": pm["arena_bytes"],
                           "mcunet_peak_bytes": pm["mcunet_peak_bytes"],
                           "both_resident_bytes": pm["both_resident_bytes"]}}
    v = (opt or {}).get("pm", {}).get("verification") or verify_tflm(final, x_check, q=q)
    return {"patched": False, "stages": {"sea_model": final},
            "defines": {"SEA_PATCHED": 0, "SEA_ARENA_BYTES": v["min_arena_bytes"]}, "tables": {},
            "arena": v["min_arena_bytes"], "stitch": 0,
            "app_buffers": 0 if include_frontend else in_bytes,   # the int8 log-mel sea_embed() fills
            "verification": v, "macs": info.macs, "notes": [], "memory": {}}


def quantize(model, data_dir, out_dir, *, board: str | BoardBudget = DEFAULT_BOARD,
             include_frontend: bool = False, optimize: str = "int8", int4: bool = False,
             emb_dim: int | None = None, q: QuantParams = QUANT) -> dict:
    """Convert, verify, export; returns the report dict (also written to ``out_dir``).

    Raises
    ------
    ParameterError
        Unknown board / mode, emb_dim mismatch, not a student.
    DataError, SchemaError
        The training set is missing, too small, of another schema or of a window length
        that does not fit the model.
    DeployError
        Conversion leaves float ops, TFLM fails (its text included), TFLM and
        TFLite disagree, or the mean cosine is below ``q.min_mean_cosine``.
    BudgetError
        Flash or RAM exceeds the board (the report files are written first).
    """
    if optimize not in OPTIMIZE_MODES:
        raise ParameterError(f"optimize must be one of {OPTIMIZE_MODES}, got {optimize!r}")
    board = _board(board)
    if include_frontend and (optimize == "memory" or int4):
        raise ParameterError("--optimize memory patches the log-mel trunk; use it without "
                             "--include-frontend")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(f"--out {out_dir}: exists and is not a directory")
    student = load_student(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    if emb_dim is not None and int(student.output.shape[-1]) != emb_dim:
        raise ParameterError(f"the model outputs {int(student.output.shape[-1])}-d embeddings, "
                             f"--emb-dim says {emb_dim}")
    net, spec = student_trunk(student, window_samples=training_window_samples(data_dir),
                              include_frontend=include_frontend, where=f"{data_dir}/train")
    model_name = str(model) if isinstance(model, (str, os.PathLike)) else model.name

    windows = draw_windows(data_dir, spec.window_samples, include_frontend=include_frontend, q=q)
    held_x = windows.held_out
    log.info("converting %s (%d representative windows)", net.name, len(windows.representative))
    base = convert_int8(net, windows.representative)
    float_out = np.asarray(net.predict(held_x, batch_size=64, verbose=0), dtype=np.float32)

    frontend = None if include_frontend else spec.frontend
    fe_scratch = 0 if include_frontend else frontend_scratch_bytes(spec.frontend, spec.window_samples)
    x_check = quantize_input(held_x[:min(q.tflm_check_windows, len(held_x))], inspect_model(base).input)
    final, opt, memory, notes = _memory_step(
        base, float_out, held_x, x_check, optimize=optimize, int4=int4, board=board, q=q,
        fe_flash=frontend_flash_bytes(spec.frontend, spec.window_samples), fe_scratch=fe_scratch)
    info = inspect_model(final)
    fidelity = cosine_stats(int8_outputs(final, held_x)[1], float_out)
    fidelity.pop("values")

    lay = _layout(final, opt, info, x_check, include_frontend=include_frontend, q=q)
    notes += lay["notes"]
    if memory is not None:
        memory.update(lay["memory"])
    defines = {**lay["defines"], **io_defines(
        info.input.shape, window_samples=spec.window_samples, output_bytes=int(np.prod(info.output.shape)),
        fe_scratch=fe_scratch, arena=lay["arena"], app_buffers=lay["app_buffers"])}
    model_flash, fe_flash = export_c(out_dir, model=final, stages=lay["stages"], defines=defines,
                                     tables=lay["tables"], frontend=frontend,
                                     window_samples=spec.window_samples, input_scale=info.input.scale,
                                     input_zero_point=info.input.zero_point, q=q)
    if include_frontend:
        notes.append("front-end inside the model: no frontend_params.h")
    report = build_report(
        model_name=model_name, spec=spec, board=board, optimize=optimize,
        include_frontend=include_frontend, info=info, layout=lay,
        flash={"model_bytes": model_flash, "frontend_bytes": fe_flash}, fe_scratch=fe_scratch,
        base_macs=int(inspect_model(base).macs), n_representative=len(windows.representative),
        n_held_out=len(held_x), held_out_split=windows.held_out_split, fidelity=fidelity,
        memory=memory, notes=notes, tflite_path=out_dir / "model.tflite", q=q)
    write_report(out_dir, report)
    check_report(report, out_dir, q=q)
    return report


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sea quantize", description=(
        "Full-int8 TFLite of a SEA student, verified in TFLite-Micro, exported as C arrays with "
        "a flash/RAM report against a board budget."))
    ap.add_argument("model", help="student .keras file (audio or log-mel input)")
    ap.add_argument("--data", required=True, help="training set directory (DIR/{train,validate,test})")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--board", default=DEFAULT_BOARD, choices=sorted(BOARDS),
                    help=f"budget to check against (default {DEFAULT_BOARD})")
    ap.add_argument("--include-frontend", action="store_true",
                    help="convert the audio-input model (front-end inside the model)")
    ap.add_argument("--optimize", default="int8", choices=OPTIMIZE_MODES,
                    help="int8: plain full-int8 model; memory: patch-based inference of the early "
                         "blocks (both stages in one arena, in sequence) until the arena and RAM "
                         "goals are met, plus int4 filters split into output-channel groups if "
                         "needed for the flash goal (each option measured in TFLM, listed in "
                         "deploy_report.json; if no option meets every goal, the one fitting the "
                         "board with the smallest flash + RAM, and the missed goal is reported)")
    ap.add_argument("--int4", action="store_true",
                    help="with --optimize int8: ungrouped int4 per-channel filters for the largest "
                         "convs until the model fits the flash goal (costs arena: TFLM unpacks int4 "
                         "filters into scratch); --optimize memory decides on int4 itself")
    ap.add_argument("--emb-dim", type=int, default=None,
                    help="expected embedding dim (checked against the model)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = quantize(args.model, args.data, args.out, board=args.board,
                      include_frontend=args.include_frontend, optimize=args.optimize,
                      int4=args.int4, emb_dim=args.emb_dim)
    print(Path(args.out, "deploy_report.md").read_text())
    log.info("verdict: %s", report["budget"]["verdict"])
    return 0
