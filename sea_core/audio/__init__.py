"""Audio input, framing and sound levels (numpy only: no TensorFlow is imported here)."""
from sea_core.audio.framing import frame_audio, window_start_samples, window_starts_seconds
from sea_core.audio.io import check_audio, decode_bytes, read_audio, resample, to_mono
from sea_core.audio.spl import (a_weighting_db, a_weighting_gain, leq_dba, read_spl_sidecar,
                                relevance_scores, window_spl_from_sidecar)

__all__ = [
    "read_audio", "decode_bytes", "to_mono", "resample", "check_audio",
    "frame_audio", "window_starts_seconds", "window_start_samples",
    "a_weighting_db", "a_weighting_gain", "leq_dba", "read_spl_sidecar",
    "window_spl_from_sidecar", "relevance_scores",
]
