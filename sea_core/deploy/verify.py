"""TFLite-Micro verification of a deployment: the two int8 runtimes and the checks.

* :func:`tflm_interpreter` / :func:`tflm_min_arena` / :func:`tflm_arena_used`
  drive the TFLite-Micro Python interpreter. It writes its diagnostics (the
  unsupported op, the arena shortfall, the allocation table) to the C-level
  stderr only, so file descriptor 2 is captured around every call
  (:func:`capture_fd2`) and its text is put into the :class:`DeployError`.
* :func:`litert_reference` runs the same model in the ai-edge-litert interpreter
  with the reference kernels (``BUILTIN_REF``), which are bit-exact with TFLM.
* :func:`check_bit_exact`: THE comparison of a TFLM run with the reference kernels
  (used by :func:`verify_tflm` for one model and by the patched two-stage run);
  :func:`cosine_stats` / :func:`int8_outputs`: int8-vs-float fidelity.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time

import numpy as np

from sea_core.deploy.graph import dequantize_output, inspect_model, quantize_input
from sea_core.errors import DeployError
from sea_core.params import QUANT, QuantParams

__all__ = ["capture_fd2", "tflm_interpreter", "tflm_invoke", "tflm_min_arena", "tflm_arena_used",
           "litert_reference", "litert_run", "check_bit_exact", "verify_tflm", "cosine_stats",
           "int8_outputs", "mean_cosine"]

_ARENA_RE = re.compile(r"Arena allocation total (\d+) bytes")


# --------------------------------------------------------------------------- fd-2 capture
class _Captured:
    text = ""


@contextlib.contextmanager
def capture_fd2():
    """Capture what C code writes to file descriptor 2 (``with capture_fd2() as c: ...; c.text``)."""
    out = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.text = tmp.read().decode("utf8", errors="replace")


def _tflm_reason(text: str) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    return " | ".join(lines[-6:]) if lines else "(TFLM printed nothing)"


# --------------------------------------------------------------------------- TFLM
def tflm_interpreter(model_bytes: bytes, arena_size: int):
    """A TFLM interpreter with ``arena_size`` bytes, or :class:`DeployError` with TFLM's own text."""
    from tflite_micro.python.tflite_micro import runtime

    with capture_fd2() as cap:
        try:
            return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=int(arena_size))
        except (RuntimeError, ValueError) as exc:
            err = exc
    raise DeployError(f"TFLite-Micro cannot load the model with a {arena_size}-byte arena: "
                      f"{err}; TFLM says: {_tflm_reason(cap.text)}")


def tflm_invoke(interp, x_int8: np.ndarray) -> np.ndarray:
    """Run one example (batch 1) through a TFLM interpreter; int8 output [1, ...]."""
    with capture_fd2() as cap:
        try:
            interp.set_input(np.ascontiguousarray(x_int8), 0)
            interp.invoke()
            return np.array(interp.get_output(0))
        except (RuntimeError, ValueError) as exc:
            err = exc
    raise DeployError(f"TFLite-Micro invoke failed: {err}; TFLM says: {_tflm_reason(cap.text)}")


def tflm_arena_used(interp) -> int:
    """Arena bytes the interpreter allocated, parsed from ``print_allocations()`` on fd 2."""
    with capture_fd2() as cap:
        interp.print_allocations()
    m = _ARENA_RE.search(cap.text)
    if not m:
        raise DeployError(f"no 'Arena allocation total' in TFLM print_allocations output: "
                          f"{_tflm_reason(cap.text)}")
    return int(m.group(1))


def _loads(model_bytes: bytes, arena: int) -> bool:
    try:
        tflm_interpreter(model_bytes, arena)
        return True
    except DeployError:
        return False


