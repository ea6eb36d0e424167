"""The command line: parse, call the manager, render. Nothing else.

    run-campaign COMMAND CONFIG [options]      (or: python scripts/run_campaign.py ...)

Exit codes: 0 success; 2 bad input (config, arguments); 1 an operational
failure (scheduler or database) after retries. Data goes to stdout, messages
to stderr; tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from campaigns.cli.parser import UsageError, build_parser
from campaigns.errors import CampaignError


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        args = build_parser().parse_args(args_list)
    except UsageError as exc:
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
    from campaigns.ops.manager import CampaignManager

    return CampaignManager(args.config, root=args.root, db_url=args.db_url)


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str))


def _emit(args: argparse.Namespace, report: Any, renderer: str, *extra: Any) -> None:
    """Print `report` as JSON with --json, else draw it with `render.<renderer>`."""
    if args.json:
        _print_json(report.to_dict())
        return
    from campaigns.cli import render

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
    from campaigns.cli import render

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


#: The dashboard, reached by name: the web layer and the CLI are independent entry points.
SERVE = "campaigns.web.server:serve"


def cmd_serve(args: argparse.Namespace) -> int:
    module, name = SERVE.split(":")
    serve: Callable[..., int] = getattr(importlib.import_module(module), name)
    return serve(
        args.config,
        root=args.root,
        db_url=args.db_url,
        host=args.host,
        port=args.port,
        poll_seconds=args.poll,
    )


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
    "serve": cmd_serve,
}


if __name__ == "__main__":
    raise SystemExit(main())
