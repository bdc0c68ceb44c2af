"""``sea quantize``: full-int8 TFLite of a student, TFLM verification, C export, budget report.

Steps (:func:`quantize`):

1. Load the student (``.keras``; with or without the in-model front-end). By
   default the trunk alone is converted (log-mel input, the front-end runs on
   the device from ``frontend_params.h``); ``include_frontend=True`` converts
   the audio-input model instead (and fails loudly if float ops remain).
2. Representative dataset: ``QUANT.representative_windows`` windows drawn
   (seeded) from the training set's ``train`` split ``student_audio`` column,
   int16 -> float32 / 32768, log-mel by :func:`sea_core.models.layers.student_frontend`.
   ``TFLiteConverter.from_keras_model`` with int8 input/output, per-channel
   weights; the op list and tensor dtypes are asserted afterwards.
3. ``optimize='memory'`` (:func:`optimize_memory`): patch-based inference of
   the early blocks (:mod:`sea_core.deploy_patch`; both stages run one after the
   other in ONE arena of max(stage A, stage B)) until the arena fits
   ``QUANT.arena_goal_bytes`` and the RAM ``QUANT.ram_goal_bytes``; if flash is still
   above ``QUANT.flash_goal_bytes``, int4 filters for the largest convs (while the mean
   cosine stays >= ``QUANT.int4_min_mean_cosine``), each split into output-channel groups
   so that TFLM's int4 unpack scratch stays inside the arena goal; the unpatched int8
   model is an option too. Every option is measured in TFLM and recorded in the report;
   the one meeting every goal with the smallest arena is used, else the one fitting the
   board with the smallest flash + RAM (the report names the missed goals).
   ``int4=True`` with ``optimize='int8'`` applies ungrouped int4 filters to the
   unpatched model.
4. Verification in TFLite-Micro: smallest arena by bisection, the arena the
   interpreter reports, output bit-exact with the TFLite reference kernels on
   held-out windows, int8-vs-float cosine distribution on held-out windows.
5. Export: ``*.tflite``, ``model_data.h/.cc``, ``sea_embed.h/.cc`` (the stage sequencing a
   firmware calls), ``frontend_params.h``, ``deploy_report.json/.md`` (with the latency
   estimate on a 480 MHz Cortex-M7, the goals and the paper's figures); over the board
   budget -> :class:`BudgetError`.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from sea_core.errors import BudgetError, DataError, DeployError, ParameterError
from sea_core.params import BOARDS, DEFAULT_BOARD, QUANT, BoardBudget, QuantParams, StudentSpec

__all__ = ["load_trunk", "read_student_audio", "student_logmels", "convert_int8", "cosine_stats",
           "verify_tflm", "optimize_memory", "quantize", "main", "OPTIMIZE_MODES"]

log = logging.getLogger(__name__)

OPTIMIZE_MODES = ("int8", "memory")


# --------------------------------------------------------------------------- model
def _batch1(model):
    """The same network with a static batch of 1 (static RESHAPE, no SHAPE/PACK chain)."""
    import keras

    inp = keras.Input(shape=tuple(model.input.shape[1:]), batch_size=1, dtype="float32",
                      name=model.input.name if hasattr(model.input, "name") else "input")
    return keras.Model(inp, model(inp), name=f"{model.name}_b1")


def load_trunk(model_or_path, *, include_frontend: bool = False):
    """(network to convert, StudentSpec) from a student model or ``.keras`` path.

    A model whose input is audio (the exported form) is cut back to its
    log-mel trunk by rebuilding :func:`build_student` without the front-end and
    copying every weighted layer by name; ``include_frontend=True`` keeps the
    audio input.

    Raises
    ------
    ParameterError
        The file is missing or is not a SEA student.
    """
    import keras

    from sea_core.models.students import PROJECTION_LAYER, build_student
    from sea_core.params import STUDENT_MEL64

    if isinstance(model_or_path, (str, os.PathLike)):
        from sea_core.models.store import load_keras_student

        path = Path(model_or_path)
        if not path.exists():
            raise ParameterError(f"{path}: no such model file")
        if path.is_file() and path.suffix.lower() != ".keras":
            raise ParameterError(f"{path}: not a .keras model file (suffix {path.suffix!r})")
        # corrupt / text / Lambda (refused by Keras' safe mode) archives -> one-line ModelError
        model = load_keras_student(path)
    else:
        model = model_or_path
    rank = len(model.input.shape)
    names = {l.name for l in model.layers}
    if "audio_embedding_layer" not in names and not any(
            "audio_embedding_layer" in {x.name for x in getattr(l, "layers", [])} for l in model.layers):
        raise ParameterError(f"{model.name}: not a SEA student (no 'audio_embedding_layer')")
    emb_dim = int(model.output.shape[-1])
    head = "linear" if PROJECTION_LAYER in names else "relu"
    if rank == 4:
        n_frames = int(model.input.shape[2])
        window_seconds = n_frames * STUDENT_MEL64.hop_length / STUDENT_MEL64.sample_rate
        spec = StudentSpec(emb_dim=emb_dim, window_seconds=window_seconds, head=head)
        if include_frontend:
            raise ParameterError(f"{model.name} takes log-mel input; it has no front-end to include")
        return model, spec
    if rank != 2:
        raise ParameterError(f"{model.name}: input shape {model.input.shape} is neither audio nor log-mel")
    spec = StudentSpec(emb_dim=emb_dim, head=head,
                       window_seconds=int(model.input.shape[1]) / STUDENT_MEL64.sample_rate)
    if include_frontend:
        return model, spec
    trunk = build_student(spec, with_frontend=False)
    src = {l.name: l for l in model.layers}
    for layer in trunk.layers:
        if layer.weights:
            if layer.name not in src:
                raise ParameterError(f"{model.name}: layer {layer.name!r} of the trunk is missing")
            layer.set_weights(src[layer.name].get_weights())
    return trunk, spec


# --------------------------------------------------------------------------- data
def _split_files(data_dir: Path, split: str) -> list[str]:
    from sea_core import storage

    if storage.is_url(data_dir):  # a training set on an object store (sea run --out s3://...)
        return storage.glob(storage.join(data_dir, split, "part-*.parquet"))
    return sorted(glob.glob(str(Path(data_dir) / split / "part-*.parquet")))


def read_student_audio(data_dir, split: str, n: int, *, seed: int, exclude: int = 0,
                       window_samples: int | None = None) -> np.ndarray:
    """Draw ``n`` windows (seeded, without replacement) of ``student_audio`` from ``split``.

    Returns int16 [n, S] (fewer if the split holds fewer).

    Raises
    ------
    DataError
        No part files in ``DIR/<split>/``, or the window length does not match.
    SchemaError
        The files are not a training set of the supported version.
    """
    import fsspec
    import pyarrow.parquet as pq

    from sea_core.schema import TRAINING_SCHEMA_VERSION, check_schema

    files = _split_files(data_dir, split)
    if not files:
        raise DataError(f"{data_dir}/{split}: no part-*.parquet files (is this a training set?)")
    chunks = []
    for f in files:
        pf = pq.ParquetFile(fsspec.open(f, "rb").open() if "://" in f else f)
        check_schema(pf.schema_arrow, "training", TRAINING_SCHEMA_VERSION, where=f,
                     required=["student_audio"])
        col = pf.read(columns=["student_audio"]).column("student_audio").combine_chunks()
        width = col.type.list_size
        chunks.append(col.values.to_numpy(zero_copy_only=False).reshape(-1, width))
    audio = np.concatenate(chunks).astype(np.int16, copy=False)
    if window_samples is not None and audio.shape[1] != window_samples:
        raise DataError(f"{data_dir}/{split}: student_audio holds {audio.shape[1]} samples per "
                        f"window, the model expects {window_samples}")
    order = np.random.default_rng(seed).permutation(len(audio))
    return audio[order[exclude:exclude + n]]


def student_logmels(audio_int16: np.ndarray, *, batch: int = 64) -> np.ndarray:
    """int16 8-kHz windows -> float32 log-mel [N, 64, F, 1] through THE student front-end."""
    import tensorflow as tf

    from sea_core.models.layers import student_frontend

    out = []
    for i in range(0, len(audio_int16), batch):
        x = tf.constant(audio_int16[i:i + batch].astype(np.float32) / 32768.0)
        out.append(np.asarray(student_frontend(x), dtype=np.float32))
    return np.concatenate(out)


# --------------------------------------------------------------------------- conversion
def convert_int8(model, representative: np.ndarray) -> bytes:
    """Full-integer int8 ``.tflite`` (int8 I/O, per-channel weights), dtypes and ops asserted.

    Raises
    ------
    DeployError
        The converter fails or leaves float ops / tensors in the model.
    """
    import tensorflow as tf

    from sea_core.deploy_tflm import assert_full_int8, inspect_model

    m1 = _batch1(model)
    rep = np.asarray(representative, dtype=np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(m1)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # the Keras export banner
            data = conv.convert()
    except Exception as exc:  # noqa: BLE001  (the converter raises many types)
        raise DeployError(f"TFLite conversion of {model.name} failed: {exc}") from exc
    assert_full_int8(inspect_model(data), where=model.name)
    return bytes(data)


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-row cosine of a vs b: min / p5 / median / mean / n (zero rows count as 1 if both are zero)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both0 = (na == 0) & (nb == 0)
    cos = np.where(both0, 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-30))
    return {"n": int(len(cos)), "min": float(cos.min()), "p5": float(np.percentile(cos, 5)),
            "median": float(np.median(cos)), "mean": float(cos.mean()), "values": cos}


def _int8_outputs(model_bytes: bytes, x_float: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 outputs, dequantised outputs) of the TFLite reference kernels on float inputs."""
    from sea_core.deploy_tflm import (dequantize_output, inspect_model, litert_reference,
                                      litert_run, quantize_input)

    info = inspect_model(model_bytes)
    xq = quantize_input(x_float, info.input)
    y = litert_run(litert_reference(model_bytes), xq)
    return y, dequantize_output(y, info.output)


