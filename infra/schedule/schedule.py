"""The scheduled incremental corpus refresh: schedule file, validator, re-fit policy, runner.

``refresh.yaml`` is the one description of the refresh. This module

* validates it against :data:`SCHEMA` (a small JSON-schema-like description:
  required keys, types, ranges) plus graph checks (unknown / cyclic deps,
  undefined ``{placeholders}``, a valid 5-field cron);
* orders the tasks (:func:`topological_order`) and renders their argv
  (:func:`render`), which the Airflow DAG (``airflow_dag.py``), the systemd
  service and the Cloud Run job all execute;
* holds the PCA re-fit policy (:func:`should_refit`) and the commands the
  schedule calls: ``refit-check`` (measures the drift, writes a decision) and
  ``gated`` (runs a command only when the decision says re-fit, then records
  what the new fit covers);
* runs the whole graph sequentially with retries (``run``), for hosts without Airflow.

It imports neither Airflow nor TensorFlow; ``refit-check`` imports the project lazily.

usage::

    python infra/schedule/schedule.py validate infra/schedule/refresh.yaml
    python infra/schedule/schedule.py order    infra/schedule/refresh.yaml
    python infra/schedule/schedule.py render   infra/schedule/refresh.yaml --date 2026-01-05
    python infra/schedule/schedule.py run      infra/schedule/refresh.yaml [--dry-run] [--var k=v]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

try:  # the project's error tree when installed (always, on the hosts that run the schedule)
    from sea_core.errors import ParameterError as ScheduleError
except ImportError:  # pragma: no cover - e.g. an Airflow scheduler without the project
    class ScheduleError(ValueError):
        """A schedule file that does not validate."""

__all__ = ["SCHEMA", "RefitPolicy", "RefitDecision", "Task", "Schedule", "ScheduleError",
           "validate", "load_schedule", "topological_order", "render", "should_refit",
           "explained_variance_on", "cron_fields", "cron_to_oncalendar", "run_schedule", "main",
           "SCHEDULE_PY", "DEFAULT_CONFIG"]

log = logging.getLogger("sea.schedule")

SCHEDULE_PY = Path(__file__).resolve()
DEFAULT_CONFIG = SCHEDULE_PY.parent / "refresh.yaml"
BUILTIN_VARS = ("run_date", "config", "schedule_py", "python")
ENV_PREFIX = "SEA_REFRESH_"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
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


# --------------------------------------------------------------------------- data
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


@dataclass(frozen=True)
class RefitDecision:
    refit: bool
    reasons: tuple[str, ...]
    n_new: int
    n_fit: int
    ev_on_new: float | None
    ev_at_fit: float | None

    def to_json(self) -> dict:
        return {**asdict(self), "reasons": list(self.reasons)}


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


# --------------------------------------------------------------------------- validation
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
_CRON_ITEM = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


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
            m = _CRON_ITEM.match(item)
            if not m:
                raise ScheduleError(f"cron {cron!r}: bad {name} field {text!r}")
            nums = [int(x) for x in re.findall(r"\d+", m.group(1))]
            if m.group(3) and int(m.group(3)[1:]) == 0:
                raise ScheduleError(f"cron {cron!r}: step 0 in the {name} field")
            if any(not lo <= x <= hi for x in nums) or (len(nums) == 2 and nums[0] > nums[1]):
                raise ScheduleError(f"cron {cron!r}: {name} {item!r} outside {lo}-{hi}")
    return fields


def _placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


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
        for p in sorted(_placeholders(value) - known):
            errors.append(f"vars.{name}: undefined placeholder {{{p}}}")
    for t in doc["tasks"]:
        for p in sorted(_placeholders(t["command"]) - known):
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


# --------------------------------------------------------------------------- rendering
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
        out = _PLACEHOLDER.sub(lambda m: get(m.group(1), stack + (name,)), values[name])
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
        text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], schedule.task(tid).command)
        out[tid] = shlex.split(text)
    return out


# --------------------------------------------------------------------------- cron -> systemd
_DOW = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _oncal_field(text: str, width: int, names: tuple[str, ...] | None = None) -> str:
    parts = []
    for item in text.split(","):
        m = _CRON_ITEM.match(item)
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


# --------------------------------------------------------------------------- re-fit policy
def should_refit(n_new: int, n_fit: int, ev_on_new: float | None, ev_at_fit: float | None,
                 policy: RefitPolicy) -> RefitDecision:
    """Re-fit the scaler + PCA, or reuse the current artifact?

    Parameters
    ----------
    n_new : int
        Windows added to the corpus since the current fit.
    n_fit : int
        Windows of the corpus the current fit covered (0: there is no fit).
    ev_on_new, ev_at_fit : float or None
        Explained-variance ratio of the first ``policy.ev_dim`` components on the
        new windows, and on the fitting data at fit time (None: not measured).
    policy : RefitPolicy

    Returns
    -------
    RefitDecision
        ``refit`` is True when there is no fit, when ``n_new / n_fit >
        max_new_fraction`` (volume), or when ``ev_at_fit - ev_on_new >
        max_ev_drop`` (drift); ``reasons`` says which rule fired (or why reuse).

    Raises
    ------
    ScheduleError
        Negative counts or explained variances outside [0, 1].
    """
    if n_new < 0 or n_fit < 0:
        raise ScheduleError(f"window counts must be >= 0, got n_new={n_new}, n_fit={n_fit}")
    for name, v in (("ev_on_new", ev_on_new), ("ev_at_fit", ev_at_fit)):
        if v is not None and not 0.0 <= v <= 1.0 + 1e-9:
            raise ScheduleError(f"{name} must be in [0, 1], got {v!r}")
    reasons = []
    if n_fit == 0:
        reasons.append("no current fit")
    else:
        frac = n_new / n_fit
        if frac > policy.max_new_fraction:
            reasons.append(f"volume: {n_new} new / {n_fit} fitted = {frac:.3f} > "
                           f"max_new_fraction {policy.max_new_fraction}")
        if ev_on_new is not None and ev_at_fit is not None:
            drop = ev_at_fit - ev_on_new
            if drop > policy.max_ev_drop:
                reasons.append(f"drift: explained variance @{policy.ev_dim} fell {drop:.4f} "
                               f"({ev_at_fit:.4f} -> {ev_on_new:.4f}) > max_ev_drop {policy.max_ev_drop}")
    refit = bool(reasons)
    if not refit:
        ev = ("" if ev_on_new is None or ev_at_fit is None
              else f", explained variance {ev_at_fit:.4f} -> {ev_on_new:.4f}")
        reasons.append(f"reuse: {n_new} new / {n_fit} fitted windows{ev} within policy")
    return RefitDecision(refit=refit, reasons=tuple(reasons), n_new=int(n_new), n_fit=int(n_fit),
                         ev_on_new=ev_on_new, ev_at_fit=ev_at_fit)


def explained_variance_on(emb, *, mean, scale, components, dim: int) -> float:
    """Fraction of the (fit-standardised) variance of ``emb`` kept by the first ``dim`` PCA axes.

    ``1 - ||Z - Z C^T C||^2 / ||Z||^2`` with ``Z = (emb - mean) / scale`` centred
    on the *fit* mean, so a shift of the mean counts as unexplained. On the
    fitting data itself this equals sklearn's ``explained_variance_ratio_[:dim].sum()``.
    """
    import numpy as np

    x = np.asarray(emb, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ScheduleError(f"embeddings: expected a non-empty [N, D] array, got shape {x.shape}")
    z = (x - mean) / scale
    c = np.asarray(components, dtype=np.float64)[:dim]
    total = float(np.einsum("ij,ij->", z, z))
    if total == 0.0:
        return 1.0
    scores = z @ c.T
    residual = z - scores @ c
    return float(1.0 - np.einsum("ij,ij->", residual, residual) / total)


def _rows_of(files: list[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in files)


def _new_embeddings(files: list[str], limit: int):
    """Up to ``limit`` teacher embeddings from ``files``, spread evenly over them."""
    import numpy as np
    import pyarrow.parquet as pq

    from pipelines.frames_io import fixed_list_to_numpy

    if not files:
        return None
    per_file = max(1, limit // len(files))
    step = max(1, len(files) // limit) if len(files) > limit else 1
    chunks = []
    for f in files[::step]:
        table = pq.read_table(f, columns=["teacher_emb"])
        n = table.num_rows
        idx = np.linspace(0, n - 1, num=min(n, per_file)).round().astype(int) if n else []
        if len(idx):
            chunks.append(fixed_list_to_numpy(table.column("teacher_emb").take(idx)))
    return np.concatenate(chunks) if chunks else None


def refit_check(*, frames: str, pca: str, state: str, policy: RefitPolicy) -> RefitDecision:
    """Measure ``should_refit``'s inputs from the frames dataset, the artifact and the fit state.

    ``state`` (JSON written by ``gated --record-fit``) lists the frames files the
    current fit saw; the rest are new. ``ev_on_new`` is measured on up to
    ``policy.ev_sample_rows`` new windows with the current artifact.
    """
    from pipelines.frames_io import list_partitions
    from sea_core.reduction import ReductionArtifact

    files = sorted(f for p in list_partitions(frames) for f in p.files)
    state_path = Path(state)
    if not state_path.is_file() or not (Path(pca) / "reduction.json").is_file():
        return should_refit(_rows_of(files), 0, None, None, policy)
    st = json.loads(state_path.read_text())
    seen = set(st["files"])
    new = [f for f in files if f not in seen]
    n_new = _rows_of(new)
    art = ReductionArtifact.load(pca)
    dim = min(policy.ev_dim, art.n_components)
    ev_at_fit = float(st.get("ev_at_fit", art.explained_variance_ratio[:dim].sum()))
    emb = _new_embeddings(new, policy.ev_sample_rows)
    ev_new = None if emb is None else explained_variance_on(
        emb, mean=art.mean, scale=art.scale, components=art.components, dim=dim)
    return should_refit(n_new, int(st["n_fit_windows"]), ev_new, ev_at_fit, policy)


def record_fit(*, frames: str, pca: str, state: str, policy: RefitPolicy, run_date: str) -> dict:
    """Write the fit state: the frames files (and windows) the new artifact covers, its explained variance."""
    from pipelines.frames_io import list_partitions
    from sea_core.reduction import ReductionArtifact

    files = sorted(f for p in list_partitions(frames) for f in p.files)
    art = ReductionArtifact.load(pca)
    dim = min(policy.ev_dim, art.n_components)
    doc = {"fitted_on": run_date, "n_fit_windows": _rows_of(files), "files": files,
           "ev_dim": dim, "ev_at_fit": float(art.explained_variance_ratio[:dim].sum()),
           "artifact_fingerprint": art.fingerprint}
    _write_json(Path(state), doc)
    return doc


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- runner
def run_schedule(schedule: Schedule, run_date: str, *, overrides: dict[str, str] | None = None,
                 dry_run: bool = False, only: list[str] | None = None,
                 sleep=time.sleep) -> int:
    """Run the tasks in order, each with its retries and timeout; stop at the first failure.

    Returns 0 when every task succeeded, else the failing task's last exit status.
    """
    commands = render(schedule, run_date, overrides)
    for tid, argv in commands.items():
        if only and tid not in only:
            continue
        task = schedule.task(tid)
        if dry_run:
            print(f"[{tid}] {shlex.join(argv)}")
            continue
        for attempt in range(task.retries + 1):
            log.info("[%s] attempt %d/%d: %s", tid, attempt + 1, task.retries + 1, shlex.join(argv))
            try:
                rc = subprocess.run(argv, timeout=task.timeout_s).returncode
            except subprocess.TimeoutExpired:
                rc = 124
            except OSError as exc:
                log.error("[%s] cannot start: %s", tid, exc)
                rc = 127
            if rc == 0:
                break
            if attempt < task.retries:
                sleep(task.retry_delay_s)
        else:
            log.error("[%s] failed (exit %d) after %d attempt(s)", tid, rc, task.retries + 1)
            return rc
    return 0


def _parse_vars(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or ():
        if "=" not in item:
            raise ScheduleError(f"--var {item!r}: expected NAME=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="schedule.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("validate", "order", "render", "run", "oncalendar"):
        p = sub.add_parser(name)
        p.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG))
        p.add_argument("--date", default=dt.datetime.now(dt.timezone.utc).date().isoformat())
        p.add_argument("--var", action="append", default=[], help="NAME=VALUE override")
        p.add_argument("--dry-run", action="store_true")
        p.add_argument("--only", action="append", default=None, help="run only this task (repeatable)")
    p = sub.add_parser("refit-check")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--frames", required=True)
    p.add_argument("--pca", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--decision", required=True, help="JSON file written with the decision")
    p = sub.add_parser("gated", help="run COMMAND only when the decision says re-fit")
    p.add_argument("--decision", required=True)
    p.add_argument("--record-fit", action="store_true",
                   help="after COMMAND succeeds, record what the new fit covers (needs --frames --pca --state)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--frames")
    p.add_argument("--pca")
    p.add_argument("--state")
    p.add_argument("--date", default=dt.datetime.now(dt.timezone.utc).date().isoformat())
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except ScheduleError as exc:
        print(f"schedule.py {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.cmd in ("validate", "order", "render", "run", "oncalendar"):
        sched = load_schedule(args.config)
        if args.cmd == "validate":
            print(f"{sched.path}: valid ({len(sched.tasks)} tasks, cron {sched.cron!r})")
        elif args.cmd == "order":
            print(" -> ".join(sched.order))
        elif args.cmd == "oncalendar":
            print(cron_to_oncalendar(sched.cron))
        elif args.cmd == "render":
            for tid, cmd in render(sched, args.date, _parse_vars(args.var)).items():
                print(f"{tid}: {shlex.join(cmd)}")
        else:
            return run_schedule(sched, args.date, overrides=_parse_vars(args.var),
                                dry_run=args.dry_run, only=args.only)
        return 0
    if args.cmd == "refit-check":
        policy = load_schedule(args.config).refit_policy
        decision = refit_check(frames=args.frames, pca=args.pca, state=args.state, policy=policy)
        _write_json(Path(args.decision), decision.to_json())
        print(("REFIT: " if decision.refit else "REUSE: ") + "; ".join(decision.reasons))
        return 0
    # gated
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ScheduleError("gated: no command after --")
    decision = json.loads(Path(args.decision).read_text())
    if not decision.get("refit"):
        print(f"skipped (reusing the current PCA): {shlex.join(command)}")
        return 0
    rc = subprocess.run(command).returncode
    if rc == 0 and args.record_fit:
        if not (args.frames and args.pca and args.state):
            raise ScheduleError("gated --record-fit needs --frames, --pca and --state")
        policy = load_schedule(args.config).refit_policy
        doc = record_fit(frames=args.frames, pca=args.pca, state=args.state, policy=policy,
                         run_date=args.date)
        print(f"recorded fit: {doc['n_fit_windows']} windows, explained variance "
              f"@{doc['ev_dim']} = {doc['ev_at_fit']:.4f}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
