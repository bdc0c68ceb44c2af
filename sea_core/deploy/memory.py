"""Memory planning of a deployment: patch-based inference, int4 filters, the option search.

* :func:`patch_model`: plan, split and verify patch-based inference of the early blocks
  (:mod:`sea_core.deploy.patch`); both stages run one after the other in ONE arena of
  max(stage A, stage B).
* :func:`int4_steps`: int4 per-channel filters on the largest weight ops, one more at a
  time, while the mean int8-vs-float cosine stays >= ``QUANT.int4_min_mean_cosine``
  (shared by ``--optimize memory`` and ``--int4``).
* :func:`optimize_memory` (``--optimize memory``): every option (patch, int4 + patch, int4
  in output-channel groups + patch, unpatched int8) measured in TFLM;
  :func:`choose_option` picks the one meeting every goal with the smallest arena, else the
  one fitting the board with the smallest flash + RAM.
* :func:`choose_int4` (``--int4`` with ``--optimize int8``): ungrouped int4 until the flash
  goal is met.
"""
from __future__ import annotations

import logging

import numpy as np

from sea_core.deploy.convert import split_conv_groups, to_int4, weight_ops
from sea_core.deploy.graph import inspect_model
from sea_core.deploy.patch import graph_layers, plan_patches, run_patched, split_model
from sea_core.deploy.verify import (check_bit_exact, int8_outputs, mean_cosine, tflm_arena_used,
                                    tflm_interpreter, tflm_invoke, tflm_min_arena, verify_tflm)
from sea_core.errors import DeployError
from sea_core.params import QUANT, BoardBudget, QuantParams

__all__ = ["ram_total", "run_sequenced", "patch_model", "int4_steps", "choose_int4", "missed_goals",
           "choose_option", "optimize_memory"]

log = logging.getLogger(__name__)


def ram_total(arena: int, *, fe_scratch: int, input_bytes: int, stitch_bytes: int = 0) -> int:
    """RAM a firmware needs with the exported ``sea_embed``: ONE arena buffer (the front-end
    scratch reuses it before the interpreters run; patched stages run in it one after the
    other) + the int8 log-mel + the stitched map of patch-based inference."""
    return max(int(arena), int(fe_scratch)) + int(input_bytes) + int(stitch_bytes)


def run_sequenced(stage_a: bytes, stage_b: bytes, plan, x_int8: np.ndarray, arena: int) -> np.ndarray:
    """Patch-based inference as the exported firmware runs it: per window, a TFLM interpreter
    for stage A in an ``arena``-byte arena runs every patch (valid outputs copied into the
    stitched map), is released, then a stage-B interpreter in an arena of the SAME size runs
    the stitched map. Raises :class:`DeployError` (TFLM's text) if ``arena`` is too small."""
    out = []
    for x in x_int8:
        state = {}

        def run_a(z):
            if "a" not in state:
                state["a"] = tflm_interpreter(stage_a, arena)
            return tflm_invoke(state["a"], z)

        def run_b(z):
            state.pop("a", None)                     # stage A's interpreter is gone first
            ib = tflm_interpreter(stage_b, arena)
            return tflm_invoke(ib, z)

        out.append(run_patched(x[None], plan, run_a, run_b)[0])
    return np.stack(out)