def verify_tflm(model_bytes: bytes, x_int8: np.ndarray, *, q: QuantParams = QUANT) -> dict:
    """Smallest arena, reported arena, TFLM == TFLite (BUILTIN_REF) and ms per window.

    Raises
    ------
    DeployError
        TFLM cannot load or run the model (TFLM's own text included), or its
        output differs from the reference kernels.
    """
    from sea_core.deploy_tflm import (litert_reference, litert_run, tflm_arena_used,
                                      tflm_interpreter, tflm_invoke, tflm_min_arena)

    arena = tflm_min_arena(model_bytes, q, granularity=1)
    interp = tflm_interpreter(model_bytes, arena)
    used = tflm_arena_used(interp)
    t0 = time.perf_counter()
    ys = np.stack([tflm_invoke(interp, x[None])[0] for x in x_int8])
    ms = (time.perf_counter() - t0) * 1000 / len(x_int8)
    ref = litert_run(litert_reference(model_bytes), x_int8)
    diff = int(np.abs(ys.astype(np.int32) - ref.astype(np.int32)).max())
    if diff:
        raise DeployError(f"TFLM output differs from the TFLite reference kernels by up to {diff} "
                          f"int8 units on {len(x_int8)} windows")
    return {"min_arena_bytes": int(arena), "arena_used_bytes": int(used), "tflm_equals_tflite": True,
            "tflm_ms_per_window": float(ms), "checked_windows": int(len(x_int8))}


