"""One error tree for the whole project.

Every error raised on bad input is a :class:`SeaError` and names the file
(``uri``) or field it is about, so that a user (or a dead-letter row) can tell
exactly what failed and why.
"""
from __future__ import annotations

__all__ = [
    "SeaError", "SeaWarning", "ParameterError",
    "AudioError", "AudioReadError", "NotAFileError", "AudioTooLongError", "SampleRateError",
    "EmptyAudioError", "AudioTooShortError",
    "NonFiniteAudioError", "ChannelLayoutError",
    "MetadataError", "SidecarError",
    "ModelError", "WeightsError", "ModelNotFoundError",
    "DataError", "SchemaError", "BudgetError", "DeployError",
]


class SeaError(Exception):
    """Root of every error raised by `sea`."""


class SeaWarning(UserWarning):
    """Root of every warning emitted by `sea`."""


class ParameterError(SeaError, ValueError):
    """An argument or configuration value is invalid."""


class AudioError(SeaError):
    """An audio input cannot be used. ``uri`` names it, ``reason`` says why."""

    kind = "audio_error"

    def __init__(self, uri: str, reason: str):
        self.uri = str(uri)
        self.reason = reason
        super().__init__(f"{self.uri}: {reason}")

    def __reduce__(self):  # picklable across Beam / dask workers
        return (type(self), (self.uri, self.reason))


class AudioReadError(AudioError):
    """Unreadable or corrupt file (missing, not audio, truncated container)."""
    kind = "unreadable"


class NotAFileError(AudioReadError):
    """A listed input is a directory (e.g. named ``1551710011.flac/``), not an audio file."""
    kind = "not_a_file"


class AudioTooLongError(AudioError):
    """The decoded signal would exceed the duration cap (or its rate is below the floor)."""
    kind = "too_long"


class SampleRateError(AudioError):
    """The file's sample rate is below the plausible floor (e.g. a header declaring 1 Hz)."""
    kind = "bad_sample_rate"


class EmptyAudioError(AudioError):
    """The file decodes to zero samples."""
    kind = "empty"


class AudioTooShortError(AudioError):
    """The audio is shorter than one analysis window."""
    kind = "too_short"


class NonFiniteAudioError(AudioError):
    """The audio holds NaN or infinite samples."""
    kind = "non_finite"


class ChannelLayoutError(AudioError):
    """The array / file has a channel layout we cannot downmix."""
    kind = "channel_layout"


class MetadataError(AudioError):
    """A recording's name does not carry a parsable sensor / timestamp."""
    kind = "bad_name"


class SidecarError(AudioError):
    """A required SPL sidecar is missing or malformed."""
    kind = "sidecar"


class ModelError(SeaError):
    """A model cannot be built or loaded."""


class WeightsError(ModelError):
    """Stored weights do not match the network (layer name or shape)."""


class ModelNotFoundError(ModelError):
    """No model is available for the request; the message says how to get one."""


class DataError(SeaError):
    """A dataset (Parquet shards, manifests, artifacts) is missing or bad."""


class SchemaError(DataError):
    """A dataset's schema or schema version is not the one expected."""


class BudgetError(SeaError):
    """A deployed model does not fit the device budget."""


class DeployError(SeaError):
    """Conversion or on-device verification failed."""
