"""`sea plan`: the capacity model's arithmetic on a small hand-computed scenario."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.job import cli
from sea_core.audio.framing import frame_audio
from sea_core.errors import ParameterError
from sea_core.params import AISFX_TEACHER, CAPACITY, L3_TEACHER
from sea_core.plan import Scenario, plan, windows_per_clip
from sea_core.plan_rates import Throughputs, load_throughputs

# 2 sensors x 73 days (0.2 years), one 10-s clip an hour, L3 teacher (1-s window, 0.5-s hop).
SMALL = Scenario(sensors=2, years=0.2, clip_interval_s=3600, teacher="l3", refresh_days=7,
                 gpu_speedup=50, cost_cpu_hour=0.1, cost_gpu_hour=1.0, select_fraction=0.1,
                 train_emb_dims=(128,), epochs=2, steps_per_epoch=10, batch_size=64)
TP = Throughputs(teacher_fps_per_vcpu=10.0, student_fps_per_vcpu={d: 100.0 for d in (512, 256, 128, 64)},
                 source="test", measured=True)


@pytest.mark.parametrize("spec", [L3_TEACHER, AISFX_TEACHER], ids=["l3", "aisfx"])
@pytest.mark.parametrize("seconds", [10.0, 10.05, 3.0])
@pytest.mark.parametrize("center", [True, False])
def test_windows_per_clip_equals_the_framing_function(spec, seconds, center):
    audio = np.zeros(int(round(seconds * spec.sample_rate)), np.float32)
    frames, _ = frame_audio(audio, sr=spec.sample_rate, window_samples=spec.window_samples,
                            hop_seconds=spec.corpus_hop_seconds, center=center)
    assert windows_per_clip(seconds, spec, center=center) == frames.shape[0]


def test_windows_per_clip_hand_values():
    # L3: L = 480000 + 24000; (504000 - 48000) / 24000 = 19 -> 20 windows (upstream SONYC: 20/clip)
    assert windows_per_clip(10.0, L3_TEACHER) == 20
    # aisfx: L = 441000 + 50688; (491688 - 101376) / 51200 = 7.62 -> 9 windows
    assert windows_per_clip(10.0, AISFX_TEACHER) == 9
    with pytest.raises(ParameterError, match="shorter than one"):
        windows_per_clip(0.5, L3_TEACHER)


def test_small_scenario_by_hand():
    r = plan(SMALL, TP)
    c, b, cp = r["corpus"], r["bytes"], r["compute"]
    assert c["days"] == pytest.approx(73)
    assert c["clips_per_sensor_day"] == 24
    assert c["clips"] == 2 * 73 * 24 == 3504
    assert c["windows_per_clip"] == 20
    assert c["windows"] == 70_080
    assert c["selected_windows"] == 7008
    assert c["refresh_clips"] == 2 * 7 * 24 and c["refresh_windows"] == 6720
    assert c["student_window_samples"] == 8000
    # bytes: FLAC = 10 s * 48 kHz * 2 B * 0.6; frames row = 512*4 + 8000*2 + 256
    assert b["flac_input"] == pytest.approx(3504 * 576_000)
    assert b["frames_per_window"] == 18_304
    assert b["frames"] == pytest.approx(70_080 * 18_304)
    # training row = 8000*2 + (512+256+128+64)*4 + 96
    assert b["training_row"] == 19_936
    assert b["training_set"] == pytest.approx(70_080 * 19_936)
    assert b["pca_fit_matrix_float64"] == 7008 * 512 * 8
    assert b["pca_solver"] == "distributed moments + eigh" and b["pca_driver_bytes"] == 4 * 512 * 512 * 8
    assert b["models"]["64"]["params"] == 399_460
    # compute: 70080 windows at 10 windows/s/vCPU; a T4 = 50 vCPUs = 500 windows/s
    assert cp["teacher"]["vcpu_hours"] == pytest.approx(70_080 / 10 / 3600)
    assert cp["teacher"]["gpu_hours"] == pytest.approx(70_080 / 500 / 3600)
    assert cp["preprocess_vcpu_hours"] == pytest.approx(3504 * CAPACITY.preprocess_cpu_s_per_clip / 3600)
    assert cp["train_samples"] == 2 * 10 * 64
    assert cp["train_vcpu_hours"]["128"] == pytest.approx(1280 * 3 / 100 / 3600)
    assert cp["refresh"]["teacher"]["gpu_hours"] == pytest.approx(6720 / 500 / 3600)
    # cost: teacher on CPU 1.9467 vCPU-h * $0.1; on GPU 0.03893 T4-h * $1
    cpu = r["cost_usd"]["cpu"]["full_build"]
    gpu = r["cost_usd"]["gpu"]["full_build"]
    assert cpu["teacher"] == pytest.approx(70_080 / 10 / 3600 * 0.1)
    assert gpu["teacher"] == pytest.approx(70_080 / 500 / 3600 * 1.0)
    assert cpu["total"] == pytest.approx(sum(v for k, v in cpu.items() if k != "total"))
    assert cp["train_gpu_hours"] == pytest.approx(1280 * 3 / 100 / 3600 / 50)
    assert cpu["train"] == pytest.approx(1280 * 3 / 100 / 3600 * 0.1)
    assert gpu["train"] == pytest.approx(1280 * 3 / 100 / 3600 / 50 * 1.0)
    refresh = r["cost_usd"]["gpu"]["refresh_reuse_pca"]
    assert refresh["pca_fit"] == 0.0
    assert refresh["teacher"] == pytest.approx(6720 / 500 / 3600)
    assert r["bottleneck"] == {"device": "gpu", "full_build": "teacher", "refresh": "teacher"}


def test_training_becomes_the_refresh_bottleneck_with_the_paper_schedule():
    from dataclasses import replace

    r = plan(replace(SMALL, epochs=300, steps_per_epoch=4096), TP)
    assert r["bottleneck"]["refresh"] == "train"
    assert r["compute"]["train_vcpu_hours"]["128"] == pytest.approx(300 * 4096 * 64 * 3 / 100 / 3600)


def test_big_pca_fit_keeps_the_driver_small():
    r = plan(Scenario(), TP)
    assert r["bytes"]["pca_fit_matrix_float64"] > 2 * 1024 ** 3   # what one machine would hold
    assert r["bytes"]["pca_driver_bytes"] < 16 * 1024 ** 2         # moments + eigh: O(D^2)


def test_throughputs_from_models_json(tmp_path):
    doc = {"created_at": "t", "machine": {"cpu_count": 2, "load_avg_1min_before": 1.5},
           "results": [{"kind": "teacher", "name": "aisfx", "batch": 64, "windows_per_s": 50.0},
                       {"kind": "teacher", "name": "aisfx", "batch": 1, "windows_per_s": 40.0}]
                      + [{"kind": "student", "name": f"sea-{d}", "batch": 64, "windows_per_s": 600.0}
                         for d in (512, 256, 128, 64)]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(doc))
    tp = load_throughputs(path, teacher="aisfx")
    assert tp.measured and tp.teacher_fps_per_vcpu == 25.0 and tp.student_fps_per_vcpu[64] == 300.0
    assert tp.student_window_samples is None
    assert "measured" in tp.source
    # a teacher that was not measured falls back to the stated default and says so
    tp_l3 = load_throughputs(path, teacher="l3")
    assert not tp_l3.measured and tp_l3.teacher_fps_per_vcpu == CAPACITY.default_teacher_fps_per_vcpu
    assert any("'l3' not in" in n for n in tp_l3.notes)
    # ... but 'l3' uses an 'l3-random' measurement (same network, same cost)
    doc["results"].append({"kind": "teacher", "name": "l3-random", "batch": 64, "windows_per_s": 8.0})
    path.write_text(json.dumps(doc))
    assert load_throughputs(path, teacher="l3").teacher_fps_per_vcpu == 4.0
    # student rates measured at another window are rescaled to the planned one (cost ~ frames)
    for r in doc["results"]:
        if r["kind"] == "student":
            r["window_samples"] = 16_000
    path.write_text(json.dumps(doc))
    tp2 = load_throughputs(path, teacher="aisfx")
    assert tp2.student_window_samples == 16_000
    r = plan(SMALL, tp2)   # L3 teacher: 1-s student window = 8000 samples -> twice the rate
    assert r["throughputs"]["student_windows_per_s_per_vcpu"]["128"] == pytest.approx(600.0)
    assert r["compute"]["train_vcpu_hours"]["128"] == pytest.approx(1280 * 3 / 600 / 3600)
    missing = load_throughputs(tmp_path / "absent.json")
    assert not missing.measured and missing.source.startswith("default")


def test_cli_json_and_text(capsys):
    assert cli.main(["plan", "--sensors", "2", "--years", "0.2", "--clip-interval-s", "3600",
                     "--teacher", "l3", "--models-json", "", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["corpus"]["windows"] == 70_080 and r["throughputs"]["measured"] is False
    assert cli.main(["plan", "--models-json", ""]) == 0
    out = capsys.readouterr().out
    assert "windows 141,912,000" in out and "default: no measurement" in out and "bottleneck" in out


@pytest.mark.parametrize("kwargs, match", [
    ({"sensors": 0}, "sensors"), ({"clip_interval_s": 5}, "shorter than a clip"),
    ({"teacher": "nope"}, "teacher"), ({"select_fraction": 0}, "select_fraction"),
    ({"train_emb_dims": (100,)}, "train_emb_dims"), ({"cost_gpu_hour": -1}, "cost_gpu_hour"),
])
def test_bad_scenarios(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        plan(Scenario(**kwargs), TP)


def test_cli_bad_input_exits_2(capsys):
    assert cli.main(["plan", "--sensors", "0", "--models-json", ""]) == 2
    assert "sensors must be > 0" in capsys.readouterr().err


def test_machine_types_pick_precision_rows_and_label_assumptions(tmp_path, capsys):
    from sea_core.plan_rates import MACHINE_TYPES

    doc = {"created_at": "t", "machine": {"cpu_count": 2, "load_avg_1min_before": 1.0},
           "results": [{"kind": "teacher", "name": "aisfx", "batch": 64, "precision": "fp32",
                        "windows_per_s": 20.0},
                       {"kind": "teacher", "name": "aisfx", "batch": 64, "precision": "bf16",
                        "windows_per_s": 36.0}]
                      + [{"kind": "student", "name": f"sea-{d}", "batch": 64, "windows_per_s": 600.0,
                          "precision": p} for d in (512, 256, 128, 64) for p in ("fp32", "bf16")]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(doc))
    no = load_throughputs(path, machine="no-bf16")
    assert (no.teacher_fps_per_vcpu, no.precision, no.measured) == (10.0, "fp32", True)
    avx = load_throughputs(path, machine="avx512-bf16")
    assert (avx.teacher_fps_per_vcpu, avx.precision, avx.measured) == (18.0, "bf16", True)
    amx = load_throughputs(path, machine="amx-bf16")
    speedup = MACHINE_TYPES["amx-bf16"].assumed_speedup
    assert amx.teacher_fps_per_vcpu == pytest.approx(10.0 * speedup)
    assert not amx.measured and any("assumed" in n for n in amx.notes)
    r = plan(Scenario(), amx)
    assert r["machine"]["type"] == "amx-bf16" and "C3" in r["machine"]["examples"]
    assert r["compute"]["teacher"]["vcpu_hours"] == pytest.approx(
        r["corpus"]["windows"] / (10.0 * speedup) / 3600)
    with pytest.raises(ParameterError, match="machine must be one of"):
        load_throughputs(path, machine="quantum")
    assert cli.main(["plan", "--models-json", str(path), "--machine", "no-bf16"]) == 0
    out = capsys.readouterr().out
    assert "machine: no-bf16" in out and "m6i" in out and "teacher 10.00 windows/s/vCPU" in out


def test_bf16_rate_from_a_same_run_ratio_file(tmp_path):
    fp32_only = {"created_at": "t", "machine": {"cpu_count": 2},
                 "results": [{"kind": "teacher", "name": "aisfx", "batch": 64, "windows_per_s": 40.0}]
                 + [{"kind": "student", "name": f"sea-{d}", "batch": 64, "windows_per_s": 600.0}
                    for d in (512, 256, 128, 64)]}
    (tmp_path / "models.json").write_text(json.dumps(fp32_only))
    # no bf16 rows and no ratio file: the stated default, said so
    tp = load_throughputs(tmp_path / "models.json", machine="avx512-bf16")
    assert tp.teacher_fps_per_vcpu == CAPACITY.default_teacher_fps_per_vcpu and not tp.measured
    loaded = {"created_at": "t2", "machine": {"cpu_count": 2},
              "results": [{"kind": "teacher", "name": "aisfx", "batch": 64, "precision": p,
                           "windows_per_s": v} for p, v in (("fp32", 4.0), ("bf16", 6.0))]}
    (tmp_path / "models_bf16.json").write_text(json.dumps(loaded))
    tp = load_throughputs(tmp_path / "models.json", machine="avx512-bf16")
    assert tp.teacher_fps_per_vcpu == pytest.approx(20.0 * 1.5) and tp.precision == "bf16"
    assert any("models_bf16.json" in n for n in tp.notes)
