"""The argument parser of `run-campaign` (also the source of the docs' CLI reference).

Every command is one entry of `COMMANDS`: what it does, an example, and its options
(besides CONFIG, --root, --db-url and --debug, which all take; the commands about a
whole database, in `DATABASE_WIDE`, take no CONFIG and no --root). A name with a space
(`db upgrade`) is a subcommand of its first word. Commands in `SEVERAL_CONFIGS` take one
CONFIG or more.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from campaigns import __version__
from campaigns.scheduler import registry

EPILOG = """\
examples:
  run-campaign validate config/examples/test_campaign.yaml
  run-campaign init     config/examples/test_campaign.yaml
  run-campaign submit   config/examples/test_campaign.yaml --backend local
  run-campaign monitor  config/examples/test_campaign.yaml
  run-campaign status   config/examples/test_campaign.yaml --json
  run-campaign retry    config/examples/test_campaign.yaml --submit
  run-campaign campaigns --db-url postgresql+psycopg://me@dbhost/runs
  run-campaign serve    config/examples/test_campaign.yaml     # a read-only web dashboard

exit codes: 0 success, 1 operational failure, 2 bad input (nothing changed),
            3 the campaign ended incomplete, 4 not finished (status --check, monitor, qa)
"""

Option = tuple[tuple[str, ...], dict[str, Any]]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class UsageError(Exception):
    """A bad command line: exit code 2."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535 (0: any free port)")
    return value


def flag(*names: str, help: str, **extra: Any) -> Option:  # noqa: A002 -- argparse's word
    """An on/off option."""
    return names, {"action": "store_true", "help": help, **extra}


def value(*names: str, help: str, **extra: Any) -> Option:  # noqa: A002
    """An option that takes a value."""
    return names, {"help": help, **extra}


def backend(help: str) -> Option:  # noqa: A002
    """--backend, with the registered backends as its choices."""
    return ("--backend",), {"choices": registry.choices(), "help": help}


def json_flag(help: str = "print JSON") -> Option:  # noqa: A002
    """--json."""
    return flag("--json", help=help)


def selection(what: str) -> list[Option]:
    """--state, --class and --match: which jobs `what` acts on."""
    return [
        value(
            "--state",
            action="append",
            metavar="S[,S]",
            help=f"{what} jobs in these states (pending, queued, running, completed, failed, "
            "cancelled)",
        ),
        value(
            "--class",
            dest="failure_class",
            action="append",
            metavar="C[,C]",
            help=f"{what} failed jobs of these failure classes (exit_code, timeout, "
            "out_of_memory, node_fail, preempted, boot_fail, cancelled, missing_output, lost, "
            "invalid_output)",
        ),
        value(
            "--match",
            action="append",
            metavar="NAME=SPEC",
            help=f"{what} jobs whose parameter NAME is in SPEC: A..B (inclusive range), "
            "V1,V2 (values) or V; repeat to combine",
        ),
    ]


