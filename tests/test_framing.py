"""sea_core.audio.framing: openl3/edgel3 window counts, contents, timestamps, alignment."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sea_core.audio import frame_audio, window_starts_seconds
from sea_core.errors import AudioTooShortError, ParameterError
from sea_core.params import AISFX_TEACHER, L3_TEACHER, STUDENT_MEL64, student_spec

SR = L3_TEACHER.sample_rate
W = L3_TEACHER.window_samples


def _openl3_reference(audio, sr, hop_seconds, center):
    """openl3 0.4 `_preprocess_audio_batch` framing, transcribed (integral hops only)."""
    frame_len, hop_len = sr, int(hop_seconds * sr)
    if center:
        audio = np.pad(audio, (int(frame_len / 2.0), 0), mode="constant")
    n = audio.size
    pad = int(np.ceil((n - frame_len) / float(hop_len))) * hop_len - (n - frame_len)
    if pad > 0:
        audio = np.pad(audio, (0, pad), mode="constant")
    n_frames = 1 + int((len(audio) - frame_len) / float(hop_len))
    return np.stack([audio[i * hop_len: i * hop_len + frame_len] for i in range(n_frames)])


@pytest.mark.parametrize("seconds,center,expected", [
    (10.0, True, 96), (10.0, False, 91),
    (1.0, True, 6), (1.0, False, 1),
    (10.05, True, 97), (10.05, False, 92),
])
def test_counts_and_contents_match_openl3(seconds, center, expected, rng):
    x = rng.standard_normal(int(round(seconds * SR))).astype(np.float32)
    frames, ts = frame_audio(x, sr=SR, window_samples=W, hop_seconds=0.1, center=center)
    assert frames.shape == (expected, W) and frames.dtype == np.float32
    assert ts.dtype == np.float64
    np.testing.assert_allclose(ts, np.arange(expected) * 0.1)
    np.testing.assert_array_equal(frames, _openl3_reference(x, SR, 0.1, center))
    # every sample is covered, the last window reaches (or passes) the end of the clip
    pad = W // 2 if center else 0
    assert (expected - 1) * 4800 + W >= x.size + pad


def test_centre_padding_and_fresh_array():
    x = np.arange(1, 2 * W + 1, dtype=np.float32)
    frames, _ = frame_audio(x, sr=SR, window_samples=W, hop_seconds=0.5, center=True)
    assert np.all(frames[0, : W // 2] == 0) and frames[0, W // 2] == 1.0
    assert frames[1, 0] == 1.0  # window 1 starts at sample 24000 of the padded signal
    assert frames.flags.writeable and frames.flags.c_contiguous
    frames[0, -1] = -5.0  # no aliasing between overlapping windows
    assert frames[1, -1 - 24_000] != -5.0


def test_upstream_sonyc_corpus_hop():
    x = np.zeros(10 * SR, dtype=np.float32)
    frames, ts = frame_audio(x, sr=SR, window_samples=W, hop_seconds=L3_TEACHER.corpus_hop_seconds)
    assert frames.shape[0] == 20 and ts[-1] == pytest.approx(9.5)


def test_non_integral_hop_aisfx_at_8k():
    """aisfx hop 51200/44100 s framed at 8 kHz: starts are round(i*hop*sr), no drift."""
    hop = AISFX_TEACHER.corpus_hop_seconds
    student_sr = STUDENT_MEL64.sample_rate
    w = student_spec(64, AISFX_TEACHER).window_samples
    x = np.arange(1, 60 * student_sr + 1, dtype=np.float32)  # sample value = index + 1
    frames, ts = frame_audio(x, sr=student_sr, window_samples=w, hop_seconds=hop, center=False)
    starts = frames[:, 0].astype(np.int64) - 1
    np.testing.assert_array_equal(starts, np.round(np.arange(len(frames)) * hop * student_sr))
    assert len(frames) == 1 + math.ceil((x.size - w) / (hop * student_sr))
    # the last window holds the last sample; the previous one does not (count is minimal)
    assert frames[-1].max() == x.size and frames[-2].max() < x.size
    np.testing.assert_array_equal(np.diff(frames[3]), np.ones(w - 1))


def test_student_windows_align_with_teacher_windows(rng):
    """n_windows forces the 8-kHz count to the teacher's; window starts agree in time."""
    teacher, hop = AISFX_TEACHER, AISFX_TEACHER.corpus_hop_seconds
    student = student_spec(64, teacher)
    seconds = 7.3
    x44 = rng.standard_normal(int(seconds * teacher.sample_rate)).astype(np.float32)
    t_frames, t_ts = frame_audio(x44, sr=teacher.sample_rate, window_samples=teacher.window_samples,
                                 hop_seconds=hop)
    x8 = rng.standard_normal(int(seconds * 8000)).astype(np.float32)
    for forced in (len(t_frames), len(t_frames) + 2, 1):
        s_frames, s_ts = frame_audio(x8, sr=8000, window_samples=student.window_samples,
                                     hop_seconds=hop, n_windows=forced)
        assert s_frames.shape == (forced, student.window_samples)
        assert np.array_equal(s_ts, np.arange(forced) * hop)
    s_frames, s_ts = frame_audio(x8, sr=8000, window_samples=student.window_samples,
                                 hop_seconds=hop, n_windows=len(t_frames))
    np.testing.assert_array_equal(s_ts, t_ts)
    t_start = window_starts_seconds(len(t_ts), hop, teacher.window_seconds, True, sr=teacher.sample_rate)
    s_start = window_starts_seconds(len(s_ts), hop, student.window_seconds, True, sr=8000)
    assert np.max(np.abs(t_start - s_start)) < 2.0 / 8000
    # forcing more windows than the audio has pads them with zeros
    more, _ = frame_audio(x8, sr=8000, window_samples=student.window_samples, hop_seconds=hop,
                          n_windows=len(t_frames) + 3)
    assert np.all(more[-1] == 0)