def patch_model(model_bytes: bytes, x_int8: np.ndarray, *, arena_goal: int, ram_goal: int | None = None,
                fe_scratch: int = 0, q: QuantParams = QUANT) -> dict:
    """Plan, split and verify patch-based inference; returns stages, plan and measured figures.

    Memory accounting (one arena): the two stages run one after the other in the same
    arena buffer, so ``arena_bytes`` = max(stage A, stage B) smallest TFLM arenas (exact to
    the byte); the stitched map lives outside the arena (it is filled while stage A runs
    and copied into stage B's input). The plan's estimate is corrected by the measured
    TFLM figures (up to 4 tries). Verification: :func:`run_sequenced` at that one arena size
    equals the unpatched model's TFLite reference output bit for bit on ``x_int8``.
    """
    ram_goal = q.ram_goal_bytes if ram_goal is None else ram_goal
    in_bytes = int(np.prod(inspect_model(model_bytes).input.shape))
    goal = arena_goal
    for _ in range(4):
        plan = plan_patches(model_bytes, peak_goal=goal)
        a_bytes, b_bytes = split_model(model_bytes, plan)
        arena_a = tflm_min_arena(a_bytes, q, granularity=1)
        arena_b = tflm_min_arena(b_bytes, q, granularity=1)
        arena = max(arena_a, arena_b)
        ram = ram_total(arena, fe_scratch=fe_scratch, input_bytes=in_bytes,
                        stitch_bytes=plan.stitch_bytes)
        if (arena <= arena_goal and ram <= ram_goal) or arena_b > arena_goal:
            break                                    # smaller patches cannot shrink stage B
        goal -= max(arena - arena_goal, ram - ram_goal) + 256
    used_a = tflm_arena_used(tflm_interpreter(a_bytes, arena_a))
    used_b = tflm_arena_used(tflm_interpreter(b_bytes, arena_b))
    ms = check_bit_exact(model_bytes, x_int8,
                         lambda xs: run_sequenced(a_bytes, b_bytes, plan, xs, arena),
                         what="patched TFLM output differs from the unpatched int8 model")
    return {"plan": plan, "stage_a": a_bytes, "stage_b": b_bytes,
            "arena_a": arena_a, "arena_b": arena_b, "arena_used_a": used_a, "arena_used_b": used_b,
            "arena_bytes": arena, "input_bytes": in_bytes, "stitch_bytes": plan.stitch_bytes,
            "ram_bytes": ram_total(arena, fe_scratch=fe_scratch, input_bytes=in_bytes,
                                   stitch_bytes=plan.stitch_bytes),
            "mcunet_peak_bytes": max(arena_a + plan.stitch_bytes, arena_b),
            "both_resident_bytes": arena_a + arena_b, "tflm_ms_per_window": ms,
            "tflm_equals_tflite": True, "macs": plan.macs}


def int4_steps(model_bytes: bytes, float_out: np.ndarray, x_float: np.ndarray, trail: list[dict], *,
               order: list[int] | None = None, q: QuantParams = QUANT):
    """Yield (int4 op indices, model bytes, mean cosine) with one more int4 op each time.

    Ops go largest filter first; each candidate is appended to ``trail`` (ops, bytes, mean
    cosine vs ``float_out`` on ``x_float``); the steps stop (nothing yielded) at the first
    candidate whose mean cosine falls below ``q.int4_min_mean_cosine``. Stop iterating to
    stop early (no candidate is built ahead).
    """
    if order is None:
        order = [i for i, _, _ in sorted(weight_ops(model_bytes), key=lambda t: -t[2])]
    ops: list[int] = []
    for oi in order:
        cand = to_int4(model_bytes, ops + [oi])
        cos = mean_cosine(cand, x_float, float_out)
        trail.append({"int4_ops": ops + [oi], "model_bytes": len(cand), "mean_cosine": cos})
        if cos < q.int4_min_mean_cosine:
            log.warning("int4 on op %d drops the mean cosine to %.4f (< %.3f); stopping", oi, cos,
                        q.int4_min_mean_cosine)
            return
        ops = ops + [oi]
        yield ops, cand, cos


def choose_int4(model_bytes: bytes, float_out: np.ndarray, x_float: np.ndarray, *,
                flash_goal: int, q: QuantParams = QUANT) -> tuple[bytes, list[int], list[dict]]:
    """int4 filters for the largest weight ops until ``len(model) <= flash_goal``, fidelity kept.

    Returns (model bytes, int4 op indices, trail of (ops, bytes, mean cosine)).
    """
    current, chosen, trail = model_bytes, [], []
    if len(current) > flash_goal:
        for chosen, current, _ in int4_steps(model_bytes, float_out, x_float, trail, q=q):
            if len(current) <= flash_goal:
                break
    return current, list(chosen), trail


