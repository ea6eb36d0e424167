"""The argument parser of `run-campaign` (also the source of the docs' CLI reference)."""

from __future__ import annotations

import argparse

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

exit codes: 0 success, 2 bad input (nothing changed), 1 operational failure
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class UsageError(Exception):
    """A bad command line: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to generate the CLI reference)."""
    parser = _Parser(
        prog="run-campaign",
        description="Run a campaign of parameterized jobs on "
        "Slurm or this machine, from one YAML file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"campaigns {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("config", metavar="CONFIG", help="the campaign YAML file")
        p.add_argument(
            "--root",
            metavar="DIR",
            help="put the campaign directory under DIR instead of outputs.base_path",
        )
        p.add_argument(
            "--db-url",
            metavar="URL",
            help="SQLAlchemy URL of the campaign database (default: SQLite in metadata/)",
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        return p

    p = command(
        "validate",
        "load, merge and validate a campaign; print jobs, arrays, resources",
        "run-campaign validate config/examples/production_campaign.yaml",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(
        "init",
        "create the campaign directory and database (every job pending)",
        "run-campaign init config/examples/test_campaign.yaml",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="adopt a changed configuration (jobs keep their state, new jobs are added)",
    )
    p = command(
        "submit",
        "submit pending jobs as arrays, within the site's limits",
        "run-campaign submit config/examples/test_campaign.yaml --backend local",
    )
    p.add_argument(
        "--backend",
        choices=registry.choices(),
        help="default: execution.backend, else the machine file's, else auto",
    )
    p.add_argument("--limit", type=_positive, metavar="N", help="submit at most N jobs")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="write and print the plan and scripts; submit nothing",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(
        "status",
        "counts per state, failures, where the logs are (reads the store only)",
        "run-campaign status config/examples/test_campaign.yaml --json",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="list every job")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (its fields are in the CLI reference)",
    )
    p.add_argument("--refresh", action="store_true", help="reconcile with the scheduler first")
    p.add_argument(
        "--export",
        metavar="FILE",
        help="also write one row per job (parameters, "
        "state, attempts, times, output) to FILE: .csv, or .parquet (needs pyarrow)",
    )
    p = command(
        "monitor",
        "refresh from the scheduler and show progress until every job is final",
        "run-campaign monitor config/examples/test_campaign.yaml --interval 10",
    )
    p.add_argument(
        "--interval",
        type=_positive_float,
        metavar="S",
        help="seconds between refreshes (default: the machine's, 30 s on Slurm)",
    )
    p.add_argument("--once", action="store_true", help="refresh once, print, exit")
    p.add_argument("--json", action="store_true", help="print one JSON object per refresh")
    p.add_argument(
        "--submit",
        "--retry",
        dest="resubmit",
        action="store_true",
        help="keep the campaign going: submit pending jobs and due retries as it polls",
    )
    p.add_argument("--backend", choices=registry.choices(), help="backend for --submit")
    p = command(
        "retry",
        "put failed jobs whose backoff has elapsed back to pending",
        "run-campaign retry config/examples/test_campaign.yaml --submit",
    )
    p.add_argument("--submit", action="store_true", help="also submit them")
    p.add_argument(
        "--ignore-backoff",
        action="store_true",
        help="do not wait for the backoff (the attempt limit still holds)",
    )
    p.add_argument(
        "--reset",
        nargs="+",
        metavar="KEY",
        help="reset these jobs (any state but "
        "queued/running) to pending with a fresh attempt budget",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would happen")
    p.add_argument(
        "--backend",
        choices=registry.choices(),
        help="backend for --submit (default: the one the campaign last used)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(
        "qa",
        "check every completed output (checksums, HDF5 rules); write reports and plots under qa/",
        "run-campaign qa config/examples/test_campaign.yaml --requeue",
    )
    p.add_argument(
        "--requeue",
        action="store_true",
        help="mark jobs whose output is invalid as "
        "failed (invalid_output), due at once: `retry --submit` reruns them",
    )
    p.add_argument("--json", action="store_true", help="print JSON (what latest.json holds)")
    p = command(
        "estimate",
        "node-hours, arrays and expected wall time, without submitting",
        "run-campaign estimate config/examples/production_campaign.yaml",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(
        "cancel",
        "cancel the campaign's queued and running jobs",
        "run-campaign cancel config/examples/test_campaign.yaml",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


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