def test_window_starts_seconds():
    np.testing.assert_allclose(window_starts_seconds(3, 0.5, 1.0, True), [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(window_starts_seconds(3, 0.1, 1.0, False), [0.0, 0.1, 0.2])
    exact = window_starts_seconds(4, 51200 / 44100, 18390 / 8000, True, sr=8000)
    np.testing.assert_allclose(exact * 8000 % 1, 0, atol=1e-6)  # sample-aligned
    assert exact[0] == -(18390 // 2) / 8000


def test_too_short_names_uri():
    with pytest.raises(AudioTooShortError, match="clip.wav") as ei:
        frame_audio(np.zeros(W - 1), sr=SR, window_samples=W, hop_seconds=0.1, uri="clip.wav")
    assert ei.value.kind == "too_short" and "47999 samples" in ei.value.reason
    frames, _ = frame_audio(np.zeros(W), sr=SR, window_samples=W, hop_seconds=0.1, center=False)
    assert frames.shape == (1, W)


@pytest.mark.parametrize("kwargs", [
    dict(hop_seconds=0.0), dict(hop_seconds=float("nan")), dict(window_samples=0),
    dict(n_windows=0), dict(sr=-1),
])
def test_bad_parameters(kwargs):
    args = dict(sr=8000, window_samples=8000, hop_seconds=0.1) | kwargs
    with pytest.raises(ParameterError):
        frame_audio(np.zeros(16000), **args)
    with pytest.raises(ParameterError, match="1-D"):
        frame_audio(np.zeros((2, 16000)), sr=8000, window_samples=8000, hop_seconds=0.1)


def test_window_starts_seconds_with_window_samples():
    """Given the window in samples (what frame_audio cut), no seconds -> samples round trip."""
    hop = AISFX_TEACHER.corpus_hop_seconds
    spec = AISFX_TEACHER
    via_seconds = window_starts_seconds(5, hop, spec.window_seconds, True, sr=spec.sample_rate)
    via_samples = window_starts_seconds(5, hop, spec.window_seconds, True, sr=spec.sample_rate,
                                        window_samples=spec.window_samples)
    np.testing.assert_array_equal(via_samples, via_seconds)
    assert via_samples[0] == -(spec.window_samples // 2) / spec.sample_rate
    odd = window_starts_seconds(2, 1.0, 1.0, True, sr=8000, window_samples=7999)
    assert odd[0] == -(7999 // 2) / 8000


def test_decode_framing_config_derives_sizes_from_the_teacher_spec():
    """pipelines' FramingConfig holds the TeacherSpec and the hop; every size is derived."""
    from pipelines.transforms.decode import FramingConfig
    from sea_core.params import AISFX_TEACHER_1S, L3_TEACHER

    for spec, student in ((AISFX_TEACHER, 18_390), (AISFX_TEACHER_1S, 8000), (L3_TEACHER, 8000)):
        cfg = FramingConfig(teacher=spec, hop_seconds=spec.corpus_hop_seconds)
        assert (cfg.teacher_sr, cfg.teacher_window) == (spec.sample_rate, spec.window_samples)
        assert cfg.window_seconds == spec.window_seconds and cfg.student_window == student
        assert not hasattr(cfg, "relevance")          # the time zone is not framing
