"""Airflow DAG of the incremental corpus refresh, built from ``refresh.yaml``.

Drop this file (with ``schedule.py``, its ``schedule_config.py``, ``schedule_render.py``,
``schedule_run.py`` and ``refresh.yaml`` beside it) into the
Airflow ``dags/`` folder, or point ``SEA_REFRESH_CONFIG`` at another schedule
file. One ``BashOperator`` per task, with the schedule's cron, retries, retry
delay and timeout; the ``{run_date}`` placeholder becomes Airflow's ``{{ ds }}``
(the logical date), so reruns and backfills address the same run directory.

Importing the file never needs a scheduler, a database or the project's heavy
dependencies; without Airflow it only builds :data:`TASK_GRAPH` (id -> deps,
command), which the tests check, and ``dag`` is None.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shlex
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _load_schedule_module():
    """``schedule.py`` beside this file (the DAG folder is not a package)."""
    name = "sea_refresh_schedule"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "schedule.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_schedule = _load_schedule_module()
CONFIG = Path(os.environ.get("SEA_REFRESH_CONFIG", _HERE / "refresh.yaml"))
SCHEDULE = _schedule.load_schedule(CONFIG)
# Airflow renders bash_command with Jinja: '{{ ds }}' is the run's logical date (YYYY-MM-DD).
COMMANDS = {tid: shlex.join(argv)
            for tid, argv in _schedule.render(SCHEDULE, "__RUN_DATE__").items()}
COMMANDS = {tid: cmd.replace("__RUN_DATE__", "{{ ds }}") for tid, cmd in COMMANDS.items()}
TASK_GRAPH = {t.id: {"deps": list(t.deps), "command": COMMANDS[t.id], "retries": t.retries,
                     "retry_delay_s": t.retry_delay_s, "timeout_s": t.timeout_s}
              for t in SCHEDULE.tasks}


def _bash_operator():
    try:  # Airflow 3 (standard provider)
        from airflow.providers.standard.operators.bash import BashOperator
    except ImportError:  # Airflow 2
        from airflow.operators.bash import BashOperator
    return BashOperator


def build_dag():
    """The Airflow DAG, or None when Airflow is not importable."""
    try:
        from airflow import DAG
    except ImportError:
        return None
    BashOperator = _bash_operator()
    schedule_kw = {"schedule": SCHEDULE.cron}
    with DAG(
        dag_id=SCHEDULE.name,
        description=SCHEDULE.description,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        catchup=SCHEDULE.catchup,
        max_active_runs=SCHEDULE.max_active_runs,
        tags=["sea"],
        **schedule_kw,
    ) as dag:
        ops = {}
        for t in SCHEDULE.tasks:
            ops[t.id] = BashOperator(
                task_id=t.id,
                bash_command=TASK_GRAPH[t.id]["command"],
                retries=t.retries,
                retry_delay=dt.timedelta(seconds=t.retry_delay_s),
                execution_timeout=dt.timedelta(seconds=t.timeout_s),
                doc_md=t.description or None,
            )
        for t in SCHEDULE.tasks:
            for d in t.deps:
                ops[d] >> ops[t.id]
    return dag


dag = build_dag()
