"""The choices of a selection (method, mode, period, small-group policy), their ONE validator
and the label of a (sensor, period) group. Shared by :func:`sea_core.sampling.select`,
:func:`sea_core.sampling.sample_group` and the Beam stage (``pipelines/select.py``)."""
from __future__ import annotations

from sea_core.errors import ParameterError

__all__ = ["METHODS", "MODES", "PERIODS", "POLICIES", "DPP_METHODS", "RELEVANCE_METHODS",
           "check_options", "group_label"]

METHODS = ("random", "relevance", "diversity", "diversity+relevance")
MODES = ("reference", "exact", "scalable")
PERIODS = ("day", "week", "month")
POLICIES = ("whole", "skip")
DPP_METHODS = ("diversity", "diversity+relevance")
"""The k-DPP methods; also the names of the two kernels whose ``log det(L_Y)`` is reported."""
RELEVANCE_METHODS = ("relevance", "diversity+relevance")
"""Methods that need a relevance score per window."""

_CHOICES = {"method": METHODS, "mode": MODES, "period": PERIODS, "policy": POLICIES}


def check_options(*, prefix: str = "", **options) -> None:
    """Check ``method`` / ``mode`` / ``period`` / ``policy`` values against their choices.

    Parameters
    ----------
    prefix : str
        Put before the option's name in the message (``'--'`` for command-line flags).
    **options
        Any of ``method``, ``mode``, ``period``, ``policy``, checked in the order given.

    Raises
    ------
    ParameterError
        ``'<prefix><name> must be one of <choices>, got <value>'`` for the first bad value.
    TypeError
        An option name that has no choices.
    """
    for name, value in options.items():
        if name not in _CHOICES:
            raise TypeError(f"check_options: unknown option {name!r} (known: {', '.join(_CHOICES)})")
        if value not in _CHOICES[name]:
            raise ParameterError(f"{prefix}{name} must be one of {_CHOICES[name]}, got {value!r}")


def group_label(key: tuple[str, str], period: str = "day") -> str:
    """``'sensor=<s>/<period>=<p>'`` for messages and reports."""
    return f"sensor={key[0]}/{period}={key[1]}"

