"""`sea quantize`: real TFLite converter, real TFLite-Micro interpreter, real g++ (no mocks)."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from sea_core.errors import DeployError

pytest.importorskip("tflite_micro")
pytest.importorskip("ai_edge_litert")

SR, S = 8000, 8000


def _synth_windows(n: int, seed: int, samples: int = S) -> np.ndarray:
    """Varied synthetic windows (1 s by default: tones, chirps, modulated noise, clicks) as int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / SR
    out = []
    for i in range(n):
        a = rng.uniform(0.05, 0.6)
        kind = i % 4
        if kind == 0:
            x = a * np.sin(2 * np.pi * rng.uniform(100, 3500) * t)
        elif kind == 1:
            f0, f1 = rng.uniform(100, 3800, 2)
            x = a * np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) * t * t))
        elif kind == 2:
            x = a * rng.normal(0, 0.3, samples) * (1 + np.sin(2 * np.pi * rng.uniform(0.5, 8) * t))
        else:
            x = (a * np.sign(np.sin(2 * np.pi * rng.uniform(50, 400) * t))
                 * np.exp(-((t - rng.uniform(0, 1)) ** 2) / 0.02) + 0.01 * rng.normal(size=samples))
        out.append(np.clip(x, -1, 1))
    return (np.stack(out) * 32767).astype(np.int16)


def _write_training_set(root, counts: dict[str, int], dim: int, samples: int = S) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sea_core.datasets.schema import training_schema

    for k, (split, n) in enumerate(counts.items()):
        (root / split).mkdir(parents=True)
        audio = _synth_windows(n, 10 + k, samples)
        targets = np.random.default_rng(k).normal(size=n * dim).astype(np.float32)
        cols = {"window_id": [f"{split}:{i}" for i in range(n)], "sensor": ["s0"] * n,
                "day": ["2019-03-04"] * n,
                "student_audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.ravel()), samples),
                f"target_{dim}": pa.FixedSizeListArray.from_arrays(pa.array(targets), dim)}
        pq.write_table(pa.table(cols, schema=training_schema((dim,), samples)),
                       root / split / "part-00000.parquet")


