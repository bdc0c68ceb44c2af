"""`sea embed` and process_file(s): .npz outputs, forwarded options, bad files, progress bar."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import sea_core
from conftest import URBAN_OGG, chirp, need_shared
from sea_core.api import main as embed_main
from sea_core.audio.io import read_audio
from pipelines.job.cli import main as sea_main
from sea_core.errors import AudioReadError, ModelNotFoundError
from sea_core.params import SPARSE_L3_SPARSITIES

SR = 8000


@pytest.fixture
def registered(student_file):
    from sea_core.models import store

    return store.register(student_file, emb_dim=64, head="relu", window_seconds=1.0,
                          teacher_id="test-fixture", source="pytest")


@pytest.fixture
def wavs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    good1, good2 = d / "a_good.wav", d / "c_good.flac"
    sf.write(good1, chirp(200, 2000, 2.0, SR), SR)
    stereo = np.stack([chirp(300, 900, 1.5, 16_000), chirp(500, 3000, 1.5, 16_000)], axis=1)
    sf.write(good2, stereo, 16_000)
    bad = d / "b_bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    return good1, bad, good2


def test_sea_embed_writes_good_files_then_fails_naming_the_bad_one(registered, wavs, tmp_path,
                                                                   capsys):
    good1, bad, good2 = wavs
    out = tmp_path / "out"
    rc = sea_main(["embed", str(good1), str(bad), str(good2), "--output-dir", str(out),
                   "--emb-dim", "64", "--hop-size", "0.5"])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"failed: {bad}" in captured.err and "cannot decode" in captured.err
    assert "2 written, 1 failed" in captured.out
    assert "3/3" in captured.err and "file" in captured.err  # the progress bar
    assert sorted(p.name for p in out.iterdir()) == ["a_good.npz", "c_good.npz"]
    for wav, n in ((good1, 4), (good2, 3)):
        with np.load(out / f"{Path(wav).stem}.npz") as z:
            assert z["embedding"].shape == (n, 64) and z["embedding"].dtype == np.float32
            np.testing.assert_allclose(z["timestamps"], np.arange(n) * 0.5)
            assert str(z["model_id"]) == registered.model_id
            audio, sr = read_audio(str(wav))
            ref, _ = sea_core.get_embedding(audio, sr, model_type="sea", emb_dim=64, hop_size=0.5)
            np.testing.assert_allclose(z["embedding"], ref, rtol=1e-5, atol=1e-5)


def test_process_files_and_process_file(registered, wavs, tmp_path):
    good1, bad, good2 = wavs
    out = tmp_path / "pf"
    written = sea_core.process_files([good1, bad, good2], output_dir=out, emb_dim=64,
                                     suffix="emb", center=False)
    assert written == [out / "a_good_emb.npz", None, out / "c_good_emb.npz"]
    with np.load(written[0]) as z:
        assert set(z.files) >= {"embedding", "timestamps"}
        assert z["embedding"].shape == (11, 64)  # 2 s, hop 0.1, not centred
    with pytest.raises(AudioReadError, match="b_bad.wav"):
        sea_core.process_file(str(bad), output_dir=out, emb_dim=64)
    assert sea_core.process_file(str(good2), output_dir=out, emb_dim=64) == out / "c_good.npz"


def test_cli_forwards_model_type(wavs, tmp_path, capsys):
    """edgel3 bug 2: its CLI never forwarded --model-type."""
    good1, _, _ = wavs
    out = tmp_path / "l3"
    rc = sea_main(["embed", str(good1), "--output-dir", str(out), "--model-type", "l3-random",
                   "--hop-size", "1.0", "--no-centering", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    with np.load(out / "a_good.npz") as z:
        assert z["embedding"].shape == (2, 512)
        np.testing.assert_allclose(z["timestamps"], [0.0, 1.0])
        assert str(z["model_id"]) == "l3-random(seed=0)"


def test_cli_forwards_centering_hop_and_suffix(registered, wavs, tmp_path):
    good1, _, _ = wavs
    out = tmp_path / "c"
    assert sea_main(["embed", str(good1), "-o", str(out), "--emb-dim", "64", "--hop-size", "0.25",
                     "--no-centering", "-x", "nc", "--quiet"]) == 0
    assert sea_main(["embed", str(good1), "-o", str(out), "--emb-dim", "64", "--hop-size", "0.25",
                     "-x", "c", "--quiet"]) == 0
    with np.load(out / "a_good_nc.npz") as nc, np.load(out / "a_good_c.npz") as c:
        assert nc["embedding"].shape == (5, 64) and c["embedding"].shape == (7, 64)


@pytest.mark.parametrize("sparsity", SPARSE_L3_SPARSITIES)
def test_cli_accepts_every_sparsity(sparsity, wavs):
    good1, _, _ = wavs
    # parsed (no argparse exit); then the missing trained L3 weights are reported
    with pytest.raises(ModelNotFoundError, match="teacher-weights"):
        embed_main([str(good1), "--model-type", "sparse", "--sparsity", str(sparsity), "--quiet"])


def test_cli_rejects_unknown_options():
    with pytest.raises(SystemExit):
        embed_main(["x.wav", "--model-type", "vggish"])
    with pytest.raises(SystemExit):
        embed_main(["x.wav", "--sparsity", "50"])


def test_embed_real_ogg_at_44k1_stereo(registered, tmp_path):
    ogg = need_shared(URBAN_OGG)
    out = sea_core.process_file(str(ogg), output_dir=tmp_path, emb_dim=64, hop_size=1.0)
    audio, sr = read_audio(str(ogg))
    assert sr == 44_100
    with np.load(out) as z:
        n = 1 + int(np.ceil((len(audio) * SR / sr + SR // 2 - SR) / SR - 1e-9))
        assert z["embedding"].shape == (n, 64) and n == 26
        assert np.isfinite(z["embedding"]).all()