#: name -> (what it does, an example's arguments, its options)
COMMANDS: dict[str, tuple[str, str, Callable[[], list[Option]]]] = {
    "validate": (
        "load, merge and validate a campaign; print jobs, arrays, resources",
        "config/examples/production_campaign.yaml",
        lambda: [json_flag()],
    ),
    "init": (
        "create the campaign directory and database (every job pending)",
        "config/examples/test_campaign.yaml",
        lambda: [
            flag(
                "--force",
                help="adopt a changed configuration (jobs keep their state, new jobs are added)",
            )
        ],
    ),
    "submit": (
        "submit pending jobs as arrays, within the site's limits",
        "config/examples/test_campaign.yaml --backend local",
        lambda: [
            backend("default: execution.backend, else the machine file's, else auto"),
            value("--limit", type=_positive, metavar="N", help="submit at most N jobs"),
            *selection("submit only pending"),
            flag("--dry-run", help="write and print the plan and scripts; submit nothing"),
            flag(
                "--resume",
                help="close the circuit breaker (after fixing what made the jobs fail), "
                "then submit",
            ),
            json_flag(),
        ],
    ),
    "status": (
        "counts per state, failures, where the logs are (reads the store only)",
        "config/examples/test_campaign.yaml --json",
        lambda: [
            flag("--verbose", "-v", help="list the jobs (every job with --json)"),
            flag("--jobs", help="list the jobs the selection picks (all with no selection)"),
            *selection("list"),
            value(
                "--limit",
                type=_positive,
                metavar="N",
                help="list at most N jobs (default: 50 on the terminal, all with --json)",
            ),
            json_flag("print one JSON object (its fields are in the CLI reference)"),
            flag("--refresh", help="reconcile with the scheduler first"),
            flag(
                "--check",
                help="exit 0 only when every job completed, 3 when the campaign ended "
                "incomplete, 4 when it is not finished (asks no scheduler)",
            ),
            value(
                "--export",
                metavar="FILE",
                help="also write one row per job (parameters, state, attempts, times, output) "
                "to FILE: .csv, or .parquet (needs pyarrow)",
            ),
        ],
    ),
    "monitor": (
        "refresh from the scheduler and show progress until every job is final",
        "config/examples/test_campaign.yaml --interval 10",
        lambda: [
            value(
                "--interval",
                type=_positive_float,
                metavar="S",
                help="seconds between refreshes (default: the machine's, 30 s on Slurm)",
            ),
            flag("--once", help="refresh once, print, exit"),
            json_flag("print one JSON object per refresh"),
            flag(
                "--submit",
                "--retry",
                dest="resubmit",
                help="keep the campaign going: submit pending jobs and due retries as it polls",
            ),
            backend("backend for --submit"),
        ],
    ),
    "retry": (
        "put failed jobs whose backoff has elapsed back to pending",
        "config/examples/test_campaign.yaml --submit",
        lambda: [
            flag("--submit", help="also submit them"),
            flag(
                "--ignore-backoff",
                help="do not wait for the backoff (the attempt limit still holds)",
            ),
            value(
                "--reset",
                nargs="*",
                metavar="KEY",
                help="start these jobs over (any state but queued/running: exhausted, "
                "cancelled, even completed) with a fresh attempt budget; with no KEY, the "
                "jobs --state/--class/--match pick",
            ),
            *selection("with --reset: start over"),
            flag("--dry-run", help="show what would happen"),
            backend("backend for --submit (default: the one the campaign last used)"),
            json_flag(),
        ],
    ),
    "qa": (
        "check every completed output (checksums, HDF5 rules); write reports and plots under qa/",
        "config/examples/test_campaign.yaml --requeue",
        lambda: [
            flag(
                "--requeue",
                help="mark jobs whose output is invalid as failed (invalid_output), due at "
                "once: `retry --submit` reruns them",
            ),
            flag(
                "--full",
                help="check every output again (by default only outputs that are new or "
                "changed since their last check are opened)",
            ),
            json_flag("print JSON (what latest.json holds)"),
        ],
    ),
    "estimate": (
        "node-hours, arrays and expected wall time, without submitting",
        "config/examples/production_campaign.yaml",
        lambda: [json_flag()],
    ),
    "autopilot": (
        "keep the campaign going to the end with nobody watching (scrontab or a batch job on "
        "Slurm, a detached process locally); one line per tick in logs/autopilot.log",
        "config/examples/test_campaign.yaml --interval 300",
        lambda: [
            backend("backend to submit to (default: the one the campaign last used)"),
            value(
                "--interval",
                type=_positive_float,
                metavar="S",
                help="seconds between ticks (default 300; scrontab rounds to whole minutes)",
            ),
            value(
                "--method",
                choices=["batch"],
                help="on Slurm, a self-queueing batch job even where scrontab works",
            ),
            flag(
                "--status",
                help="say whether it runs, how, what the last tick did, and any failed, "
                "missed or waiting ticks",
            ),
            flag("--stop", help="remove it"),
            flag("--tick", help=argparse.SUPPRESS),  # what the installed entry runs
            json_flag(),
        ],
    ),
    "cancel": (
        "cancel the campaign's queued and running jobs",
        "config/examples/test_campaign.yaml",
        lambda: [json_flag()],
    ),
    "db upgrade": (
        "migrate the campaign's database to this version's schema (every campaign in it)",
        "config/examples/test_campaign.yaml",
        lambda: [json_flag()],
    ),
    "db copy": (
        "copy the campaign into another database, verify it, and use it there from now on",
        "config/examples/test_campaign.yaml --to postgresql+psycopg://me@dbhost/runs",
        lambda: [
            value(
                "--to",
                required=True,
                metavar="URL",
                help="the target database; `sqlite` is the campaign's own metadata/campaign.db",
            ),
            flag("--move", help="delete the campaign from the database it leaves"),
            flag("--replace", help="overwrite the campaign if the target holds it already"),
            json_flag(),
        ],
    ),
    "campaigns": (
        "list the campaigns of a database: jobs per state, node-hours used, last activity",
        "--db-url postgresql+psycopg://me@dbhost/runs",
        lambda: [json_flag()],
    ),
    "export": (
        "write one row per job to a .csv or .parquet file: one campaign, or --all of them",
        "jobs.parquet --all --db-url postgresql+psycopg://me@dbhost/runs",
        lambda: [
            value("file", metavar="FILE", help="the table to write: .csv, or .parquet (pyarrow)"),
            value(
                "config",
                nargs="?",
                metavar="CONFIG",
                help="a campaign file: export that campaign (with --all: its database)",
            ),
            flag("--all", help="every job of every campaign in the database"),
        ],
    ),
    "serve": (
        "serve a read-only web dashboard of one or more campaigns (needs the web extra: "
        "pip install 'campaigns[web]')",
        "config/examples/test_campaign.yaml --port 8000",
        lambda: [
            value(
                "--host",
                default="127.0.0.1",
                help="address to listen on (default 127.0.0.1); on every address each "
                "request needs a token: $CAMPAIGNS_WEB_TOKEN, else one printed at start",
            ),
            value("--port", type=_port, default=8000, help="port (default 8000; 0: any free)"),
            value(
                "--poll",
                type=_positive_float,
                default=5.0,
                metavar="S",
                help="seconds between the pages' refreshes (default 5)",
            ),
        ],
    ),
}

