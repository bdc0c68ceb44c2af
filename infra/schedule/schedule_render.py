"""Rendering the refresh schedule: task commands with their vars filled in (what the runner,
the Airflow DAG (``airflow_dag.py``), the systemd service and the Cloud Run job execute)
and the cron as a systemd ``OnCalendar=`` expression (``systemd/sea-refresh.timer``)."""
from __future__ import annotations

import datetime as dt
import os
import shlex
import sys

from schedule_config import CRON_ITEM, PLACEHOLDER, SCHEDULE_PY, Schedule, ScheduleError, cron_fields

__all__ = ["ENV_PREFIX", "resolve_vars", "render", "cron_to_oncalendar"]

ENV_PREFIX = "SEA_REFRESH_"


def resolve_vars(schedule: Schedule, run_date: str | dt.date, overrides: dict[str, str] | None = None,
                 *, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Vars with builtins, ``SEA_REFRESH_<NAME>`` environment overrides and explicit overrides.

    The ``python`` builtin (interpreter of the ``schedule.py`` steps) is this interpreter
    unless ``SEA_REFRESH_PYTHON`` names another (e.g. the workers' venv under Airflow).
    """
    env = os.environ if environ is None else environ
    values = dict(schedule.vars)
    for name in schedule.vars:
        if ENV_PREFIX + name.upper() in env:
            values[name] = env[ENV_PREFIX + name.upper()]
    for name, value in (overrides or {}).items():
        if name not in schedule.vars:
            raise ScheduleError(f"--var {name}: not a var of {schedule.path} ({sorted(schedule.vars)})")
        values[name] = value
    values.update(run_date=str(run_date), config=str(schedule.path), schedule_py=str(SCHEDULE_PY),
                  python=env.get(ENV_PREFIX + "PYTHON", sys.executable))
    resolved: dict[str, str] = {}

    def get(name: str, stack: tuple[str, ...]) -> str:
        if name in resolved:
            return resolved[name]
        if name in stack:
            raise ScheduleError(f"vars: cycle {' -> '.join(stack + (name,))}")
        if name not in values:
            raise ScheduleError(f"undefined placeholder {{{name}}}")
        out = PLACEHOLDER.sub(lambda m: get(m.group(1), stack + (name,)), values[name])
        resolved[name] = out
        return out

    for name in values:
        get(name, ())
    return resolved


def render(schedule: Schedule, run_date: str | dt.date, overrides: dict[str, str] | None = None,
           *, environ: dict[str, str] | None = None) -> dict[str, list[str]]:
    """task id -> argv, in execution order."""
    values = resolve_vars(schedule, run_date, overrides, environ=environ)
    out = {}
    for tid in schedule.order:
        text = PLACEHOLDER.sub(lambda m: values[m.group(1)], schedule.task(tid).command)
        out[tid] = shlex.split(text)
    return out


_DOW = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _oncal_field(text: str, width: int, names: tuple[str, ...] | None = None) -> str:
    parts = []
    for item in text.split(","):
        m = CRON_ITEM.match(item)
        base, step = m.group(1), m.group(3)
        fmt = (lambda x: names[int(x)]) if names else (lambda x: f"{int(x):0{width}d}")
        if base == "*":
            out = "*" if not step else f"{0 if not names else 0:0{width}d}{step}"
        elif "-" in base:
            a, b = base.split("-")
            out = f"{fmt(a)}..{fmt(b)}"
        else:
            out = fmt(base)
        if step and base != "*":
            out += step
        parts.append(out)
    return ",".join(parts)


def cron_to_oncalendar(cron: str) -> str:
    """systemd ``OnCalendar=`` of a numeric cron expression (no steps in day of week).

    >>> cron_to_oncalendar("0 3 * * 1")
    'Mon *-*-* 03:00:00'
    """
    minute, hour, dom, month, dow = cron_fields(cron)
    if "/" in dow:
        raise ScheduleError(f"cron {cron!r}: steps in the day-of-week field have no systemd equivalent")
    date = f"*-{_oncal_field(month, 2)}-{_oncal_field(dom, 2)}"
    clock = f"{_oncal_field(hour, 2)}:{_oncal_field(minute, 2)}:00"
    return (f"{_oncal_field(dow, 1, _DOW)} " if dow != "*" else "") + f"{date} {clock}"
