"""Validation of the refresh schedule (``refresh.yaml``): its schema, the task graph, the cron.

:func:`load_schedule` parses a schedule file and checks it against :data:`SCHEMA` (a small
JSON-schema-like description: required keys, types, ranges) plus graph checks (unknown /
cyclic deps, undefined ``{placeholders}``, a valid 5-field cron), and returns a
:class:`Schedule` with its tasks in execution order (:func:`topological_order`).
Imports neither Airflow nor the project (except its error class, when installed).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

try:  # the project's error tree when installed (always, on the hosts that run the schedule)
    from sea_core.errors import ParameterError as ScheduleError
except ImportError:  # pragma: no cover - e.g. an Airflow scheduler without the project
    class ScheduleError(ValueError):
        """A schedule file that does not validate."""

__all__ = ["SCHEMA", "RefitPolicy", "Task", "Schedule", "ScheduleError", "validate", "load_schedule",
           "topological_order", "cron_fields", "placeholders", "SCHEDULE_PY", "DEFAULT_CONFIG",
           "BUILTIN_VARS", "PLACEHOLDER", "CRON_ITEM"]

SCHEDULE_PY = Path(__file__).resolve().parent / "schedule.py"
"""The command line of the schedule (``{schedule_py}`` in task commands)."""
DEFAULT_CONFIG = SCHEDULE_PY.parent / "refresh.yaml"
BUILTIN_VARS = ("run_date", "config", "schedule_py", "python")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TASK_ID = re.compile(r"^[a-z][a-z0-9-]*$")

# A JSON-schema-like description: {"type", "required", "properties", "items", "min", "max", "enum"}.
_NUM = {"type": "number", "min": 0}
_INT = {"type": "integer", "min": 0}
SCHEMA: dict = {
    "type": "object",
    "required": ["version", "name", "schedule", "refit_policy", "tasks"],
    "properties": {
        "version": {"type": "integer", "enum": [1]},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "schedule": {"type": "object", "required": ["cron", "timezone"], "properties": {
            "cron": {"type": "string"}, "timezone": {"type": "string"},
            "catchup": {"type": "boolean"}, "max_active_runs": {"type": "integer", "min": 1}}},
        "vars": {"type": "object", "values": {"type": "string"}},
        "refit_policy": {"type": "object",
                         "required": ["max_new_fraction", "max_ev_drop", "ev_dim", "ev_sample_rows"],
                         "properties": {
                             "max_new_fraction": {"type": "number", "min": 0},
                             "max_ev_drop": {"type": "number", "min": 0, "max": 1},
                             "ev_dim": {"type": "integer", "min": 1},
                             "ev_sample_rows": {"type": "integer", "min": 1}}},
        "defaults": {"type": "object", "properties": {
            "retries": _INT, "retry_delay_s": _NUM, "timeout_s": {"type": "number", "min": 1}}},
        "tasks": {"type": "array", "min_items": 1, "items": {
            "type": "object", "required": ["id", "command", "deps"], "properties": {
                "id": {"type": "string"}, "description": {"type": "string"},
                "command": {"type": "string"},
                "deps": {"type": "array", "items": {"type": "string"}},
                "retries": _INT, "retry_delay_s": _NUM, "timeout_s": {"type": "number", "min": 1},
                "gate": {"type": "string", "enum": ["refit"]}}}},
    },
}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
          "integer": int, "number": (int, float)}


@dataclass(frozen=True, kw_only=True)
class RefitPolicy:
    """When the scaler + PCA are fitted again instead of reused."""

    max_new_fraction: float
    """Re-fit when new windows / windows covered by the current fit exceed this."""
    max_ev_drop: float
    """Re-fit when the explained variance on new windows is this much below the value at the fit."""
    ev_dim: int
    """Components whose explained variance is compared (the smallest student dim is the most sensitive)."""
    ev_sample_rows: int
    """At most this many new windows are read to measure it."""


@dataclass(frozen=True, kw_only=True)
class Task:
    id: str
    command: str
    """Template: placeholders are filled by :func:`render`."""
    deps: tuple[str, ...]
    retries: int
    retry_delay_s: float
    timeout_s: float
    gate: str | None = None
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class Schedule:
    name: str
    cron: str
    timezone: str
    catchup: bool
    max_active_runs: int
    vars: dict[str, str]
    refit_policy: RefitPolicy
    tasks: tuple[Task, ...]
    path: Path
    description: str = ""
    order: tuple[str, ...] = field(default=())

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise ScheduleError(f"{self.path}: no task {task_id!r}")


def _check(value, schema: dict, where: str, errors: list[str]) -> None:
    expected = _TYPES[schema["type"]]
    if isinstance(value, bool) and schema["type"] in ("integer", "number"):
        errors.append(f"{where}: expected {schema['type']}, got boolean")
        return
    if not isinstance(value, expected):
        errors.append(f"{where}: expected {schema['type']}, got {type(value).__name__}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if schema["type"] in ("integer", "number"):
        if "min" in schema and value < schema["min"]:
            errors.append(f"{where}: {value!r} < minimum {schema['min']}")
        if "max" in schema and value > schema["max"]:
            errors.append(f"{where}: {value!r} > maximum {schema['max']}")
    if schema["type"] == "object":
        for key in schema.get("required", ()):
            if key not in value:
                errors.append(f"{where}: missing required key {key!r}")
        props = schema.get("properties")
        for key, item in value.items():
            if props is not None:
                if key not in props:
                    errors.append(f"{where}: unknown key {key!r} (allowed: {', '.join(props)})")
                    continue
                _check(item, props[key], f"{where}.{key}", errors)
            elif "values" in schema:
                if not isinstance(key, str):
                    errors.append(f"{where}: key {key!r} is not a string")
                _check(item, schema["values"], f"{where}.{key}", errors)
    if schema["type"] == "array":
        if len(value) < schema.get("min_items", 0):
            errors.append(f"{where}: needs at least {schema['min_items']} item(s)")
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{i}]", errors)


_CRON_RANGES = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
CRON_ITEM = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


def cron_fields(cron: str) -> list[str]:
    """The 5 fields of a numeric cron expression, validated.

    Raises
    ------
    ScheduleError
        Not 5 fields, names instead of numbers, or a value out of range.
    """
    fields = cron.split()
    if len(fields) != 5:
        raise ScheduleError(f"cron {cron!r}: expected 5 fields (minute hour dom month dow)")
    for text, (name, lo, hi) in zip(fields, _CRON_RANGES):
        for item in text.split(","):
            m = CRON_ITEM.match(item)
            if not m:
                raise ScheduleError(f"cron {cron!r}: bad {name} field {text!r}")
            nums = [int(x) for x in re.findall(r"\d+", m.group(1))]
            if m.group(3) and int(m.group(3)[1:]) == 0:
                raise ScheduleError(f"cron {cron!r}: step 0 in the {name} field")
            if any(not lo <= x <= hi for x in nums) or (len(nums) == 2 and nums[0] > nums[1]):
                raise ScheduleError(f"cron {cron!r}: {name} {item!r} outside {lo}-{hi}")
    return fields


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def topological_order(tasks) -> list[str]:
    """Task ids so that every task comes after its deps (ties: file order).

    Raises
    ------
    ScheduleError
        A dep names no task, or the deps form a cycle (the cycle's tasks are named).
    """
    deps = {t["id"] if isinstance(t, dict) else t.id:
            list(t["deps"] if isinstance(t, dict) else t.deps) for t in tasks}
    for tid, ds in deps.items():
        for d in ds:
            if d not in deps:
                raise ScheduleError(f"task {tid!r} depends on unknown task {d!r}")
    done: list[str] = []
    remaining = list(deps)
    while remaining:
        ready = [t for t in remaining if all(d in done for d in deps[t])]
        if not ready:
            raise ScheduleError(f"dependency cycle among tasks {remaining}")
        done.append(ready[0])
        remaining.remove(ready[0])
    return done


def validate(doc) -> list[str]:
    """Every problem of a parsed schedule document (empty list = valid)."""
    errors: list[str] = []
    if not isinstance(doc, dict):
        return [f"<root>: expected a mapping, got {type(doc).__name__}"]
    _check(doc, SCHEMA, "<root>", errors)
    if errors:
        return errors
    try:
        cron_fields(doc["schedule"]["cron"])
    except ScheduleError as exc:
        errors.append(f"schedule.cron: {exc}")
    ids = [t["id"] for t in doc["tasks"]]
    for tid in ids:
        if not _TASK_ID.match(tid):
            errors.append(f"tasks: id {tid!r} must match {_TASK_ID.pattern}")
    dupes = sorted({t for t in ids if ids.count(t) > 1})
    if dupes:
        errors.append(f"tasks: duplicate id(s) {dupes}")
    else:
        try:
            topological_order(doc["tasks"])
        except ScheduleError as exc:
            errors.append(f"tasks: {exc}")
    known = set(doc.get("vars", {})) | set(BUILTIN_VARS)
    for name in set(doc.get("vars", {})) & set(BUILTIN_VARS):
        errors.append(f"vars.{name}: {name!r} is a builtin and cannot be set")
    for name, value in doc.get("vars", {}).items():
        for p in sorted(placeholders(value) - known):
            errors.append(f"vars.{name}: undefined placeholder {{{p}}}")
    for t in doc["tasks"]:
        for p in sorted(placeholders(t["command"]) - known):
            errors.append(f"tasks.{t['id']}.command: undefined placeholder {{{p}}}")
        if t.get("gate") == "refit" and "gated" not in t["command"].split():
            errors.append(f"tasks.{t['id']}: gate 'refit' but the command is not wrapped in "
                          "`schedule.py gated`")
    if "refit-check" in ids and not any(t.get("gate") == "refit" for t in doc["tasks"]):
        errors.append("tasks: a refit-check task but no task with gate: refit")
    return errors


def load_schedule(path: str | os.PathLike = DEFAULT_CONFIG) -> Schedule:
    """Parse and validate a schedule file.

    Raises
    ------
    ScheduleError
        The file is unreadable, not YAML, or does not validate (all problems listed).
    """
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScheduleError(f"{path}: cannot read the schedule ({exc})") from None
    errors = validate(doc)
    if errors:
        raise ScheduleError(f"{path}: invalid schedule:\n  " + "\n  ".join(errors))
    d = doc.get("defaults", {})
    tasks = tuple(Task(id=t["id"], command=" ".join(t["command"].split()), deps=tuple(t["deps"]),
                       retries=int(t.get("retries", d.get("retries", 0))),
                       retry_delay_s=float(t.get("retry_delay_s", d.get("retry_delay_s", 60))),
                       timeout_s=float(t.get("timeout_s", d.get("timeout_s", 86400))),
                       gate=t.get("gate"), description=t.get("description", ""))
                  for t in doc["tasks"])
    s = doc["schedule"]
    return Schedule(name=doc["name"], cron=s["cron"], timezone=s["timezone"],
                    catchup=bool(s.get("catchup", False)),
                    max_active_runs=int(s.get("max_active_runs", 1)),
                    vars=dict(doc.get("vars", {})), refit_policy=RefitPolicy(**doc["refit_policy"]),
                    tasks=tasks, path=path, description=doc.get("description", ""),
                    order=tuple(topological_order(tasks)))