def _option_row(name: str, pm: dict, *, int4_ops, groups, mean_cosine, fe_flash: int, q: QuantParams,
                detail: str, board: BoardBudget | None = None) -> dict:
    flash_model = (len(pm["stage_a"]) + len(pm["stage_b"])) if "stage_a" in pm else len(pm["model"])
    flash_total = flash_model + fe_flash
    ram = int(pm["ram_bytes"])
    row = {"name": name, "detail": detail, "int4_ops": list(int4_ops), "int4_groups": groups,
           "patched": "stage_a" in pm,
           "flash_model_bytes": flash_model, "flash_total_bytes": flash_total,
           "arena_bytes": int(pm["arena_bytes"]), "ram_bytes": ram,
           "stage_a_arena_bytes": pm.get("arena_a"), "stage_b_arena_bytes": pm.get("arena_b"),
           "macs": int(pm["macs"]), "mean_cosine": float(mean_cosine),
           "tflm_ms_per_window": float(pm["tflm_ms_per_window"]), "tflm_equals_tflite": True,
           "flash_met": flash_total <= q.flash_goal_bytes,
           "arena_met": pm["arena_bytes"] <= q.arena_goal_bytes,
           "ram_met": ram <= q.ram_goal_bytes}
    if board is not None:
        row["fits_board"] = flash_total <= board.flash_bytes and ram <= board.ram_bytes
    return row


def missed_goals(o: dict) -> list[str]:
    """The goals (flash, arena, RAM) an option row misses."""
    return [g for g, k in (("flash", "flash_met"), ("arena", "arena_met"), ("RAM", "ram_met"))
            if not o[k]]


def choose_option(options: list[dict]) -> dict:
    """All goals met -> smallest arena (then flash); else the option that fits the board with
    the smallest flash + RAM; else the smallest flash + RAM."""
    ok = [o for o in options if "error" not in o]
    all_met = [o for o in ok if not missed_goals(o)]
    if all_met:
        return min(all_met, key=lambda o: (o["arena_bytes"], o["flash_total_bytes"]))
    fits = [o for o in ok if o.get("fits_board", True)] or ok
    return min(fits, key=lambda o: (o["flash_total_bytes"] + o["ram_bytes"], o["arena_bytes"]))


def _grouped_options(base: bytes, cand: bytes, ops: list[int], cos: float, x_float, x_check,
                     options: list[dict], built: dict, *, pkw: dict, rkw: dict, q: QuantParams) -> None:
    """``int4/G+patch`` for each ``G`` of ``q.int4_groups`` dividing the ops' output channels,
    each checked bit-exact with the ungrouped int4 model ``cand``."""
    ref_out = None
    layers = graph_layers(base)
    for g in q.int4_groups:
        groups = {i: g for i in ops if layers[i].c_out % g == 0}
        if not groups:
            continue
        gb, convs = split_conv_groups(base, groups)
        gm = to_int4(gb, convs)
        if ref_out is None:
            ref_out = int8_outputs(cand, x_float[:len(x_check)])[0]
        got = int8_outputs(gm, x_float[:len(x_check)])[0]
        if not np.array_equal(got, ref_out):
            raise DeployError(f"grouped int4 model (G={g}) is not bit-exact with the "
                              f"ungrouped int4 model")
        name = f"int4{ops}/G{g}+patch"
        try:
            pm = patch_model(gm, x_check, **pkw)
        except DeployError as exc:         # e.g. more CONCATENATION inputs than TFLM allows
            log.warning("int4 groups G=%d: %s", g, exc)
            options.append({"name": name, "int4_ops": list(ops), "int4_groups": g, "error": str(exc)})
            continue
        options.append(_option_row(name, pm, int4_ops=ops, groups=g, mean_cosine=cos, **rkw,
                                   detail=f"int4 filters split into {g} output-channel groups "
                                          f"+ CONCATENATION (bit-exact with ungrouped int4)"))
        built[name] = (gm, pm)


