"""The scheduled incremental corpus refresh: the command line of the schedule.

``refresh.yaml`` is the one description of the refresh. The modules beside this file:

* ``schedule_config.py`` (validation): the schema, graph and cron checks, the task
  order and the :class:`Schedule` / :class:`RefitPolicy` objects (``load_schedule``);
* ``schedule_render.py`` (rendering): every task's argv with its vars filled in, which
  the Airflow DAG (``airflow_dag.py``), the systemd service and the Cloud Run job all
  execute, and the cron as systemd ``OnCalendar=``;
* ``schedule_run.py`` (running): the PCA re-fit policy (``should_refit``), the
  measurements of ``refit-check`` (the drift, a decision) and ``gated --record-fit``
  (what the new fit covers), and the sequential runner with retries.

Copy the four files and ``refresh.yaml`` together (e.g. into an Airflow DAG folder).
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
import shlex
import subprocess
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # loaded by file path (the Airflow DAG, tests): find the modules beside it
    sys.path.insert(0, str(_HERE))

from schedule_config import DEFAULT_CONFIG, ScheduleError, load_schedule  # noqa: E402
from schedule_render import cron_to_oncalendar, render  # noqa: E402
from schedule_run import record_fit, refit_check, run_schedule, write_json  # noqa: E402

__all__ = ["main"]


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
        write_json(Path(args.decision), decision.to_json())
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
