"""The command line: parse, call the manager, render. Nothing else.

    run-campaign COMMAND CONFIG [options]      (or: python scripts/run_campaign.py ...)

Exit codes (`ExitCode`): 0 success; 1 an operational failure (scheduler or
database) after retries; 2 bad input (config, arguments); 3 the campaign ended
incomplete; 4 not finished yet. Data goes to stdout, messages to stderr;
tracebacks only with --debug.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from campaigns.cli.parser import UsageError, build_parser
from campaigns.core.secrets import mask_passwords
from campaigns.core.selection import Selection, select
from campaigns.errors import CampaignError, InputError


class ExitCode(enum.IntEnum):
    """What `run-campaign` returns; scripts and cron jobs rely on these."""

    OK = 0
    FAILURE = 1  # an operational failure after retries
    BAD_INPUT = 2  # nothing was created or changed
    INCOMPLETE = 3  # the campaign ended with jobs failed for good, or qa found invalid outputs
    UNFINISHED = 4  # returned before every job was final


#: A campaign report's `outcome`, as an exit code.
OUTCOME_CODE = {
    "complete": ExitCode.OK,
    "incomplete": ExitCode.INCOMPLETE,
    "unfinished": ExitCode.UNFINISHED,
}


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
    handler: Callable[[Any], int] = HANDLERS[args.handler]
    try:
        return handler(args)
    except CampaignError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {mask_passwords(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _manager(args: argparse.Namespace) -> Any:
    from campaigns.ops.manager import CampaignManager

    manager = CampaignManager(args.config, root=getattr(args, "root", None), db_url=args.db_url)
    if args.handler not in ("init", "validate", "submit", "retry"):  # those read the file itself
        _warn(manager.edit_notes())
    return manager


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str))


def _emit(args: argparse.Namespace, report: Any, renderer: str, *extra: Any) -> None:
    """Print `report` as JSON with --json, else draw it with `render.<renderer>`."""
    if args.json:
        _print_json(report.to_dict())
        return
    from campaigns.cli import render

    getattr(render, renderer)(report, *extra)


def _warn(lines: Sequence[str]) -> None:
    """Warnings go to stderr, so that --json output stays clean."""
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    report = _manager(args).validate_configuration()
    _warn(report.warnings)
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


def _selection(args: argparse.Namespace, manager: Any, limit: int | None = None) -> Selection:
    """The jobs --state/--class/--match pick."""
    return select(
        states=args.state or (),
        classes=args.failure_class or (),
        matches=args.match or (),
        parameters=manager.spec.parameter_names,
        limit=limit,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    manager = _manager(args)
    _warn(manager.site.notes)
    chosen = _selection(args, manager)
    report = manager.submit_campaign(
        backend=args.backend,
        limit=args.limit,
        dry_run=args.dry_run,
        selection=None if chosen.empty else chosen,
        resume=args.resume,
    )
    _emit(args, report, "submission")
    return 0


def _reader(args: argparse.Namespace) -> Any:
    """A Context without the manager: `status` imports only the reading operations."""
    from campaigns.ops.context import Context

    context = Context(args.config, root=getattr(args, "root", None), db_url=args.db_url)
    _warn(context.edit_notes())
    return context


def cmd_status(args: argparse.Namespace) -> int:
    from campaigns.ops.status import status

    # --export and --refresh need the manager; a plain status only reads (and starts faster).
    manager = _manager(args) if args.export or args.refresh else _reader(args)
    if args.export:
        written = manager.export_jobs(args.export)
        print(f"wrote {written.rows:,} jobs to {written.path}", file=sys.stderr)
    limit = args.limit or (None if args.json else 50)
    chosen = _selection(args, manager, limit)
    listing = args.jobs or args.verbose or not chosen.empty
    reconciled_at = manager.monitor_progress().reconciled_at if args.refresh else None
    report = status(manager, selection=chosen if listing else None, reconciled_at=reconciled_at)
    _emit(args, report, "status", listing)
    return OUTCOME_CODE[report.outcome] if args.check else ExitCode.OK


def cmd_monitor(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.once:  # a polling primitive: 0 when the refresh itself worked
        report = manager.monitor_progress(resubmit=args.resubmit, backend=args.backend)
        _emit(args, report, "status")
        return ExitCode.OK
    interval = args.interval or manager.spec.machine.poll_interval_seconds
    reports = manager.watch(interval, resubmit=args.resubmit, backend=args.backend)
    if args.json:
        for report in reports:  # noqa: B007 -- the last one decides the exit code
            _print_json(report.to_dict())
            sys.stdout.flush()
    else:
        from campaigns.cli import live

        report = live.live_monitor(reports, interval)
    return OUTCOME_CODE[report.outcome]


def cmd_retry(args: argparse.Namespace) -> int:
    manager = _manager(args)
    chosen = _selection(args, manager)
    if args.reset is None and not chosen.empty:
        raise InputError("--state, --class and --match choose jobs for `--reset`; add it.")
    report = manager.retry_failed_jobs(
        submit=args.submit,
        ignore_backoff=args.ignore_backoff,
        dry_run=args.dry_run,
        reset_keys=args.reset or None,
        reset=chosen if args.reset == [] else None,
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
    manager = _manager(args)
    report = manager.qa(requeue=args.requeue, full=args.full)
    _emit(args, report, "qa")
    if report.invalid:
        keys = ", ".join(key for key, _ in report.invalid[:5])
        more = f" and {len(report.invalid) - 5} more" if len(report.invalid) > 5 else ""
        print(
            f"error: {len(report.invalid)} invalid outputs: {keys}{more} "
            f"(details in {report.latest})",
            file=sys.stderr,
        )
        return ExitCode.INCOMPLETE
    return OUTCOME_CODE[manager.status().outcome]


def cmd_autopilot(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.tick:  # one tick, as the installed entry runs it
        manager.autopilot_tick(backend=args.backend)
        return ExitCode.OK
    if args.stop:
        report = manager.stop_autopilot()
    elif args.status:
        report = manager.autopilot_status()
    else:
        report = manager.start_autopilot(
            backend=args.backend, interval=args.interval, method=args.method
        )
    _emit(args, report, "autopilot")
    return ExitCode.OK


def cmd_estimate(args: argparse.Namespace) -> int:
    report = _manager(args).estimate_resources()
    _emit(args, report, "estimate")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """`db upgrade`: migrate the campaign's database."""
    report = _manager(args).upgrade_database()
    if args.json:
        _print_json(report.to_dict())
    elif report.before == report.after:
        print(f"{report.database} is at schema revision {report.after}; nothing to do")
    else:
        print(f"upgraded {report.database} from revision {report.before or '-'} to {report.after}")
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    """`db copy`: move the campaign to another database."""
    report = _manager(args).copy_database(args.to, move=args.move, replace=args.replace)
    if args.json:
        _print_json(report.to_dict())
        return 0
    rows = ", ".join(f"{n:,} {table}" for table, n in report.rows.items())
    print(f"copied to {report.target} and verified: {rows}")
    print(
        f"the campaign now lives there; {report.source} "
        + ("no longer holds it" if report.moved else "keeps its old copy")
    )
    return 0