def optimize_memory(base: bytes, float_out: np.ndarray, x_float: np.ndarray, x_check: np.ndarray, *,
                    fe_flash: int, fe_scratch: int = 0, board: BoardBudget | None = None,
                    q: QuantParams = QUANT) -> dict:
    """Patch-based inference, plus grouped int4 filters if the flash goal needs them.

    Options, each verified in TFLM (smallest arena by bisection, patched TFLM output
    bit-exact with the TFLite reference kernels on ``x_check``):

    1. ``patch``: the int8 model with patch-based inference of the early blocks.
    2. If its flash (both stages + front-end constants) exceeds ``q.flash_goal_bytes``:
       int4 per-channel filters on the largest convs (:func:`int4_steps`). For an op set
       that reaches the flash goal: ``int4+patch`` (ungrouped: TFLM unpacks each int4
       filter into an arena scratch of its int8 size) and ``int4/G+patch`` for ``G`` in
       ``q.int4_groups`` (output-channel groups, :func:`sea_core.deploy.convert.split_conv_groups`:
       the scratch of one op is 1/G of the filter; bit-exact with ungrouped int4).
    3. ``int8``: the unpatched int8 model (one stage), for the case no patched option helps.

    Arena = the one TFLM arena both stages run in, in sequence (:func:`patch_model`); RAM =
    :func:`ram_total`. The option is chosen by :func:`choose_option`; the report names the
    goals it misses.

    Returns ``{"model": single-model bytes, "pm": patch_model result (or the unpatched
    figures with its ``verification``), "options": [...], "chosen": name, "patched": bool,
    "missed_goals": [...], "int4_ops": [...], "int4_groups": G or None, "int4_trail": [...]}``.
    """
    options: list[dict] = []
    built: dict[str, tuple[bytes, dict]] = {}
    base_cos = mean_cosine(base, x_float, float_out)
    pkw = dict(arena_goal=q.arena_goal_bytes, ram_goal=q.ram_goal_bytes, fe_scratch=fe_scratch, q=q)
    rkw = dict(fe_flash=fe_flash, q=q, board=board)
    pm = patch_model(base, x_check, **pkw)
    options.append(_option_row("patch", pm, int4_ops=[], groups=None, mean_cosine=base_cos,
                               detail="int8 weights, patch-based inference", **rkw))
    built["patch"] = (base, pm)
    trail: list[dict] = []
    sizes = {i: n for i, _, n in weight_ops(base)}
    order = sorted(sizes, key=lambda i: -sizes[i])
    floor = len(to_int4(base, order)) + fe_flash if order and not options[0]["flash_met"] else None
    if not options[0]["flash_met"] and floor is not None and floor > q.flash_goal_bytes:
        log.warning("even int4 filters on every conv give %d B of flash > %d B: int4 not tried",
                    floor, q.flash_goal_bytes)
        trail.append({"int4_ops": order, "model_bytes": floor - fe_flash, "mean_cosine": None,
                      "note": "all weight ops int4 still over the flash goal; not tried"})
    elif not options[0]["flash_met"]:
        for ops, cand, cos in int4_steps(base, float_out, x_float, trail, order=order, q=q):
            if len(cand) + fe_flash <= q.flash_goal_bytes:
                pm = patch_model(cand, x_check, **pkw)
                name = f"int4{ops}+patch"
                options.append(_option_row(name, pm, int4_ops=ops, groups=1, mean_cosine=cos, **rkw,
                                           detail="int4 filters ungrouped: TFLM unpacks each into an "
                                                  "arena scratch of its int8 size"))
                built[name] = (cand, pm)
                _grouped_options(base, cand, ops, cos, x_float, x_check, options, built,
                                 pkw=pkw, rkw=rkw, q=q)
            if any(o.get("flash_met") and o.get("arena_met") for o in options):
                break
    v = verify_tflm(base, x_check, q=q)
    info = inspect_model(base)
    pm_int8 = {"model": base, "arena_bytes": v["min_arena_bytes"], "verification": v,
               "ram_bytes": ram_total(v["min_arena_bytes"], fe_scratch=fe_scratch,
                                      input_bytes=int(np.prod(info.input.shape))),
               "macs": int(info.macs), "tflm_ms_per_window": v["tflm_ms_per_window"]}
    options.append(_option_row("int8", pm_int8, int4_ops=[], groups=None, mean_cosine=base_cos,
                               detail="int8 weights, no patching (one stage)", **rkw))
    built["int8"] = (base, pm_int8)
    best = choose_option(options)
    for o in options:
        o["chosen"] = o is best
    model, pm = built[best["name"]]
    return {"model": model, "pm": pm, "options": options, "chosen": best["name"],
            "patched": best["patched"], "missed_goals": missed_goals(best),
            "int4_ops": best["int4_ops"], "int4_groups": best["int4_groups"], "int4_trail": trail}
