"""The argument parser of `run-campaign` (also the source of the docs' CLI reference).

Every command is one entry of `COMMANDS`: what it does, an example, and its options
(besides CONFIG, --root, --db-url and --debug, which all take). Commands in
`SEVERAL_CONFIGS` take one CONFIG or more.
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
  run-campaign serve    config/examples/test_campaign.yaml     # a read-only web dashboard

exit codes: 0 success, 2 bad input (nothing changed), 1 operational failure
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
            flag("--dry-run", help="write and print the plan and scripts; submit nothing"),
            json_flag(),
        ],
    ),
    "status": (
        "counts per state, failures, where the logs are (reads the store only)",
        "config/examples/test_campaign.yaml --json",
        lambda: [
            flag("--verbose", "-v", help="list every job"),
            json_flag("print one JSON object (its fields are in the CLI reference)"),
            flag("--refresh", help="reconcile with the scheduler first"),
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
                nargs="+",
                metavar="KEY",
                help="reset these jobs (any state but queued/running) to pending with a "
                "fresh attempt budget",
            ),
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
            json_flag("print JSON (what latest.json holds)"),
        ],
    ),
    "estimate": (
        "node-hours, arrays and expected wall time, without submitting",
        "config/examples/production_campaign.yaml",
        lambda: [json_flag()],
    ),
    "cancel": (
        "cancel the campaign's queued and running jobs",
        "config/examples/test_campaign.yaml",
        lambda: [json_flag()],
    ),
    "serve": (
        "serve a read-only web dashboard of one or more campaigns (needs the web extra: "
        "pip install 'campaigns[web]')",
        "config/examples/test_campaign.yaml --port 8000",
        lambda: [
            value(
                "--host",
                default="127.0.0.1",
                help="address to listen on (default 127.0.0.1; any other address requires "
                "a token on every request: $CAMPAIGNS_WEB_TOKEN, else one printed at start)",
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
        help="SQLAlchemy URL of the campaign database (default: SQLite in metadata/)",
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
    for name, (does, example, options) in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=does,
            description=does,
            epilog=f"example:\n  run-campaign {name} {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name in SEVERAL_CONFIGS:
            command.add_argument("config", metavar="CONFIG", nargs="+", help="campaign YAML files")
        else:
            command.add_argument("config", metavar="CONFIG", help="the campaign YAML file")
        for names, settings in [*options(), *COMMON]:
            command.add_argument(*names, **settings)
    return parser
