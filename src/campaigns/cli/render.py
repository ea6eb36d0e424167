"""Terminal rendering of the manager's reports (rich). The only module that draws."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from campaigns.ops.reports import (
    EstimateReport,
    RetryReport,
    StatusReport,
    SubmitReport,
    ValidationReport,
)

if TYPE_CHECKING:
    from campaigns.ops.autopilot import AutopilotReport
    from campaigns.ops.catalog import CampaignSummary
    from campaigns.qa.report import QAReport

#: Piped output (logs, `nohup`) is not cut at 80 columns: lines stay whole.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
STATE_STYLE = {
    "pending": "white",
    "queued": "cyan",
    "running": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (value - datetime.now(timezone.utc)).total_seconds()
    stamp = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if seconds > 0:
        return f"{stamp} (in {duration(seconds)})"
    return stamp


def duration(seconds: float) -> str:
    """A span as `45s`, `12m05s` or `3h07m`."""
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def validation(report: ValidationReport) -> None:
    """`validate` output."""
    console.print(f"[bold]{report.name}[/] {report.version}: configuration is valid")
    console.print(f"  config         {report.config} (hash {report.config_hash})")
    console.print(f"  machine        {report.machine} (backend {report.backend})")
    console.print(f"  campaign dir   {report.campaign_dir}")
    axes = " x ".join(f"{label} ({n})" for label, n in report.parameters.items())
    console.print(f"  parameters     {axes} = {report.n_jobs:,} jobs")
    limit = f", MaxArraySize {report.max_array_size}" if report.max_array_size else ""
    console.print(f"  arrays         {report.n_arrays:,} arrays, {report.n_tasks:,} tasks{limit}")
    if report.max_queued_jobs is not None:
        console.print(
            f"  queue cap      {report.max_queued_jobs:,} tasks queued or running at once"
        )
    table = Table(title="resource groups", title_justify="left")
    for column in ("group", "jobs", "arrays", "tasks", "max retries", "per job"):
        table.add_column(column)
    for g in report.groups:
        table.add_row(
            str(g.group),
            f"{g.n_jobs:,}",
            str(g.n_arrays),
            f"{g.n_tasks:,}",
            str(g.max_retries),
            g.description,
        )
    console.print(table)


def submission(report: SubmitReport) -> None:
    """`submit` output."""
    for line in report.recovered:
        console.print(f"[yellow]recovered:[/] {line}")
    verb = "would submit" if report.dry_run else "submitted"
    if report.cancelled_jobs:
        console.print(
            f"[yellow]{report.cancelled_jobs:,} jobs are cancelled[/] and are not submitted: "
            "`retry --reset --state cancelled --submit` resumes them"
        )
    if report.held:
        console.print(f"[yellow]held:[/] {report.held}")
    if not report.arrays:
        if report.held:
            return
        console.print(
            f"nothing to submit ({report.waiting_jobs} pending jobs wait for queue room)"
            if report.waiting_jobs
            else "nothing to submit: no pending jobs"
        )
        return
    table = Table(
        title=f"{verb} {report.submitted_jobs:,} jobs in {len(report.arrays)} arrays "
        f"({report.backend})",
        title_justify="left",
    )
    for column in ("array", "scheduler id", "tasks", "jobs", "resources per task"):
        table.add_column(column)
    for a in report.arrays:
        table.add_row(
            str(a.submission_id or "-"),
            a.scheduler_id or "-",
            str(a.n_tasks),
            str(a.n_jobs),
            a.resources,
        )
    console.print(table)
    folders = sorted({str(Path(a.folder).parent) for a in report.arrays})
    console.print(f"scripts and logs under {', '.join(folders)}")
    if report.dry_run and report.arrays and report.arrays[0].script:
        console.print("[bold]script of the first array:[/]")
        console.print(report.arrays[0].script, markup=False, soft_wrap=True)
    if report.waiting_jobs:
        console.print(
            f"{report.waiting_jobs:,} pending jobs wait for room in the queue: "
            "`submit` again later, or `monitor --submit` tops the queue up."
        )


def counts_line(report: StatusReport) -> Text:
    """Counts per state, coloured."""
    text = Text()
    for state, n in report.counts.items():
        text.append(f"{state} {n:,}  ", style=STATE_STYLE.get(state, ""))
    return text


def status(report: StatusReport, listing: bool = False) -> None:
    """`status` / `monitor --once` output; `listing` adds the table of selected jobs."""
    console.print(f"[bold]{report.name}[/] {report.version}  {report.path}")
    console.print(counts_line(report))
    console.print(
        f"total {report.total:,}; open arrays {report.open_arrays}; "
        f"backend {report.backend or '-'}; logs in {report.logs}"
    )
    if report.database:
        console.print(f"database {report.database}", style="dim")
    if report.unknown_scheduler:
        console.print(f"[yellow]{report.unknown_scheduler}[/]")
    if report.breaker_open_since is not None:
        console.print(
            f"[bold red]circuit breaker open[/] since {_when(report.breaker_open_since)}: "
            f"{report.breaker_reason}. Nothing is submitted; fix the cause, then `submit --resume`."
        )
    _failures(report, latest=not listing)
    if listing and report.jobs is not None:
        _jobs(report)


def _jobs(report: StatusReport) -> None:
    """The selected jobs, one line each, fitted to the terminal (long text ellipsised)."""
    assert report.jobs is not None
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("key", overflow="fold", ratio=3)
    table.add_column("state", no_wrap=True)
    table.add_column("att", justify="right", no_wrap=True)
    table.add_column("class", no_wrap=True)
    table.add_column("exit", justify="right", no_wrap=True)
    table.add_column("next retry", no_wrap=True)
    table.add_column("log", overflow="ellipsis", no_wrap=True, ratio=2)
    for j in report.jobs:
        table.add_row(
            j.key,
            Text(j.state, style=STATE_STYLE.get(j.state, "")),
            str(j.attempts),
            j.failure_class or "",
            "" if j.exit_code is None else str(j.exit_code),
            _short_when(j.next_retry_at),
            j.log or "",
        )
    console.print(table)
    matched = report.jobs_matched or 0
    if matched > len(report.jobs):
        console.print(
            f"... and {matched - len(report.jobs):,} more ({matched:,} matched; "
            "--limit N shows more, --json all)",
            style="dim",
        )
    elif not report.jobs:
        console.print("no job matches", style="dim")


def _short_when(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = (value - datetime.now(timezone.utc)).total_seconds()
    return f"in {duration(seconds)}" if seconds > 0 else "due"


def _failures(report: StatusReport, latest: bool = True) -> None:
    if not report.failures_by_class:
        return
    classes = ", ".join(f"{k} {v:,}" for k, v in sorted(report.failures_by_class.items()))
    console.print(
        f"[red]failed[/] by class: {classes}; retry due {report.retry_due:,}, waiting "
        f"{report.retry_waiting:,}, exhausted {report.exhausted:,}"
    )
    if not latest:
        return
    shown = report.latest_failures[:5]
    console.print("latest failures:")
    for f in shown:
        when = "exhausted" if f.exhausted else f"retry {_when(f.next_retry_at)}"
        console.print(f"  {f.key}: {f.failure_class} ({f.error}); attempt {f.attempts}, {when}")
        if f.log:
            console.print(f"    log: {f.log}", style="dim")
    failed = report.counts.get("failed", 0)
    if failed > len(shown):
        console.print(
            f"  ... and {failed - len(shown):,} more: `status --jobs --state failed` lists them "
            "(add --class C or --match NAME=A..B to narrow)",
            style="dim",
        )
    if report.retry_due:
        console.print("  run `retry --submit` (or `monitor --submit`) to run due retries")


def retry(report: RetryReport) -> None:
    """`retry` output."""
    if report.started_over:
        verb = "would start" if report.dry_run else "started"
        console.print(f"{verb} {len(report.reset)} jobs over (pending, fresh attempt budget)")
    else:
        verb = "would reset" if report.dry_run else "reset"
        console.print(f"{verb} {len(report.reset)} failed jobs to pending")
    if report.left_alone:
        console.print(f"{report.left_alone:,} selected jobs are queued or running: left alone")
    for key in report.reset[:10]:
        console.print(f"  {key}")
    if len(report.reset) > 10:
        console.print(f"  ... and {len(report.reset) - 10} more")
    if report.waiting:
        console.print(f"{len(report.waiting)} jobs still wait for their backoff:")
        for key, when in report.waiting[:10]:
            console.print(f"  {key}: due {_when(when)}")
    if report.exhausted:
        console.print(
            f"[red]{len(report.exhausted)} jobs have failed for good[/] "
            "(no attempts left; `retry --reset KEY`, or `retry --reset --state failed`, starts "
            "them over):"
        )
        for f in report.exhausted[:10]:
            console.print(f"  {f.key}: {f.failure_class} ({f.error}) after {f.attempts} attempts")
            if f.log:
                console.print(f"    log: {f.log}", style="dim")
    if report.submit is not None:
        submission(report.submit)


def autopilot(report: AutopilotReport) -> None:
    """`autopilot` output."""
    if report.active:
        console.print(f"[green]autopilot on[/]: {report.how}")
        if report.installed_at:
            console.print(
                f"  installed {_when(report.installed_at)}, a tick every "
                f"{duration(report.interval or 0)}"
            )
    else:
        console.print("[yellow]autopilot off[/]" + (f" (was: {report.how})" if report.how else ""))
    if report.last_tick:
        console.print(f"  last: {report.last_tick}", markup=False)
    if report.next_tick and report.missed_ticks:
        console.print(f"  next tick overdue since {_when(report.next_tick)}", style="yellow")
    elif report.next_tick:
        console.print(f"  next tick about {_when(report.next_tick)}")
    for problem in report.problems:  # failed, missed or waiting ticks; an edited file
        console.print(f"  ! {problem}", style="yellow", markup=False)
    console.print(f"  log: {report.log}", style="dim")


def estimate(report: EstimateReport) -> None:
    """`estimate` output."""
    console.print(
        f"{report.remaining_jobs:,} of {report.n_jobs:,} jobs left to run: "
        f"{report.n_tasks:,} array tasks in {report.n_arrays:,} arrays"
    )
    table = Table(title="requested resources", title_justify="left")
    columns = (
        "group",
        "jobs",
        "tasks",
        "arrays",
        "per task",
        "node-h",
        "CPU-h",
        "GPU-h",
        "charged as",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("per task", "charged as") else "right"
        )
    for g in report.groups:
        table.add_row(
            str(g["group"]),
            f"{g['n_jobs']:,}",
            f"{g['n_tasks']:,}",
            str(g["n_arrays"]),
            g["short"],
            f"{g['node_hours']:,.1f}",
            f"{g['cpu_hours']:,.1f}",
            f"{g['gpu_hours']:,.1f}",
            g["rule"],
        )
    console.print(table)
    console.print(
        f"charged: {report.node_hours:,.1f} node-hours ({report.cpu_node_hours:,.1f} on CPU "
        f"nodes, {report.gpu_node_hours:,.1f} on GPU nodes); requested "
        f"{report.cpu_hours:,.1f} CPU-hours, {report.gpu_hours:,.1f} GPU-hours"
    )
    console.print(
        f"expected wall time: {report.expected_wall_hours:,.2f} h "
        f"(from {report.basis}; queue waits come on top)"
    )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


def qa(report: QAReport) -> None:
    """`qa` output."""
    verdict = (
        Text(f"all {report.checked:,} completed outputs valid", style="green")
        if report.ok
        else Text(
            f"{len(report.invalid):,} of {report.checked:,} completed outputs invalid", style="red"
        )
    )
    console.print(
        Text.assemble(
            (report.name, "bold"),
            f" {report.version}: ",
            verdict,
            f" ({_size(report.bytes_checked)} checked in {report.seconds:.1f}s)",
        )
    )
    if report.not_checked:
        others = ", ".join(f"{n:,} {state}" for state, n in report.not_checked.items())
        console.print(f"not checked (not completed): {others}", style="dim")
    for key, problems in report.invalid[:10]:
        console.print(Text.assemble((f"  {key}: ", "red"), "; ".join(problems)))
    if len(report.invalid) > 10:
        console.print(f"  ... and {len(report.invalid) - 10:,} more (see the report)")
    if report.requeued:
        console.print(
            f"marked {len(report.requeued):,} jobs failed (invalid_output): "
            "run `retry --submit` to rerun them"
        )
    if report.exhausted:
        console.print(
            Text(
                f"{len(report.exhausted):,} jobs with an invalid output have no "
                "attempts left (`retry --reset KEY` starts one over): "
                + ", ".join(report.exhausted[:5]),
                style="red",
            )
        )
    if report.invalid and not (report.requeued or report.exhausted):
        console.print("run `qa --requeue` to mark them failed, then `retry --submit` to rerun them")
    console.print(f"report: {report.report}", markup=False, soft_wrap=True)
    console.print(
        f"        (and latest.json; per job: {Path(report.csv).name}, latest.csv)",
        markup=False,
        soft_wrap=True,
    )
    if report.plots:
        console.print(f"plots:  {Path(report.plots[0]).parent}/", markup=False, soft_wrap=True)


def campaigns(database: str, summaries: list[CampaignSummary]) -> None:
    """`campaigns`: one line per campaign of a database."""
    if not summaries:
        console.print(f"{database} holds no campaigns")
        return
    console.print(database, style="dim")
    table = Table()
    table.add_column("campaign", no_wrap=True)
    for column in ("jobs", *STATE_STYLE, "node-hours", "last activity"):
        table.add_column(column, justify="right")
    for s in summaries:
        table.add_row(
            s.slug,
            f"{s.total:,}",
            *[f"{s.counts.get(state, 0):,}" for state in STATE_STYLE],
            f"{s.node_hours:,.2f}",
            _when(s.last_activity),
        )
    console.print(table)
