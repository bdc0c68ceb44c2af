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


def _synth_windows(n: int, seed: int) -> np.ndarray:
    """Varied synthetic 1-s windows (tones, chirps, modulated noise, clicks) as int16."""
    rng = np.random.default_rng(seed)
    t = np.arange(S) / SR
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
            x = a * rng.normal(0, 0.3, S) * (1 + np.sin(2 * np.pi * rng.uniform(0.5, 8) * t))
        else:
            x = (a * np.sign(np.sin(2 * np.pi * rng.uniform(50, 400) * t))
                 * np.exp(-((t - rng.uniform(0, 1)) ** 2) / 0.02) + 0.01 * rng.normal(size=S))
        out.append(np.clip(x, -1, 1))
    return (np.stack(out) * 32767).astype(np.int16)


def _write_training_set(root, counts: dict[str, int], dim: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sea_core.schema import training_schema

    for k, (split, n) in enumerate(counts.items()):
        (root / split).mkdir(parents=True)
        audio = _synth_windows(n, 10 + k)
        targets = np.random.default_rng(k).normal(size=n * dim).astype(np.float32)
        cols = {"window_id": [f"{split}:{i}" for i in range(n)], "sensor": ["s0"] * n,
                "day": ["2019-03-04"] * n,
                "student_audio": pa.FixedSizeListArray.from_arrays(pa.array(audio.ravel()), S),
                f"target_{dim}": pa.FixedSizeListArray.from_arrays(pa.array(targets), dim)}
        pq.write_table(pa.table(cols, schema=training_schema((dim,), S)),
                       root / split / "part-00000.parquet")


def _trained_student(path, data_dir, emb_dim: int = 128) -> None:
    """A 128-d student with BN statistics set from data and a few Adam steps, saved as .keras."""
    import keras

    from sea_core.deploy import read_student_audio
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
    from sea_core.cli import main as cli

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
    from sea_core.deploy_tflm import INT8_OK_OPS, inspect_model

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
    from sea_core.deploy_tflm import tflm_interpreter, tflm_invoke

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
    from sea_core.deploy import read_student_audio, student_logmels
    from sea_core.deploy_tflm import (inspect_model, litert_reference, litert_run, quantize_input,
                                      tflm_interpreter, tflm_invoke)

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
    from sea_core.deploy_patch import PatchPlan, run_patched
    from sea_core.deploy_tflm import litert_reference, litert_run, tflm_interpreter, tflm_invoke
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
    for src in (d / "model_data.cc", main_cc):
        r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-Wno-unused-variable",
                            "-I", str(d), "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    cc = (d / "model_data.cc").read_text()
    assert "alignas(16) const unsigned char" in cc
    lens = [int(l.split("=")[1].strip(" ;")) for l in cc.splitlines() if "_len =" in l]
    assert sum(lens) == _report(d)["flash"]["model_bytes"]


def test_budget_failure_exits_non_zero(deployed, capsys):
    from sea_core.cli import main as cli

    out = deployed["root"] / "out_small_board"
    rc = cli(["quantize", str(deployed["model"]), "--data", str(deployed["data"]), "--out", str(out),
              "--board", "cortex-m4-512kb-64kb"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "does not fit board cortex-m4-512kb-64kb" in err and "RAM" in err
    assert "OVER BUDGET" in _report(out)["budget"]["verdict"]


def test_float_model_is_rejected_by_int8_assertion(tmp_path):
    import tensorflow as tf

    from sea_core.deploy_tflm import assert_full_int8, inspect_model
    import keras

    inp = keras.Input((8, 8, 1), batch_size=1)
    m = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    data = tf.lite.TFLiteConverter.from_keras_model(m).convert()       # float, not quantised
    with pytest.raises(DeployError, match="not a full-int8 model"):
        assert_full_int8(inspect_model(data))


def test_memory_mode_meets_flash_and_arena_goals(deployed):
    """`--optimize memory` on the 128-d student: flash <= 500,000 B and arena <= 96 KB together."""
    from sea_core.deploy_tflm import inspect_model
    from sea_core.params import QUANT

    d = deployed["out"]["memory"]
    rep = _report(d)
    assert rep["flash_bytes"] == rep["flash"]["total_bytes"] <= QUANT.flash_goal_bytes == 500_000
    assert rep["ram"]["arena_bytes"] <= QUANT.arena_goal_bytes == 96 * 1024
    assert rep["goals"]["flash_met"] and rep["goals"]["arena_met"]
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
    assert chosen[0]["arena_bytes"] == rep["ram"]["arena_bytes"]
    assert "Memory options measured" in (d / "deploy_report.md").read_text()


def test_conv_groups_are_bit_exact_and_cut_int4_scratch(deployed):
    from sea_core.deploy_patch import plan_patches, split_conv_groups, split_model, to_int4
    from sea_core.deploy_tflm import (litert_reference, litert_run, tflm_interpreter, tflm_invoke,
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
