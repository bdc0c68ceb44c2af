"""sea_core.audio.io: real files (WAV/FLAC/OGG) on disk and in memory://, and every failure kind."""
from __future__ import annotations

import io
import pickle
import uuid

import fsspec
import numpy as np
import pytest
import soundfile as sf

from sea_core.audio import check_audio, decode_bytes, read_audio, resample, to_mono
from sea_core.errors import (AudioReadError, ChannelLayoutError, EmptyAudioError,
                             NonFiniteAudioError, ParameterError)
from tests.conftest import SONYC_MINI, URBAN_OGG, need_shared, sine


def _encode(audio: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture
def memory_url():
    """A unique memory:// URL, removed afterwards."""
    fs = fsspec.filesystem("memory")
    url = f"memory://sea-test-{uuid.uuid4().hex}"
    yield url
    if fs.exists(url):
        fs.rm(url, recursive=True)


@pytest.mark.parametrize("fmt,tol", [("WAV", 1e-4), ("FLAC", 1e-4), ("OGG", 0.05)])
def test_roundtrip_local_file_and_file_url(tmp_path, fmt, tol):
    x = sine(440.0, 0.5, 16_000, amplitude=0.5)
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, x, 16_000, format=fmt)
    for uri in (str(path), f"file://{path}"):
        y, sr = read_audio(uri)
        assert sr == 16_000
        assert y.dtype == np.float32 and y.ndim == 1 and y.shape == x.shape
        assert np.max(np.abs(y - x)) < tol


def test_memory_url_and_decode_bytes_agree(memory_url):
    x = sine(1000.0, 0.25, 22_050)
    data = _encode(x, 22_050, "FLAC")
    with fsspec.open(f"{memory_url}/a.flac", "wb") as f:
        f.write(data)
    y1, sr1 = read_audio(f"{memory_url}/a.flac")
    y2, sr2 = decode_bytes(data, "a.flac")
    assert sr1 == sr2 == 22_050
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(y1, x, atol=1e-4)


def test_stereo_downmix_is_channel_mean(tmp_path):
    left = sine(300.0, 0.2, 8_000, amplitude=0.4)
    right = sine(700.0, 0.2, 8_000, amplitude=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 8_000, subtype="FLOAT")
    y, sr = read_audio(str(path))
    assert y.shape == left.shape
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_resample_44k1_to_8k_length_and_tone(tmp_path):
    x = sine(440.0, 1.0, 44_100, amplitude=0.5)
    path = tmp_path / "tone.wav"
    sf.write(path, x, 44_100, subtype="FLOAT")
    y, sr = read_audio(str(path), target_sr=8_000)
    assert sr == 8_000 and y.shape == (8_000,) and y.dtype == np.float32
    # the 440-Hz tone survives: dominant bin at 440 Hz, amplitude kept (away from the edges)
    spec = np.abs(np.fft.rfft(y[1000:7000] * np.hanning(6000)))
    assert abs(np.argmax(spec) * 8_000 / 6000 - 440.0) < 2.0
    assert abs(np.max(np.abs(y[1000:7000])) - 0.5) < 0.01


def test_resample_function_and_identity():
    x = np.ones(44_100, dtype=np.float32)
    assert resample(x, 44_100, 8_000).shape == (8_000,)
    assert resample(x, 44_100, 44_100) is x
    with pytest.raises(ParameterError, match="sr_out"):
        resample(x, 44_100, 0)
    with pytest.raises(ParameterError, match="1-D"):
        resample(np.ones((2, 10)), 8_000, 16_000)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioReadError, match="nope.wav") as ei:
        read_audio(str(path))
    assert ei.value.uri == str(path) and "not found" in ei.value.reason
    with pytest.raises(AudioReadError, match="not found"):
        read_audio("memory://sea-test-absent/nothing.wav")