# --------------------------------------------------------------------------- memory work
def choose_int4(model_bytes: bytes, float_out: np.ndarray, x_float: np.ndarray, *,
                flash_goal: int, q: QuantParams = QUANT) -> tuple[bytes, list[int], list[dict]]:
    """int4 filters for the largest weight ops until ``len(model) <= flash_goal``, fidelity kept.

    Returns (model bytes, int4 op indices, trail of (ops, bytes, mean cosine)).
    """
    from sea_core.deploy_patch import to_int4, weight_ops

    order = [i for i, _, _ in sorted(weight_ops(model_bytes), key=lambda t: -t[2])]
    chosen: list[int] = []
    current = model_bytes
    trail = []
    for oi in order:
        if len(current) <= flash_goal:
            break
        cand = to_int4(model_bytes, chosen + [oi])
        cos = cosine_stats(_int8_outputs(cand, x_float)[1], float_out)
        trail.append({"int4_ops": chosen + [oi], "model_bytes": len(cand), "mean_cosine": cos["mean"]})
        if cos["mean"] < q.int4_min_mean_cosine:
            log.warning("int4 on op %d drops the mean cosine to %.4f; stopping", oi, cos["mean"])
            break
        chosen.append(oi)
        current = cand
    return current, chosen, trail


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
    from sea_core.deploy_patch import run_patched
    from sea_core.deploy_tflm import tflm_interpreter, tflm_invoke

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
    from sea_core.deploy_patch import plan_patches, split_model
    from sea_core.deploy_tflm import (inspect_model, litert_reference, litert_run, tflm_arena_used,
                                      tflm_interpreter, tflm_min_arena)

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
    t0 = time.perf_counter()
    ys = run_sequenced(a_bytes, b_bytes, plan, x_int8, arena)
    ms = (time.perf_counter() - t0) * 1000 / len(x_int8)
    ref = litert_run(litert_reference(model_bytes), x_int8)
    diff = int(np.abs(ys.astype(np.int32) - ref.astype(np.int32)).max())
    if diff:
        raise DeployError(f"patched TFLM output differs from the unpatched int8 model by up to "
                          f"{diff} int8 units")
    return {"plan": plan, "stage_a": a_bytes, "stage_b": b_bytes,
            "arena_a": arena_a, "arena_b": arena_b, "arena_used_a": used_a, "arena_used_b": used_b,
            "arena_bytes": arena, "input_bytes": in_bytes, "stitch_bytes": plan.stitch_bytes,
            "ram_bytes": ram_total(arena, fe_scratch=fe_scratch, input_bytes=in_bytes,
                                   stitch_bytes=plan.stitch_bytes),
            "mcunet_peak_bytes": max(arena_a + plan.stitch_bytes, arena_b),
            "both_resident_bytes": arena_a + arena_b, "tflm_ms_per_window": ms,
            "tflm_equals_tflite": True, "macs": plan.macs}


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


