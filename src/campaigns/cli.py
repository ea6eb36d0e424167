"""The command line: parse, call the manager, render. Nothing else.

    run-campaign COMMAND CONFIG [options]      (or: python scripts/run_campaign.py ...)

Exit codes: 0 success; 2 bad input (config, arguments); 1 an operational
failure (scheduler or database) after retries. Data goes to stdout, messages
to stderr; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from campaigns import __version__
from campaigns.errors import CampaignError

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
        raise _UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


class _UsageError(Exception):
    pass


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
        choices=["auto", "slurm", "local"],
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
    p.add_argument("--json", action="store_true", help="print JSON (DESIGN.md section 4)")
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
    p.add_argument("--backend", choices=["auto", "slurm", "local"], help="backend for --submit")
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
        choices=["auto", "slurm", "local"],
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        args = build_parser().parse_args(args_list)
    except _UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    handler: Callable[[Any], int] = HANDLERS[args.command]
    try:
        return handler(args)
    except CampaignError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _manager(args: argparse.Namespace) -> Any:
    from campaigns.manager import CampaignManager

    return CampaignManager(args.config, root=args.root, db_url=args.db_url)


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str))


def _emit(args: argparse.Namespace, report: Any, renderer: str, *extra: Any) -> None:
    """Print `report` as JSON with --json, else draw it with `render.<renderer>`."""
    if args.json:
        _print_json(report.to_dict())
        return
    from campaigns import render

    getattr(render, renderer)(report, *extra)


def cmd_validate(args: argparse.Namespace) -> int:
    report = _manager(args).validate_configuration()
    _emit(args, report, "validation")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    report = _manager(args).init(force=args.force)
    if report.created:
        print(f"created {report.campaign_dir} with {report.n_jobs} pending jobs")
    elif report.updated:
        print(
            f"adopted the changed configuration in {report.campaign_dir}; "
            f"{report.added_jobs} jobs added"
        )
    else:
        print(
            f"{report.campaign_dir} already holds this campaign ({report.n_jobs} jobs); "
            "nothing to do"
        )
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    report = _manager(args).submit_campaign(
        backend=args.backend, limit=args.limit, dry_run=args.dry_run
    )
    _emit(args, report, "submission")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.export:
        written = manager.export_jobs(args.export)
        print(f"wrote {written.rows:,} jobs to {written.path}", file=sys.stderr)
    if args.refresh:
        report = manager.monitor_progress()
        if args.verbose:
            report = manager.status(verbose=True, reconciled_at=report.reconciled_at)
    else:
        report = manager.status(verbose=args.verbose)
    _emit(args, report, "status", args.verbose)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.once:
        report = manager.monitor_progress(resubmit=args.resubmit, backend=args.backend)
        _emit(args, report, "status")
        return 0
    interval = args.interval or manager.spec.machine.poll_interval_seconds
    reports = manager.watch(interval, resubmit=args.resubmit, backend=args.backend)
    if args.json:
        for report in reports:
            _print_json(report.to_dict())
            sys.stdout.flush()
        return 0
    from campaigns import render

    render.live_monitor(reports, interval)
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    report = _manager(args).retry_failed_jobs(
        submit=args.submit,
        ignore_backoff=args.ignore_backoff,
        dry_run=args.dry_run,
        reset_keys=args.reset,
        backend=args.backend,
    )
    _emit(args, report, "retry")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    report = _manager(args).cancel()
    if args.json:
        _print_json(report.to_dict())
    else:
        print(f"cancelled {report.cancelled_jobs} jobs in {len(report.arrays)} arrays")
    return 0


def cmd_qa(args: argparse.Namespace) -> int:
    report = _manager(args).qa(requeue=args.requeue)
    _emit(args, report, "qa")
    if report.invalid:
        keys = ", ".join(key for key, _ in report.invalid[:5])
        more = f" and {len(report.invalid) - 5} more" if len(report.invalid) > 5 else ""
        print(
            f"error: {len(report.invalid)} invalid outputs: {keys}{more} "
            f"(details in {report.latest})",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    report = _manager(args).estimate_resources()
    _emit(args, report, "estimate")
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "validate": cmd_validate,
    "init": cmd_init,
    "submit": cmd_submit,
    "status": cmd_status,
    "monitor": cmd_monitor,
    "retry": cmd_retry,
    "cancel": cmd_cancel,
    "estimate": cmd_estimate,
    "qa": cmd_qa,
}


if __name__ == "__main__":
    raise SystemExit(main())