def tflm_min_arena(model_bytes: bytes, q: QuantParams = QUANT, *, granularity: int = 16) -> int:
    """Smallest arena (to ``granularity`` bytes) with which TFLM allocates the model (bisection).

    Raises
    ------
    DeployError
        Even ``q.max_arena_bytes`` is not enough, or TFLM rejects the model for
        another reason (unsupported op: TFLM's own message is included).
    """
    hi = int(q.max_arena_bytes)
    tflm_interpreter(model_bytes, hi)      # raises with TFLM's reason (e.g. unsupported op)
    lo = 0
    while hi - lo > granularity:
        mid = (lo + hi) // 2
        mid -= mid % granularity
        if mid <= lo:
            break
        if _loads(model_bytes, mid):
            hi = mid
        else:
            lo = mid
    return hi


# --------------------------------------------------------------------------- TFLite reference
def litert_reference(model_bytes: bytes):
    """ai-edge-litert interpreter with the reference kernels (bit-exact with TFLM)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(model_bytes),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    return interp


def litert_run(interp, x_int8: np.ndarray) -> np.ndarray:
    """Run a batch [N, ...] of int8 examples one by one (the model has batch 1)."""
    i_det = interp.get_input_details()[0]
    o_det = interp.get_output_details()[0]
    out = []
    for x in x_int8:
        interp.set_tensor(i_det["index"], np.ascontiguousarray(x[None]))
        interp.invoke()
        out.append(np.array(interp.get_tensor(o_det["index"]))[0])
    return np.stack(out)


# --------------------------------------------------------------------------- checks
def check_bit_exact(model_bytes: bytes, x_int8: np.ndarray, run, *, what: str) -> float:
    """Run every window of ``x_int8`` through ``run`` (int8 [N, ...] -> int8 [N, ...]), compare
    with the TFLite reference kernels on ``model_bytes`` and return the ms per window.

    Raises
    ------
    DeployError
        ``{what} differs from ... by up to D int8 units`` when any output differs.
    """
    t0 = time.perf_counter()
    ys = run(x_int8)
    ms = (time.perf_counter() - t0) * 1000 / len(x_int8)
    ref = litert_run(litert_reference(model_bytes), x_int8)
    diff = int(np.abs(ys.astype(np.int32) - ref.astype(np.int32)).max())
    if diff:
        raise DeployError(f"{what} by up to {diff} int8 units on {len(x_int8)} windows")
    return float(ms)


def verify_tflm(model_bytes: bytes, x_int8: np.ndarray, *, q: QuantParams = QUANT) -> dict:
    """Smallest arena, reported arena, TFLM == TFLite (BUILTIN_REF) and ms per window.

    Raises
    ------
    DeployError
        TFLM cannot load or run the model (TFLM's own text included), or its
        output differs from the reference kernels.
    """
    arena = tflm_min_arena(model_bytes, q, granularity=1)
    interp = tflm_interpreter(model_bytes, arena)
    used = tflm_arena_used(interp)
    ms = check_bit_exact(model_bytes, x_int8,
                         lambda xs: np.stack([tflm_invoke(interp, x[None])[0] for x in xs]),
                         what="TFLM output differs from the TFLite reference kernels")
    return {"min_arena_bytes": int(arena), "arena_used_bytes": int(used), "tflm_equals_tflite": True,
            "tflm_ms_per_window": float(ms), "checked_windows": int(len(x_int8))}


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-row cosine of a vs b: min / p5 / median / mean / n (zero rows count as 1 if both are zero)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both0 = (na == 0) & (nb == 0)
    cos = np.where(both0, 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-30))
    return {"n": int(len(cos)), "min": float(cos.min()), "p5": float(np.percentile(cos, 5)),
            "median": float(np.median(cos)), "mean": float(cos.mean()), "values": cos}


def int8_outputs(model_bytes: bytes, x_float: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 outputs, dequantised outputs) of the TFLite reference kernels on float inputs."""
    info = inspect_model(model_bytes)
    xq = quantize_input(x_float, info.input)
    y = litert_run(litert_reference(model_bytes), xq)
    return y, dequantize_output(y, info.output)


def mean_cosine(model_bytes: bytes, x_float: np.ndarray, float_out: np.ndarray) -> float:
    """Mean int8-vs-float cosine of ``model_bytes`` on ``x_float`` (float outputs ``float_out``)."""
    return cosine_stats(int8_outputs(model_bytes, x_float)[1], float_out)["mean"]