def _missed(o: dict) -> list[str]:
    return [g for g, k in (("flash", "flash_met"), ("arena", "arena_met"), ("RAM", "ram_met"))
            if not o[k]]


def choose_option(options: list[dict]) -> dict:
    """All goals met -> smallest arena (then flash); else the option that fits the board with
    the smallest flash + RAM; else the smallest flash + RAM."""
    ok = [o for o in options if "error" not in o]
    all_met = [o for o in ok if not _missed(o)]
    if all_met:
        return min(all_met, key=lambda o: (o["arena_bytes"], o["flash_total_bytes"]))
    fits = [o for o in ok if o.get("fits_board", True)] or ok
    return min(fits, key=lambda o: (o["flash_total_bytes"] + o["ram_bytes"], o["arena_bytes"]))


def optimize_memory(base: bytes, float_out: np.ndarray, x_float: np.ndarray, x_check: np.ndarray, *,
                    fe_flash: int, fe_scratch: int = 0, board: BoardBudget | None = None,
                    q: QuantParams = QUANT) -> dict:
    """Patch-based inference, plus grouped int4 filters if the flash goal needs them.

    Options, each verified in TFLM (smallest arena by bisection, patched TFLM output
    bit-exact with the TFLite reference kernels on ``x_check``):

    1. ``patch``: the int8 model with patch-based inference of the early blocks.
    2. If its flash (both stages + front-end constants) exceeds ``q.flash_goal_bytes``:
       int4 per-channel filters on the largest convs, one more at a time, as long
       as the mean cosine (int8 model vs float on ``x_float``) stays >=
       ``q.int4_min_mean_cosine``. For an op set that reaches the flash goal:
       ``int4+patch`` (ungrouped: TFLM unpacks each int4 filter into an arena
       scratch of its int8 size) and ``int4/G+patch`` for ``G`` in
       ``q.int4_groups`` (output-channel groups, :func:`sea_core.deploy_patch.split_conv_groups`:
       the scratch of one op is 1/G of the filter; bit-exact with ungrouped int4).

    3. ``int8``: the unpatched int8 model (one stage), for the case no patched option helps.

    Arena = the one TFLM arena both stages run in, in sequence (:func:`patch_model`); RAM =
    :func:`ram_total`. The configuration meeting the flash, arena and RAM goals with the
    smallest arena (then the smallest flash) is chosen; if none meets them all, the one that
    fits ``board`` with the smallest flash + RAM (:func:`choose_option`); the report names
    the goals it misses.

    Returns ``{"model": single-model bytes, "pm": patch_model result, "options": [...],
    "chosen": name, "int4_ops": [...], "int4_groups": G or None, "int4_trail": [...]}``.
    """
    from sea_core.deploy_patch import graph_layers, split_conv_groups, to_int4, weight_ops

    options: list[dict] = []
    built: dict[str, tuple[bytes, dict]] = {}
    base_cos = cosine_stats(_int8_outputs(base, x_float)[1], float_out)["mean"]
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
        ops: list[int] = []
        for oi in order:
            if any(o.get("flash_met") and o.get("arena_met") for o in options):
                break
            cand = to_int4(base, ops + [oi])
            cos = cosine_stats(_int8_outputs(cand, x_float)[1], float_out)["mean"]
            trail.append({"int4_ops": ops + [oi], "model_bytes": len(cand), "mean_cosine": cos})
            if cos < q.int4_min_mean_cosine:
                log.warning("int4 on op %d drops the mean cosine to %.4f (< %.3f); stopping", oi, cos,
                            q.int4_min_mean_cosine)
                break
            ops.append(oi)
            if len(cand) + fe_flash > q.flash_goal_bytes:
                continue                                    # more int4 layers needed
            pm = patch_model(cand, x_check, **pkw)
            name = f"int4{ops}+patch"
            options.append(_option_row(name, pm, int4_ops=ops, groups=1, mean_cosine=cos, **rkw,
                                       detail="int4 filters ungrouped: TFLM unpacks each into an "
                                              "arena scratch of its int8 size"))
            built[name] = (cand, pm)
            ref_out = None
            layers = graph_layers(base)
            for g in q.int4_groups:
                groups = {i: g for i in ops if layers[i].c_out % g == 0}
                if not groups:
                    continue
                gb, convs = split_conv_groups(base, groups)
                gm = to_int4(gb, convs)
                if ref_out is None:
                    ref_out = _int8_outputs(cand, x_float[:len(x_check)])[0]
                got = _int8_outputs(gm, x_float[:len(x_check)])[0]
                if not np.array_equal(got, ref_out):
                    raise DeployError(f"grouped int4 model (G={g}) is not bit-exact with the "
                                      f"ungrouped int4 model")
                try:
                    pm = patch_model(gm, x_check, **pkw)
                except DeployError as exc:         # e.g. more CONCATENATION inputs than TFLM allows
                    log.warning("int4 groups G=%d: %s", g, exc)
                    options.append({"name": f"int4{ops}/G{g}+patch", "int4_ops": list(ops),
                                    "int4_groups": g, "error": str(exc)})
                    continue
                name = f"int4{ops}/G{g}+patch"
                options.append(_option_row(name, pm, int4_ops=ops, groups=g, mean_cosine=cos, **rkw,
                                           detail=f"int4 filters split into {g} output-channel groups "
                                                  f"+ CONCATENATION (bit-exact with ungrouped int4)"))
                built[name] = (gm, pm)
    v = verify_tflm(base, x_check, q=q)
    in_bytes = int(np.prod(_input_shape(base)))
    pm_int8 = {"model": base, "arena_bytes": v["min_arena_bytes"], "verification": v,
               "ram_bytes": ram_total(v["min_arena_bytes"], fe_scratch=fe_scratch, input_bytes=in_bytes),
               "macs": _macs_of(base), "tflm_ms_per_window": v["tflm_ms_per_window"]}
    options.append(_option_row("int8", pm_int8, int4_ops=[], groups=None, mean_cosine=base_cos,
                               detail="int8 weights, no patching (one stage)", **rkw))
    built["int8"] = (base, pm_int8)
    best = choose_option(options)
    for o in options:
        o["chosen"] = o is best
    model, pm = built[best["name"]]
    return {"model": model, "pm": pm, "options": options, "chosen": best["name"],
            "patched": best["patched"], "missed_goals": _missed(best),
            "int4_ops": best["int4_ops"], "int4_groups": best["int4_groups"], "int4_trail": trail}