def _trained_student(path, data_dir, emb_dim: int = 128) -> None:
    """A 128-d student with BN statistics set from data and a few Adam steps, saved as .keras."""
    import keras

    from sea_core.deploy.data import read_student_audio
    from sea_core.models.students import build_student
    from sea_core.params import student_spec

    keras.utils.set_random_seed(0)
    model = build_student(student_spec(emb_dim), with_frontend=True)
    x = read_student_audio(data_dir, "train", 48, seed=1).astype(np.float32) / 32768.0
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    probe = keras.Model(model.input, [l.input for l in bns])
    for layer in bns:                       # sequential BN recalibration
        acts = probe.predict(x, verbose=0, batch_size=48)
        a = np.asarray(acts[bns.index(layer)]).reshape(-1, layer.input.shape[-1])
        g, b, _, _ = layer.get_weights()
        layer.set_weights([g, b, a.mean(0), a.var(0) + 1e-3])
    y = np.random.default_rng(0).normal(size=(len(x), emb_dim)).astype(np.float32)
    model.compile(keras.optimizers.Adam(1e-4), "mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(path)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Training set + trained student + `sea quantize` outputs (int8 and memory modes)."""
    from pipelines.job.cli import main as cli

    root = tmp_path_factory.mktemp("deploy")
    data = root / "trainset"
    _write_training_set(data, {"train": 510, "validate": 8, "test": 40}, 128)
    model = root / "student128.keras"
    _trained_student(model, data)
    out = {}
    for mode in ("int8", "memory"):
        d = root / f"out_{mode}"
        rc = cli(["quantize", str(model), "--data", str(data), "--out", str(d), "--optimize", mode,
                  "--emb-dim", "128"])
        assert rc == 0
        out[mode] = d
    return {"root": root, "data": data, "model": model, "out": out}


def _report(d):
    return json.loads((d / "deploy_report.json").read_text())


def test_int8_model_is_full_integer(deployed):
    from sea_core.deploy.graph import INT8_OK_OPS, inspect_model

    info = inspect_model((deployed["out"]["int8"] / "model.tflite").read_bytes())
    assert info.input.dtype == "INT8" and info.output.dtype == "INT8"
    assert info.input.shape == (1, 64, 50, 1) and info.output.shape == (1, 128)
    assert set(info.ops) <= INT8_OK_OPS and info.ops.count("CONV_2D") == 8
    assert set(info.activation_dtypes) <= {"INT8", "INT32"}
    rep = _report(deployed["out"]["int8"])
    assert rep["representative_windows"] >= 500
    assert rep["macs"] == info.macs
    # reference (c) 128-d trunk: sum of conv MACs on the 64x50 input
    assert 130_000_000 < rep["macs"] < 132_000_000


def test_tflm_runs_with_reported_arena_and_not_less(deployed):
    from sea_core.deploy.verify import tflm_interpreter, tflm_invoke

    d = deployed["out"]["int8"]
    rep = _report(d)
    arena = rep["ram"]["arena_bytes"]
    assert arena == rep["verification"]["arena_used_bytes"]      # bisection == TFLM's own figure
    model = (d / "model.tflite").read_bytes()
    y = tflm_invoke(tflm_interpreter(model, arena), np.zeros((1, 64, 50, 1), np.int8))
    assert y.shape == (1, 128)
    with pytest.raises(DeployError, match="TFLM says:.*"):
        tflm_interpreter(model, arena - 1024)


def test_tflm_equals_tflite_reference(deployed):
    from sea_core.deploy.data import read_student_audio, student_logmels
    from sea_core.deploy.graph import inspect_model, quantize_input
    from sea_core.deploy.verify import litert_reference, litert_run, tflm_interpreter, tflm_invoke

    d = deployed["out"]["int8"]
    model = (d / "model.tflite").read_bytes()
    info = inspect_model(model)
    x = quantize_input(student_logmels(read_student_audio(deployed["data"], "validate", 3, seed=5)),
                       info.input)
    interp = tflm_interpreter(model, _report(d)["ram"]["arena_bytes"])
    tflm = np.stack([tflm_invoke(interp, xi[None])[0] for xi in x])
    ref = litert_run(litert_reference(model), x)
    np.testing.assert_array_equal(tflm, ref)
    assert len(np.unique(tflm)) > 4          # not a constant output


def test_fidelity_cosine_bound(deployed):
    for mode in ("int8", "memory"):
        fid = _report(deployed["out"][mode])["fidelity"]
        assert fid["n"] == 40
        assert fid["mean"] >= 0.98 and fid["min"] <= fid["p5"] <= fid["median"] <= 1.0


def test_patched_inference_is_bit_exact_and_fits_arena_goal(deployed, rng):
    from sea_core.deploy.patch import PatchPlan, run_patched
    from sea_core.deploy.verify import litert_reference, litert_run, tflm_interpreter, tflm_invoke
    from sea_core.params import QUANT

    d = deployed["out"]["memory"]
    rep = _report(d)
    assert rep["ram"]["arena_bytes"] <= QUANT.arena_goal_bytes
    assert rep["ram"]["arena_bytes"] < _report(deployed["out"]["int8"])["ram"]["arena_bytes"] / 2
    plan_d = rep["memory"]["patch_plan"]
    v = rep["verification"]
    ia = tflm_interpreter((d / "stage_a.tflite").read_bytes(), v["stage_a_min_arena_bytes"])
    ib = tflm_interpreter((d / "stage_b.tflite").read_bytes(), v["stage_b_min_arena_bytes"])
    plan = PatchPlan(split=plan_d["split_op"], patch=tuple(plan_d["patch"]),
                     rows=tuple(map(tuple, plan_d["rows"])), cols=tuple(map(tuple, plan_d["cols"])),
                     est_peak_a=0, est_peak_b=0, stitch_bytes=plan_d["stitch_bytes"], macs=0,
                     stride=(4, 4))
    x = rng.integers(-128, 128, size=(2, 1, 64, 50, 1)).astype(np.int8)
    got = np.stack([run_patched(xi, plan, lambda z: tflm_invoke(ia, z),
                                lambda z: tflm_invoke(ib, z))[0] for xi in x])
    ref = litert_run(litert_reference((d / "model.tflite").read_bytes()), x[:, 0])
    np.testing.assert_array_equal(got, ref)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
@pytest.mark.parametrize("mode", ["int8", "memory"])
def test_c_export_compiles(deployed, mode, tmp_path):
    d = deployed["out"][mode]
    main_cc = tmp_path / "use.cc"
    main_cc.write_text('#include "model_data.h"\n#include "frontend_params.h"\n'
                       "int n_bins() { return sea_mel_band_len[0] + SEA_N_DFT + SEA_INPUT_ZERO_POINT; }\n")
    for src in (d / "model_data.cc", d / "sea_embed.cc", main_cc):
        r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-Wno-unused-variable",
                            "-I", str(d), "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    cc = (d / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char" in cc
    lens = [int(l.split("=")[1].strip(" ;")) for l in cc.splitlines() if "_len =" in l]
    assert sum(lens) == _report(d)["flash"]["model_bytes"]


def _sea_embed_lib(d, tmp_path):
    """Build the exported sea_embed.cc + model_data.cc into a host shared library."""
    import ctypes

    lib = tmp_path / "libsea.so"
    r = subprocess.run(["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Werror",
                        "-I", str(d), str(d / "sea_embed.cc"), str(d / "model_data.cc"),
                        "-o", str(lib)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(lib))


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_one_arena_sequencing_on_tflm(deployed, tmp_path):
    """The exported sea_embed_logmel() runs stage A (every patch) and then stage B in ONE arena
    of the reported size with the real TFLM runtime (each stage call builds its interpreter in
    that arena size, the previous one released): output == the unpatched int8 model's TFLite
    reference; with 1 byte less the larger stage cannot allocate and sea_embed fails."""
    import ctypes

    from sea_core.deploy.data import read_student_audio, student_logmels
    from sea_core.deploy.graph import inspect_model, quantize_input
    from sea_core.deploy.memory import run_sequenced
    from sea_core.deploy.patch import PatchPlan
    from sea_core.deploy.verify import litert_reference, litert_run, tflm_interpreter, tflm_invoke

    d = deployed["out"]["memory"]
    rep = _report(d)
    arena = rep["ram"]["arena_bytes"]
    v = rep["verification"]
    assert arena == v["one_arena_bytes"] == max(v["stage_a_min_arena_bytes"],
                                                 v["stage_b_min_arena_bytes"])
    assert arena < v["both_stages_resident_bytes"]
    assert rep["ram"]["total_bytes"] == max(arena, rep["ram"]["frontend_scratch_bytes"]) + \
        rep["ram"]["input_bytes"] + rep["ram"]["stitch_bytes"]
    full = (d / "model.tflite").read_bytes()
    x = quantize_input(student_logmels(read_student_audio(deployed["data"], "test", 2, seed=7)),
                       inspect_model(full).input)
    ref = litert_run(litert_reference(full), x)

    lib = _sea_embed_lib(d, tmp_path)
    models = {ctypes.addressof(ctypes.c_ubyte.in_dll(lib, name)): (d / f"{name[4:-6]}.tflite").read_bytes()
              for name in ("sea_stage_a_model", "sea_stage_b_model")}
    keep, calls = [], []
    STAGE = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)

    @STAGE
    def run_stage(ctx, model, arena_ptr, arena_bytes, inp, in_bytes):
        mb = models[model]
        calls.append((len(mb), int(arena_bytes)))
        try:
            interp = tflm_interpreter(mb, int(arena_bytes))     # a fresh interpreter per stage
        except DeployError:
            return None
        shape = inspect_model(mb).input.shape
        z = np.frombuffer(ctypes.string_at(inp, in_bytes), np.int8).reshape(shape)
        y = np.ascontiguousarray(tflm_invoke(interp, z), np.int8)
        keep.append(y)
        return y.ctypes.data

    class Runtime(ctypes.Structure):
        _fields_ = [("run_stage", STAGE), ("frontend", ctypes.c_void_p), ("ctx", ctypes.c_void_p)]

    class Buffers(ctypes.Structure):
        _fields_ = [("arena", ctypes.c_void_p), ("arena_bytes", ctypes.c_size_t),
                    ("logmel", ctypes.c_void_p), ("stitch", ctypes.c_void_p)]

    rt = Runtime(run_stage, None, None)
    stitch = np.zeros(rep["ram"]["stitch_bytes"], np.int8)
    lib.sea_embed_logmel.restype = ctypes.c_int

    def embed(xi, n_arena):
        buf = Buffers(None, n_arena, None, stitch.ctypes.data)
        out = np.zeros(128, np.int8)
        xi = np.ascontiguousarray(xi, np.int8)
        rc = lib.sea_embed_logmel(ctypes.c_void_p(xi.ctypes.data), ctypes.c_void_p(out.ctypes.data),
                                  ctypes.byref(buf), ctypes.byref(rt))
        return rc, out

    for i, xi in enumerate(x):
        rc, out = embed(xi, arena)
        assert rc == 0
        np.testing.assert_array_equal(out, ref[i].ravel())
    n_patches = rep["memory"]["patch_plan"]["n_patches"]
    assert len(calls) == len(x) * (n_patches + 1) and {a for _, a in calls} == {arena}
    assert embed(x[0], arena - 1)[0] == -1
    # the same through the Python sequencing used by `sea quantize`
    pd = rep["memory"]["patch_plan"]
    plan = PatchPlan(split=pd["split_op"], patch=tuple(pd["patch"]), rows=tuple(map(tuple, pd["rows"])),
                     cols=tuple(map(tuple, pd["cols"])), est_peak_a=0, est_peak_b=0,
                     stitch_bytes=pd["stitch_bytes"], macs=0, stride=(4, 4))
    a_b, b_b = (d / "stage_a.tflite").read_bytes(), (d / "stage_b.tflite").read_bytes()
    np.testing.assert_array_equal(run_sequenced(a_b, b_b, plan, x, arena), ref)
    with pytest.raises(DeployError, match="TFLM says"):
        run_sequenced(a_b, b_b, plan, x[:1], arena - 1)


def test_latency_fields(deployed):
    """MACs per window and seconds per window at 0.5 / 1 / 2 MACs per cycle on a 480 MHz M7."""
    from sea_core.params import QUANT

    for mode in ("int8", "memory"):
        rep = _report(deployed["out"][mode])
        lat = rep["latency"]
        assert lat["mcu_hz"] == 480_000_000 and lat["macs_per_cycle"] == [0.5, 1.0, 2.0]
        assert lat["window_seconds"] == rep["window_seconds"] == 1.0
        assert lat["chosen"]["macs_per_window"] == rep["macs"] > 0
        for which in ("chosen", "int8"):
            secs = lat[which]["seconds_per_window"]
            m = lat[which]["macs_per_window"]
            assert secs == pytest.approx({"0.5": m / 240e6, "1": m / 480e6, "2": m / 960e6})
        assert lat["goal_met"] == (lat["chosen"]["seconds_per_window"]["1"] <= QUANT.latency_goal_seconds)
        assert rep["goals"]["latency_met"] == lat["goal_met"]
    mem = _report(deployed["out"]["memory"])["latency"]
    i8 = _report(deployed["out"]["int8"])["latency"]
    assert mem["int8"] == i8["chosen"] and i8["memory"] is None
    assert mem["memory"]["macs_per_window"] > i8["chosen"]["macs_per_window"]     # halo recompute
    assert mem["patch_mac_overhead"] == pytest.approx(
        mem["memory"]["macs_per_window"] / i8["chosen"]["macs_per_window"] - 1)
    assert mem["goal_met"]                  # the 1-s SEA-128: <= 0.5 s per window at 1 MAC/cycle
    assert _report(deployed["out"]["memory"])["paper"] == {
        "flash_bytes": 585_000, "ram_bytes": 102_500,
        "model": "8-bit Student 2 (128-d), Cortex-M7 2 MB flash / 1 MB RAM"}


def test_budget_failure_exits_non_zero(deployed, capsys):
    from pipelines.job.cli import main as cli

    out = deployed["root"] / "out_small_board"
    rc = cli(["quantize", str(deployed["model"]), "--data", str(deployed["data"]), "--out", str(out),
              "--board", "cortex-m4-512kb-64kb"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "does not fit board cortex-m4-512kb-64kb" in err and "RAM" in err
    assert "OVER BUDGET" in _report(out)["budget"]["verdict"]


def test_float_model_is_rejected_by_int8_assertion(tmp_path):
    import tensorflow as tf

    from sea_core.deploy.graph import assert_full_int8, inspect_model
    import keras

    inp = keras.Input((8, 8, 1), batch_size=1)
    m = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    data = tf.lite.TFLiteConverter.from_keras_model(m).convert()       # float, not quantised
    with pytest.raises(DeployError, match="not a full-int8 model"):
        assert_full_int8(inspect_model(data))


def test_memory_mode_meets_flash_and_arena_goals(deployed):
    """`--optimize memory` on the 128-d student: flash <= 500,000 B and arena <= 96 KB together."""
    from sea_core.deploy.graph import inspect_model
    from sea_core.params import QUANT

    d = deployed["out"]["memory"]
    rep = _report(d)
    assert rep["flash_bytes"] == rep["flash"]["total_bytes"] <= QUANT.flash_goal_bytes == 500_000
    assert rep["ram"]["arena_bytes"] <= QUANT.arena_goal_bytes == 96 * 1024
    assert rep["ram_bytes"] <= QUANT.ram_goal_bytes == 102_500
    assert rep["goals"]["flash_met"] and rep["goals"]["arena_met"] and rep["goals"]["ram_met"]
    assert rep["memory"]["missed_goals"] == []
    assert rep["fidelity"]["mean"] >= QUANT.int4_min_mean_cosine
    # the keys the end-to-end runner and the report plots read
    assert rep["window_samples"] == S and rep["verdict"] == "fits"
    assert rep["ram_bytes"] == rep["ram"]["total_bytes"]
    assert set(rep["board"]) == {"name", "flash_bytes", "ram_bytes"}
    assert rep["tflite_path"].endswith("model.tflite") and inspect_model(
        open(rep["tflite_path"], "rb").read()).output.shape == (1, 128)
    # every option is recorded with measured figures; the chosen one meets both goals
    opts = {o["name"]: o for o in rep["memory"]["options"]}
    assert opts["patch"]["arena_met"] and not opts["patch"]["flash_met"]      # int8 patch alone: flash over
    ungrouped = [o for o in opts.values() if o.get("int4_groups") == 1]
    assert ungrouped and not ungrouped[0]["arena_met"]                      # int4 unpack scratch
    chosen = [o for o in opts.values() if o.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["name"] == rep["memory"]["chosen"]
    assert chosen[0]["flash_met"] and chosen[0]["arena_met"] and chosen[0]["int4_groups"] > 1
    assert chosen[0]["ram_met"] and chosen[0]["ram_bytes"] == rep["ram_bytes"]
    assert not opts["int8"]["patched"] and not opts["int8"]["arena_met"]      # unpatched: arena over
    assert chosen[0]["arena_bytes"] == rep["ram"]["arena_bytes"]
    assert "Memory options measured" in (d / "deploy_report.md").read_text()


def test_conv_groups_are_bit_exact_and_cut_int4_scratch(deployed):
    from sea_core.deploy.convert import split_conv_groups, to_int4
    from sea_core.deploy.patch import plan_patches, split_model
    from sea_core.deploy.verify import (litert_reference, litert_run, tflm_interpreter, tflm_invoke,
                                        tflm_min_arena)

    base = (deployed["out"]["int8"] / "model.tflite").read_bytes()
    x = np.random.default_rng(3).integers(-128, 128, size=(2, 1, 64, 50, 1)).astype(np.int8)
    ref8 = litert_run(litert_reference(base), x[:, 0])
    g8, convs = split_conv_groups(base, {9: 4})
    assert len(convs) == 4
    np.testing.assert_array_equal(litert_run(litert_reference(g8), x[:, 0]), ref8)
    u4 = to_int4(base, [9])
    g4 = to_int4(g8, convs)
    ref4 = litert_run(litert_reference(u4), x[:, 0])
    np.testing.assert_array_equal(litert_run(litert_reference(g4), x[:, 0]), ref4)
    arena = tflm_min_arena(g4)
    interp = tflm_interpreter(g4, arena)
    np.testing.assert_array_equal(np.stack([tflm_invoke(interp, xi)[0] for xi in x]), ref4)
    # TFLM unpacks the int4 filter of op 9 (147,456 B as int8) into arena scratch: 1/4 with
    # 4 groups (seen in the stage after the patched blocks, where it dominates the arena)
    stage_b = [split_model(m, plan_patches(m, peak_goal=96 * 1024))[1] for m in (u4, g4)]
    assert tflm_min_arena(stage_b[0]) - tflm_min_arena(stage_b[1]) > 147_456 // 2
    with pytest.raises(DeployError, match="do not divide"):
        split_conv_groups(base, {9: 3})


def test_choose_option_smallest_flash_plus_ram_when_goals_cannot_be_met():
    from sea_core.deploy.memory import choose_option, missed_goals

    def row(name, flash, arena, ram, fits=True, goals=(False, False, False)):
        return {"name": name, "flash_total_bytes": flash, "arena_bytes": arena, "ram_bytes": ram,
                "fits_board": fits, "flash_met": goals[0], "arena_met": goals[1], "ram_met": goals[2]}

    opts = [row("patch", 620_000, 80_000, 95_000, goals=(False, True, True)),
            row("int4+patch", 520_000, 200_000, 215_000, goals=(False, False, False)),
            row("int8", 600_000, 214_000, 217_000, goals=(False, False, False)),
            row("huge", 100_000, 10_000, 20_000, fits=False)]
    best = choose_option(opts)
    assert best["name"] == "patch" and missed_goals(best) == ["flash"]     # 715,000 < 735,000
    opts[1].update(flash_total_bytes=400_000, flash_met=True)       # 615,000 < 715,000 now
    assert choose_option(opts)["name"] == "int4+patch" and missed_goals(opts[1]) == ["arena", "RAM"]
    opts.append(row("all", 499_000, 98_000, 102_000, goals=(True, True, True)))
    opts.append(row("all-smaller-arena", 499_999, 90_000, 102_400, goals=(True, True, True)))
    assert choose_option(opts)["name"] == "all-smaller-arena"


def test_logmel_student_takes_the_training_set_window_not_frames_times_hop(tmp_path):
    """A log-mel-input student for aisfx's native 2.30-s window: the training set holds
    18,390-sample windows (101,376 samples at 44.1 kHz -> 8 kHz), 115 frames; 115 x 160 =
    18,400 samples would be the frame count times the hop. The deployment (representative
    draw, front-end constants, C defines, report) uses the training set's 18,390; a training
    set whose window gives another frame count is a DataError naming both."""
    import re

    from sea_core.deploy import quantize
    from sea_core.deploy.data import training_window_samples
    from sea_core.errors import DataError
    from sea_core.models.students import build_student
    from sea_core.params import AISFX_TEACHER, QuantParams, STUDENT_MEL64, student_spec

    spec = student_spec(64, AISFX_TEACHER)
    assert spec.window_samples == 18_390 and spec.input_shape == (64, 115, 1)
    assert STUDENT_MEL64.n_frames(18_390) * STUDENT_MEL64.hop_length == 18_400
    model = tmp_path / "logmel64.keras"
    build_student(spec, with_frontend=False).save(model)
    data = tmp_path / "trainset"
    _write_training_set(data, {"train": 24, "test": 6}, 64, samples=spec.window_samples)
    assert training_window_samples(data) == 18_390
    q = QuantParams(representative_windows=16, fidelity_windows=6, tflm_check_windows=2,
                    min_mean_cosine=-1.0)                      # untrained: fidelity not checked here
    rep = quantize(model, data, tmp_path / "out", q=q)
    assert rep["window_samples"] == rep["student"]["window_samples"] == 18_390
    assert rep["window_seconds"] == 18_390 / 8000 and rep["input"]["shape"] == [1, 64, 115, 1]
    for name in ("model_data.h", "frontend_params.h"):
        text = (tmp_path / "out" / name).read_text()
        assert re.findall(r"#define SEA_WINDOW_SAMPLES (\d+)", text) == ["18390"], name
    assert "#define SEA_N_FRAMES 115" in (tmp_path / "out" / "frontend_params.h").read_text()

    one_second = tmp_path / "trainset_1s"
    _write_training_set(one_second, {"train": 24, "test": 6}, 64)
    with pytest.raises(DataError, match=r"8000 samples per window \(50 log-mel frames\).*115 frames"):
        quantize(model, one_second, tmp_path / "out_1s", q=q)


def test_int8_embedder_quantizes_like_the_deployment(deployed):
    """`sea evaluate`'s int8 embedder feeds the .tflite the device-side log-mel quantised by the
    deployment's quantize_input and dequantises with dequantize_output (one implementation)."""
    from sea_core.deploy.data import read_student_audio, to_float
    from sea_core.deploy.graph import dequantize_output, inspect_model, quantize_input
    from sea_core.deploy.verify import litert_reference, litert_run
    from sea_core.evaluate import int8_embedder
    from sea_core.frontends import kapre_logmel
    from sea_core.params import STUDENT_MEL64

    path = deployed["out"]["int8"] / "model.tflite"
    model = path.read_bytes()
    info = inspect_model(model)
    x = to_float(read_student_audio(deployed["data"], "test", 6, seed=11))
    got = int8_embedder(path).embed(x)
    xq = quantize_input(kapre_logmel(x, STUDENT_MEL64), info.input)
    xq = xq.reshape((len(x),) + info.input.shape[1:])
    want = dequantize_output(litert_run(litert_reference(model), xq), info.output)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (6, 128) and np.abs(got).max() > 0