def _runs(args: argparse.Namespace) -> Any:
    from campaigns.ops.catalog import RunsDatabase

    return RunsDatabase(args.db_url)


def cmd_campaigns(args: argparse.Namespace) -> int:
    """`campaigns`: list the campaigns of a database."""
    runs = _runs(args)
    summaries = runs.campaigns()
    if args.json:
        _print_json({"database": runs.shown, "campaigns": [s.to_dict() for s in summaries]})
        return 0
    from campaigns.cli import render

    render.campaigns(runs.shown, summaries)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """`export`: one row per job of one campaign, or of all."""
    if args.all:
        if args.config and not args.db_url:
            args.db_url = _manager(args).db_url
        written = _runs(args).export(args.file)
    elif args.config:
        written = _manager(args).export_jobs(args.file)
    else:
        raise InputError("export what? Give a CONFIG (one campaign) or --all (every campaign).")
    print(f"wrote {written.rows:,} jobs to {written.path}", file=sys.stderr)
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
    "autopilot": cmd_autopilot,
    "db upgrade": cmd_db_upgrade,
    "db copy": cmd_db_copy,
    "campaigns": cmd_campaigns,
    "export": cmd_export,
    "serve": cmd_serve,
}


if __name__ == "__main__":
    raise SystemExit(main())