def _input_shape(model_bytes: bytes) -> tuple[int, ...]:
    from sea_core.deploy_tflm import inspect_model
    return tuple(inspect_model(model_bytes).input.shape)


def _macs_of(model_bytes: bytes) -> int:
    from sea_core.deploy_tflm import inspect_model
    return int(inspect_model(model_bytes).macs)


def latency_estimate(macs: int, q: QuantParams = QUANT) -> dict:
    """Seconds per window on a ``q.mcu_hz`` Cortex-M7 at each of ``q.macs_per_cycle``."""
    return {"macs_per_window": int(macs),
            "seconds_per_window": {f"{m:g}": macs / (m * q.mcu_hz) for m in q.macs_per_cycle}}


# --------------------------------------------------------------------------- orchestration
def quantize(model, data_dir, out_dir, *, board: str | BoardBudget = DEFAULT_BOARD,
             include_frontend: bool = False, optimize: str = "int8", int4: bool = False,
             emb_dim: int | None = None, q: QuantParams = QUANT) -> dict:
    """Convert, verify, export; returns the report dict (also written to ``out_dir``).

    Raises
    ------
    ParameterError
        Unknown board / mode, emb_dim mismatch, not a student.
    DataError, SchemaError
        The training set is missing, too small or of another schema.
    DeployError
        Conversion leaves float ops, TFLM fails (its text included), TFLM and
        TFLite disagree, or the mean cosine is below ``q.min_mean_cosine``.
    BudgetError
        Flash or RAM exceeds the board (the report files are written first).
    """
    from sea_core.deploy_export import (frontend_scratch_bytes, write_frontend_params,
                                        write_model_data, write_report, write_sea_embed)
    from sea_core.deploy_tflm import inspect_model, quantize_input

    if optimize not in OPTIMIZE_MODES:
        raise ParameterError(f"optimize must be one of {OPTIMIZE_MODES}, got {optimize!r}")
    if isinstance(board, str):
        if board not in BOARDS:
            raise ParameterError(f"unknown board {board!r}; known: {', '.join(BOARDS)}")
        board = BOARDS[board]
    if include_frontend and (optimize == "memory" or int4):
        raise ParameterError("--optimize memory patches the log-mel trunk; use it without "
                             "--include-frontend")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError(f"--out {out_dir}: exists and is not a directory")
    net, spec = load_trunk(model, include_frontend=include_frontend)
    out_dir.mkdir(parents=True, exist_ok=True)
    if emb_dim is not None and spec.emb_dim != emb_dim:
        raise ParameterError(f"the model outputs {spec.emb_dim}-d embeddings, --emb-dim says {emb_dim}")
    model_name = str(model) if isinstance(model, (str, os.PathLike)) else model.name

    rep_audio = read_student_audio(data_dir, "train", q.representative_windows, seed=q.seed,
                                   window_samples=spec.window_samples)
    if len(rep_audio) < q.representative_windows:
        raise DataError(f"{data_dir}/train holds {len(rep_audio)} windows; the representative "
                        f"dataset needs {q.representative_windows}")
    held = None
    for split in ("test", "validate"):
        if _split_files(data_dir, split):
            held = read_student_audio(data_dir, split, q.fidelity_windows, seed=q.seed + 1,
                                      window_samples=spec.window_samples)
            held_split = split
            break
    if held is None or len(held) == 0:
        held = read_student_audio(data_dir, "train", q.fidelity_windows, seed=q.seed,
                                  exclude=q.representative_windows, window_samples=spec.window_samples)
        held_split = "train (not in the representative draw)"
    if len(held) == 0:
        raise DataError(f"{data_dir}: no held-out windows for the fidelity check")

    if include_frontend:
        rep_x = rep_audio.astype(np.float32) / 32768.0
        held_x = held.astype(np.float32) / 32768.0
    else:
        rep_x = student_logmels(rep_audio)
        held_x = student_logmels(held)
    log.info("converting %s (%d representative windows)", net.name, len(rep_x))
    base = convert_int8(net, rep_x)
    float_out = np.asarray(net.predict(held_x, batch_size=64, verbose=0), dtype=np.float32)

    notes: list[str] = []
    p = spec.frontend
    fe_path, fe_flash = (None, 0)
    final = base
    memory = None
    info = inspect_model(base)
    n_check = min(q.tflm_check_windows, len(held_x))
    x_check = quantize_input(held_x[:n_check], info.input)
    opt = None
    fe_scratch = 0 if include_frontend else frontend_scratch_bytes(p, spec.window_samples)
    if optimize == "memory":
        opt = optimize_memory(base, float_out, held_x, x_check, fe_flash=fe_flash_estimate(spec),
                              fe_scratch=fe_scratch, board=board, q=q)
        final = opt["model"]
        memory = {"int4_ops": opt["int4_ops"], "int4_groups": opt["int4_groups"],
                  "int4_trail": opt["int4_trail"], "int8_model_bytes": len(base),
                  "chosen": opt["chosen"], "options": opt["options"],
                  "missed_goals": opt["missed_goals"]}
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
            log.warning("quantize --optimize memory: goal(s) missed: %s", ", ".join(opt["missed_goals"]))
    elif int4:
        final, int4_ops, trail = choose_int4(base, float_out, held_x,
                                             flash_goal=q.flash_goal_bytes - fe_flash_estimate(spec),
                                             q=q)
        memory = {"int4_ops": int4_ops, "int4_trail": trail, "int8_model_bytes": len(base)}
        if int4_ops:
            notes.append(f"int4 per-channel filters on ops {int4_ops} (largest convs), "
                         f"activations int8; int8 model {len(base):,} B -> {len(final):,} B. TFLM "
                         f"unpacks an int4 filter into an arena scratch buffer of its int8 size, "
                         f"so the arena grows by the largest int4 filter")
    info = inspect_model(final)
    _, y_deq = _int8_outputs(final, held_x)
    fid = cosine_stats(y_deq, float_out)
    fid_values = fid.pop("values")

    models: dict[str, bytes]
    defines: dict[str, int] = {}
    tables: dict[str, list[list[int]]] = {}
    in_bytes = int(np.prod(info.input.shape))
    out_bytes = int(np.prod(info.output.shape))
    patched = opt is not None and opt["patched"]
    if patched:
        pm = opt["pm"]
        plan = pm["plan"]
        models = {"sea_stage_a_model": pm["stage_a"], "sea_stage_b_model": pm["stage_b"]}
        arena = pm["arena_bytes"]
        stitch = plan.stitch_bytes
        ia_shape = [1, plan.patch[0], plan.patch[1], int(info.input.shape[-1])]
        from sea_core.deploy_tflm import inspect_model as _im
        a_out = _im(pm["stage_a"]).output.shape
        defines = {"SEA_PATCHED": 1, "SEA_ARENA_BYTES": arena, "SEA_PATCH_H": plan.patch[0],
                   "SEA_PATCH_W": plan.patch[1], "SEA_PATCH_STRIDE_H": plan.stride[0],
                   "SEA_PATCH_STRIDE_W": plan.stride[1], "SEA_PATCH_ROWS": len(plan.rows),
                   "SEA_PATCH_COLS": len(plan.cols), "SEA_STITCH_BYTES": stitch,
                   "SEA_STITCH_H": plan.rows[-1][2], "SEA_STITCH_W": plan.cols[-1][2],
                   "SEA_STITCH_C": int(a_out[-1]), "SEA_STAGE_A_OUT_H": int(a_out[1]),
                   "SEA_STAGE_A_OUT_W": int(a_out[2]),
                   "SEA_STAGE_A_IN_BYTES": int(np.prod(ia_shape)),
                   "SEA_STAGE_A_ARENA_BYTES": pm["arena_a"], "SEA_STAGE_B_ARENA_BYTES": pm["arena_b"]}
        tables = {"sea_patch_rows": [list(r) for r in plan.rows],
                  "sea_patch_cols": [list(c) for c in plan.cols]}
        app_buffers = in_bytes + stitch                 # the int8 log-mel + the stitched map
        verification = {"tflm_equals_tflite": True, "checked_windows": n_check,
                        "tflm_ms_per_window": pm["tflm_ms_per_window"],
                        "one_arena_bytes": arena,
                        "stage_a_min_arena_bytes": pm["arena_a"], "stage_b_min_arena_bytes": pm["arena_b"],
                        "stage_a_arena_used_bytes": pm["arena_used_a"],
                        "stage_b_arena_used_bytes": pm["arena_used_b"],
                        "both_stages_resident_bytes": pm["both_resident_bytes"],
                        "mcunet_peak_bytes": pm["mcunet_peak_bytes"]}
        memory.update({"patch_plan": plan.as_dict(), "arena_bytes": arena,
                       "mcunet_peak_bytes": pm["mcunet_peak_bytes"],
                       "both_resident_bytes": pm["both_resident_bytes"]})
        macs = plan.macs
        notes.append(f"patch-based inference: ops[:{plan.split}] run on {plan.n_patches} patches of "
                     f"{plan.patch[0]}x{plan.patch[1]}, then ops[{plan.split}:] on the stitched map "
                     f"({stitch:,} B); both stages run one after the other in ONE arena of "
                     f"max(stage A {pm['arena_a']:,}, stage B {pm['arena_b']:,}) = {arena:,} B "
                     f"(verified in TFLM at that size: stage A's interpreter released before stage B's "
                     f"is built; exported as sea_embed() in sea_embed.cc)")
        (out_dir / "stage_a.tflite").write_bytes(pm["stage_a"])
        (out_dir / "stage_b.tflite").write_bytes(pm["stage_b"])
    else:
        v = verify_tflm(final, x_check, q=q)
        models = {"sea_model": final}
        defines = {"SEA_PATCHED": 0, "SEA_ARENA_BYTES": v["min_arena_bytes"]}
        arena = v["min_arena_bytes"]
        stitch = 0
        app_buffers = 0 if include_frontend else in_bytes   # the int8 log-mel sea_embed() fills
        verification = v
        macs = info.macs
    defines.update({"SEA_INPUT_H": int(info.input.shape[1]) if len(info.input.shape) == 4 else 1,
                    "SEA_INPUT_W": int(info.input.shape[2]) if len(info.input.shape) == 4 else in_bytes,
                    "SEA_INPUT_C": int(info.input.shape[3]) if len(info.input.shape) == 4 else 1,
                    "SEA_WINDOW_SAMPLES": int(spec.window_samples),
                    "SEA_INPUT_BYTES": in_bytes, "SEA_OUTPUT_BYTES": out_bytes,
                    "SEA_FRONTEND_SCRATCH_BYTES": fe_scratch,
                    "SEA_ARENA_BUFFER_BYTES": max(arena, fe_scratch),
                    "SEA_RAM_BYTES": max(arena, fe_scratch) + app_buffers})
    (out_dir / "model.tflite").write_bytes(final)
    write_model_data(out_dir, models, defines=defines, tables=tables, q=q)
    model_flash = int(sum(len(b) for b in models.values()))
    write_sea_embed(out_dir, include_frontend=include_frontend)
    if include_frontend:
        notes.append("front-end inside the model: no frontend_params.h")
    else:
        fe_path, fe_flash = write_frontend_params(out_dir, p, spec.window_samples,
                                                  input_scale=info.input.scale,
                                                  input_zero_point=info.input.zero_point)
    flash_total = model_flash + fe_flash
    ram_sum = max(arena, fe_scratch) + app_buffers
    fits = flash_total <= board.flash_bytes and ram_sum <= board.ram_bytes
    goal_key = f"{q.latency_goal_macs_per_cycle:g}"
    lat_chosen = latency_estimate(macs, q)
    lat_int8 = latency_estimate(_macs_of(base), q)
    latency = {"mcu_hz": q.mcu_hz, "macs_per_cycle": list(q.macs_per_cycle),
               "window_seconds": spec.window_seconds, "chosen": lat_chosen, "int8": lat_int8,
               "memory": lat_chosen if patched else None,
               "patch_mac_overhead": (macs / lat_int8["macs_per_window"] - 1) if patched else 0.0,
               "goal_seconds": q.latency_goal_seconds,
               "goal_macs_per_cycle": q.latency_goal_macs_per_cycle,
               "goal_met": lat_chosen["seconds_per_window"][goal_key] <= q.latency_goal_seconds}
    verdict = ("fits" if fits else "OVER BUDGET: " + "; ".join(
        s for s in (f"flash {flash_total:,} B > {board.flash_bytes:,} B" if flash_total > board.flash_bytes else "",
                    f"RAM {ram_sum:,} B > {board.ram_bytes:,} B" if ram_sum > board.ram_bytes else "")
        if s))
    tflite_path = (out_dir / "model.tflite").resolve()
    report = {
        "model": model_name, "window_samples": int(spec.window_samples),
        "window_seconds": float(spec.window_seconds),
        "tflite_path": str(tflite_path), "flash_bytes": int(flash_total), "ram_bytes": int(ram_sum),
        "verdict": verdict,
        "board": {"name": board.name, "flash_bytes": board.flash_bytes, "ram_bytes": board.ram_bytes},
        "student": {"emb_dim": spec.emb_dim, "head": spec.head,
                                         "window_samples": spec.window_samples},
        "mode": optimize, "include_frontend": include_frontend,
        "representative_windows": int(len(rep_x)), "held_out_windows": int(len(held_x)),
        "held_out_split": held_split,
        "flash": {"model_bytes": model_flash, "frontend_bytes": fe_flash, "total_bytes": flash_total},
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
        "verification": verification, "fidelity": fid, "memory": memory,
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
    write_report(out_dir, report)
    if fid["mean"] < q.min_mean_cosine:
        raise DeployError(f"int8 fidelity too low: mean cosine {fid['mean']:.4f} < "
                          f"{q.min_mean_cosine} on {fid['n']} held-out windows "
                          f"(min {float(np.min(fid_values)):.4f}); report in {out_dir}")
    if not fits:
        raise BudgetError(f"{model_name} does not fit board {board.name}: {verdict[len('OVER BUDGET: '):]} "
                          f"(report: {out_dir / 'deploy_report.md'})")
    return report


def fe_flash_estimate(spec: StudentSpec) -> int:
    """Flash of the default front-end constants (window + sparse Q15 mel), for the flash goal."""
    from sea_core.deploy_export import frontend_constants

    c = frontend_constants(spec.frontend, spec.window_samples)
    return int(c["window_q15"].nbytes + c["mel_band_start"].nbytes + c["mel_band_len"].nbytes
               + c["mel_weights_q15"].nbytes + 36)


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