#: Commands about a whole database rather than one campaign: no CONFIG of their own (export's
#: is optional), and `campaigns` no --root.
DATABASE_WIDE = {"campaigns", "export"}
#: Commands whose CONFIG may be given several times.
SEVERAL_CONFIGS = {"serve"}

#: Options every command takes.
COMMON: list[Option] = [
    value(
        "--root",
        metavar="DIR",
        help="put the campaign directory under DIR instead of outputs.base_path",
    ),
    value(
        "--db-url",
        metavar="URL",
        help="the runs database, e.g. postgresql+psycopg://user@host/db (default: where the "
        "campaign was recorded, else $CAMPAIGNS_DB_URL for new campaigns, else SQLite in "
        "metadata/)",
    ),
    flag("--debug", help="show tracebacks"),
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to generate the CLI reference)."""
    parser = _Parser(
        prog="run-campaign",
        description="Run a campaign of parameterized jobs on Slurm or this machine, "
        "from one YAML file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"campaigns {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    groups: dict[str, Any] = {}
    for name, (does, example, options) in COMMANDS.items():
        where, leaf = sub, name
        if " " in name:
            group, leaf = name.split(" ", 1)
            if group not in groups:
                holder = sub.add_parser(
                    group,
                    help=f"{group} commands: "
                    + ", ".join(n.split(" ", 1)[1] for n in COMMANDS if n.startswith(f"{group} ")),
                )
                groups[group] = holder.add_subparsers(
                    dest=f"{group}_command", metavar="SUBCOMMAND", parser_class=_Parser
                )
                groups[group].required = True
            where = groups[group]
        command = where.add_parser(
            leaf,
            help=does,
            description=does,
            epilog=f"example:\n  run-campaign {name} {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.set_defaults(handler=name)
        common = COMMON
        if name == "campaigns":
            common = [o for o in COMMON if o[0] != ("--root",)]
        if name in SEVERAL_CONFIGS:
            command.add_argument("config", metavar="CONFIG", nargs="+", help="campaign YAML files")
        elif name not in DATABASE_WIDE:
            command.add_argument("config", metavar="CONFIG", help="the campaign YAML file")
        for names, settings in [*options(), *common]:
            command.add_argument(*names, **settings)
    return parser