def test_corrupt_random_bytes(tmp_path, rng):
    path = tmp_path / "garbage.wav"
    path.write_bytes(rng.bytes(4096))
    with pytest.raises(AudioReadError, match="garbage.wav") as ei:
        read_audio(str(path))
    assert ei.value.kind == "unreadable"
    with pytest.raises(AudioReadError, match="empty"):
        decode_bytes(b"", "zero.wav")


def test_empty_zero_frames(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 48_000)
    with pytest.raises(EmptyAudioError, match="empty.wav") as ei:
        read_audio(str(path))
    assert ei.value.kind == "empty"


@pytest.mark.parametrize("fmt", ["FLAC", "WAV", "OGG"])
def test_truncated_file(tmp_path, fmt):
    data = _encode(sine(500.0, 2.0, 16_000), 16_000, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match=f"cut.{fmt.lower()}") as ei:
        read_audio(str(path))
    assert "trunc" in ei.value.reason or "decode" in ei.value.reason


def test_nan_and_inf_float_wav(tmp_path):
    x = sine(200.0, 0.1, 8_000)
    x[10] = np.nan
    x[20] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, x, 8_000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match="nan.wav") as ei:
        read_audio(str(path))
    assert "1 NaN" in ei.value.reason and "1 inf" in ei.value.reason and "index 10" in ei.value.reason


def test_errors_pickle_with_uri():
    err = pickle.loads(pickle.dumps(NonFiniteAudioError("gs://b/x.wav", "2 NaN")))
    assert isinstance(err, NonFiniteAudioError) and err.uri == "gs://b/x.wav" and err.reason == "2 NaN"


def test_missing_backend_names_extra():
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed: the missing-backend path cannot be exercised")
    except ImportError:
        pass
    with pytest.raises(AudioReadError, match=r"sea\[gcp\]") as ei:
        read_audio("gs://some-bucket/clip.wav")
    assert ei.value.uri == "gs://some-bucket/clip.wav"


def test_to_mono_layouts():
    a = np.arange(12, dtype=np.float32)
    assert to_mono(a).shape == (12,) and to_mono(a).dtype == np.float32
    frames_first = np.stack([a, -a], axis=1)  # (12, 2) soundfile layout
    np.testing.assert_array_equal(to_mono(frames_first), np.zeros(12))
    channels_first = np.stack([a, a + 2], axis=0)  # (2, 12)
    np.testing.assert_array_equal(to_mono(channels_first), a + 1)
    assert to_mono(np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ChannelLayoutError, match="clip.wav"):
        to_mono(np.zeros((2, 3, 4)), "clip.wav")
    with pytest.raises(ChannelLayoutError, match="channel axis"):
        to_mono(np.zeros((500, 400)), "clip.wav")


def test_check_audio():
    assert check_audio(np.zeros(3, dtype=np.float64), "x").dtype == np.float32
    with pytest.raises(EmptyAudioError):
        check_audio(np.zeros(0), "x")
    with pytest.raises(NonFiniteAudioError, match="x: 1 of 3"):
        check_audio(np.array([0.0, np.nan, 1.0]), "x")


@pytest.mark.shared
def test_sonyc_mini_wavs_decode():
    files = sorted(need_shared(SONYC_MINI / "audio").glob("*.wav"))
    assert files, "no SONYC-UST mini wavs"
    for path in files[:3]:
        y, sr = read_audio(str(path))
        assert sr == 48_000 and y.shape == (480_000,) and y.dtype == np.float32
        assert np.isfinite(y).all() and 0 < np.abs(y).max() <= 1.0
    y8, sr8 = read_audio(str(files[0]), target_sr=8_000)
    assert sr8 == 8_000 and y8.shape == (80_000,)


@pytest.mark.shared
def test_urban_stereo_ogg_decodes_and_downmixes():
    path = need_shared(URBAN_OGG)
    raw, sr_raw = sf.read(str(path), dtype="float32", always_2d=True)
    assert raw.shape[1] == 2
    y, sr = read_audio(f"file://{path}")
    assert sr == sr_raw == 44_100 and y.shape == (raw.shape[0],)
    np.testing.assert_allclose(y, raw.mean(axis=1), atol=1e-6)
