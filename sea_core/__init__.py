"""sea: Specialized Embedding Approximation for audio on microcontrollers.

The public API is edgel3-compatible::

    from sea_core import get_embedding
    emb, ts = get_embedding(audio, sr, model_type="sea", emb_dim=128)

Heavy dependencies (TensorFlow, Beam) are imported lazily, on first use.
"""
import os

# One inter-op thread: with more, TensorFlow's CPU training step is not bit-reproducible
# even under enable_op_determinism (measured: 1e-4 weight drift after 6 steps of the demo
# student between two runs); intra-op threads still use every core, at no measured cost.
# Read by TensorFlow when it starts, so it must be set before TensorFlow is imported.
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

from sea_core.errors import ParameterError, SeaError, SeaWarning  # noqa: E402

__version__ = "0.1.0"

__all__ = ["get_embedding", "process_file", "process_files", "SeaError", "SeaWarning",
           "ParameterError", "__version__"]


def __getattr__(name):  # lazy: importing sea_core must not import TensorFlow
    if name in ("get_embedding", "process_file", "process_files"):
        from sea_core import api
        return getattr(api, name)
    raise AttributeError(f"module 'sea_core' has no attribute {name!r}")
