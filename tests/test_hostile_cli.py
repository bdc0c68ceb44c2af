"""Wrong arguments and hostile files at every command (issue 13): one-line errors (exit 2),
no output folder created before the error, `sea run` not locked by a failed start, integer
PCM scaled, option types checked, store ids confined to the store, progress and quiet logs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import chirp
from pipelines.job.cli import main as sea_main
from sea_core.errors import ModelError, ParameterError

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(capsys, command: str) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert err[0].startswith(f"sea {command}: error: "), err[0]
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "a_file"
    f.write_text("not a directory\n")
    return f


# --------------------------------------------------------------------------- 13.9 output paths
def test_outputs_pointing_at_a_file_are_one_line_errors(a_file, student_file, tmp_path, capsys):
    wav = tmp_path / "x.wav"
    sf.write(wav, chirp(200, 2000, 1.5, 8000), 8000)
    cases = [
        ("embed", ["embed", str(wav), "--model", str(student_file), "--output-dir", str(a_file)]),
        ("run", ["run", "--out", str(a_file)]),
        ("pipeline embed", ["pipeline", "embed", "--input", str(wav), "--output", str(a_file)]),
        ("train", ["train", "--data", str(tmp_path), "--out", str(a_file)]),
        ("quantize", ["quantize", str(student_file), "--data", str(tmp_path), "--out", str(a_file)]),
    ]
    for command, argv in cases:
        capsys.readouterr()
        assert sea_main(argv) == 2, command
        assert "exists and is not a directory" in one_line_error(capsys, command)
        assert a_file.read_text() == "not a directory\n"


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    import keras

    d = tmp_path_factory.mktemp("bad_models")
    corrupt = d / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04" + bytes(np.random.default_rng(0).integers(0, 255, 500,
                                                                                  dtype=np.uint8)))
    text = d / "text.keras"
    text.write_text("hello, I am not a model\n")
    inp = keras.Input((8000,))
    out = keras.layers.Lambda(lambda x: x[:, :64] * 2.0)(inp)
    lam = d / "lambda.keras"
    keras.Model(inp, out).save(lam)
    return {"corrupt": corrupt, "text": text, "lambda": lam}


@pytest.mark.parametrize("kind", ["corrupt", "text", "lambda"])
def test_quantize_bad_model_file_is_a_one_line_error(kind, bad_models, tmp_path, capsys):
    path = bad_models[kind]
    out = tmp_path / "deploy"
    assert sea_main(["quantize", str(path), "--data", str(tmp_path), "--out", str(out)]) == 2
    line = one_line_error(capsys, "quantize")
    assert str(path) in line and "cannot load the Keras model" in line
    assert "File not found" not in line  # Keras' words for a file that does exist
    assert not out.exists()


def test_sea_embed_directory_expands_and_no_empty_output(student_file, tmp_path, capsys):
    d = tmp_path / "clips"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", chirp(200, 2000, 1.5, 8000), 8000)
    sf.write(d / "sub" / "b.flac", chirp(300, 900, 2.0, 16_000), 16_000)
    (d / "notes.txt").write_text("skip me")
    out = tmp_path / "out"
    assert sea_main(["embed", str(d), "--model", str(student_file), "--output-dir", str(out),
                     "--hop-size", "0.5", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "b.npz"]
    assert "is a directory" not in capsys.readouterr().err
    # every input fails: the output folder is not created
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    out2 = tmp_path / "out2"
    assert sea_main(["embed", str(bad), "--model", str(student_file), "--output-dir", str(out2),
                     "--quiet"]) == 1
    assert not out2.exists()


# --------------------------------------------------------------------------- 13.7 sea run lock
def test_failed_sea_run_does_not_lock_its_output(tmp_path, capsys):
    out = tmp_path / "run"
    # an invalid setting: refused before anything is written
    assert sea_main(["run", "--out", str(out), "--fraction", "2"]) == 2
    assert "--fraction must be in (0, 1]" in one_line_error(capsys, "run")
    assert not out.exists()
    assert sea_main(["run", "--out", str(out), "--method", "bogus"]) == 2
    assert "--method must be one of" in one_line_error(capsys, "run")
    assert not out.exists()
    # a run that fails in its first stage (empty corpus) locks nothing either
    corpus = tmp_path / "corpus"
    (corpus / "upstream").mkdir(parents=True)
    assert sea_main(["run", "--out", str(out), "--corpus", str(corpus), "--seed", "1"]) == 2
    assert "no input matches" in one_line_error(capsys, "run")
    assert not (out / "stages" / "config.json").exists()
    # the corrected rerun (other settings) is not refused as "a run made with other settings"
    assert sea_main(["run", "--out", str(out), "--corpus", str(corpus), "--seed", "2"]) == 2
    line = one_line_error(capsys, "run")
    assert "other settings" not in line and "no input matches" in line


# --------------------------------------------------------------------------- 13.9 / 10 / 13 API
@pytest.fixture(scope="module")
def student(student_file):
    from sea_core.models.store import load_keras_student

    return load_keras_student(student_file)


def test_tiny_hop_is_a_parameter_error_not_an_allocation(student):
    from sea_core import get_embedding

    audio = chirp(200, 2000, 2.0, 8000)
    with pytest.raises(ParameterError, match="less than one sample"):
        get_embedding(audio, 8000, model=student, hop_size=1e-7)
    with pytest.raises(ParameterError, match="GiB"):
        get_embedding(np.zeros(8000 * 600, np.float32), 8000, model=student, hop_size=1 / 8000)


def test_integer_pcm_is_scaled_like_soundfile(student, tmp_path):
    from sea_core import get_embedding

    x = chirp(200, 2000, 2.0, 8000, amplitude=0.6)
    pcm = np.round(x * 32767).astype(np.int16)
    ref, _ = get_embedding(pcm.astype(np.float32) / 32768.0, 8000, model=student, hop_size=0.5)
    got, _ = get_embedding(pcm, 8000, model=student, hop_size=0.5)
    np.testing.assert_array_equal(got, ref)
    # the same as reading the int16 file with soundfile
    p = tmp_path / "pcm.wav"
    sf.write(p, pcm, 8000, subtype="PCM_16")
    audio, _ = sf.read(p, dtype="float32")
    via_file, _ = get_embedding(audio, 8000, model=student, hop_size=0.5)
    np.testing.assert_array_equal(got, via_file)
    got32, _ = get_embedding(pcm.astype(np.int32) << 16, 8000, model=student, hop_size=0.5)
    np.testing.assert_allclose(got32, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"center": "invalid"}, "center must be True or False"),
    ({"center": 1}, "center must be True or False"),
    ({"verbose": "yes"}, "verbose must be True or False"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"hop_size": "fast"}, "hop_size"),
])
def test_option_types_checked(kwargs, match, student):
    from sea_core import get_embedding

    with pytest.raises(ParameterError, match=match):
        get_embedding(chirp(200, 2000, 2.0, 8000), 8000, model=student, **kwargs)


# --------------------------------------------------------------------------- 13.12 store ids
def test_store_id_cannot_escape_the_store(student_file, capsys):
    from sea_core.models import store
    from sea_core.paths import models_dir

    entry = store.register(student_file, emb_dim=64, head="relu", window_seconds=1.0,
                           teacher_id="t", source="pytest")
    meta = models_dir() / entry.model_id / "meta.json"
    doc = json.loads(meta.read_text())
    doc["model_id"] = "../../.."
    meta.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="invalid model id '../../..'"):
        store.list_entries()
    assert sea_main(["models", "list"]) == 2
    assert "invalid model id" in one_line_error(capsys, "models")
    with pytest.raises(ModelError):
        store.StoreEntry(**doc)
    doc["model_id"] = "sea64-other"  # a safe id that is not its own directory
    meta.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="does not match its directory"):
        store.list_entries()


# --------------------------------------------------------------------------- 13.14 progress, logs
def test_evaluate_embedding_shows_a_progress_bar(student, tmp_path, capsys):
    from sea_core.api import load_embedder
    from sea_core.evaluate import embed_clips

    for i in range(3):
        sf.write(tmp_path / f"c{i}.wav", chirp(200 + 100 * i, 2000, 2.0, 8000), 8000)
    emb = load_embedder(model=student)
    x = embed_clips(emb, tmp_path, [f"c{i}.wav" for i in range(3)], hop_seconds=0.5, center=True,
                    progress=True, desc="student [train]")
    assert x.shape[0] == 3
    err = capsys.readouterr().err
    assert "student [train]" in err and "3/3" in err and "clip" in err
    embed_clips(emb, tmp_path, ["c0.wav"], hop_seconds=0.5, center=True, progress=False)
    assert capsys.readouterr().err == ""


def test_tensorflow_cxx_logs_quiet_unless_verbose(bad_models, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    argv = ["quantize", str(bad_models["text"]), "--data", str(tmp_path), "--out",
            str(tmp_path / "d")]
    quiet = subprocess.run([sys.executable, "-m", "pipelines", *argv], env=env, capture_output=True,
                           text=True, timeout=300)
    loud = subprocess.run([sys.executable, "-m", "pipelines", "-v", *argv], env=env,
                          capture_output=True, text=True, timeout=300)
    assert quiet.returncode == loud.returncode == 2
    assert "cpu_feature_guard" in loud.stderr  # TensorFlow's C++ INFO line, shown with -v
    assert "cpu_feature_guard" not in quiet.stderr
    assert "sea quantize: error:" in quiet.stderr
