"""Terminal rendering of the manager's reports (rich). The only module that draws."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
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
    from campaigns.ops.catalog import CampaignSummary
    from campaigns.qa.report import QAReport

console = Console(highlight=False)
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
        return f"{stamp} (in {_duration(seconds)})"
    return stamp


def _duration(seconds: float) -> str:
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
    if not report.arrays:
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


def _counts_line(report: StatusReport) -> Text:
    text = Text()
    for state, n in report.counts.items():
        text.append(f"{state} {n:,}  ", style=STATE_STYLE.get(state, ""))
    return text


def status(report: StatusReport, verbose: bool = False) -> None:
    """`status` / `monitor --once` output."""
    console.print(f"[bold]{report.name}[/] {report.version}  {report.path}")
    console.print(_counts_line(report))
    console.print(
        f"total {report.total:,}; open arrays {report.open_arrays}; "
        f"backend {report.backend or '-'}; logs in {report.logs}"
    )
    if report.database:
        console.print(f"database {report.database}", style="dim")
    if report.unknown_scheduler:
        console.print(f"[yellow]{report.unknown_scheduler}[/]")
    _failures(report)
    if verbose and report.jobs is not None:
        table = Table()
        for column in ("key", "state", "attempts", "next retry", "scheduler id", "output", "error"):
            table.add_column(column)
        for j in report.jobs:
            table.add_row(
                j.key,
                Text(j.state, style=STATE_STYLE.get(j.state, "")),
                str(j.attempts),
                _when(j.next_retry_at),
                j.scheduler_id or "-",
                j.output,
                j.error or "",
            )
        console.print(table)


def _failures(report: StatusReport) -> None:
    if not report.failures_by_class:
        return
    classes = ", ".join(f"{k} {v}" for k, v in sorted(report.failures_by_class.items()))
    console.print(
        f"[red]failed[/]: {classes}; retry due {report.retry_due}, waiting "
        f"{report.retry_waiting}, exhausted {report.exhausted}"
    )
    for f in report.latest_failures[-5:]:
        when = "exhausted" if f.exhausted else f"retry {_when(f.next_retry_at)}"
        console.print(f"  {f.key}: {f.failure_class} ({f.error}); attempt {f.attempts}, {when}")
        if f.log:
            console.print(f"    log: {f.log}", style="dim")
    if report.retry_due:
        console.print("  run `retry --submit` (or `monitor --submit`) to run due retries")


def retry(report: RetryReport) -> None:
    """`retry` output."""
    verb = "would reset" if report.dry_run else "reset"
    console.print(f"{verb} {len(report.reset)} failed jobs to pending")
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
            "(no attempts left; `retry --reset KEY` to start one over):"
        )
        for f in report.exhausted[:10]:
            console.print(f"  {f.key}: {f.failure_class} ({f.error}) after {f.attempts} attempts")
            if f.log:
                console.print(f"    log: {f.log}", style="dim")
    if report.submit is not None:
        submission(report.submit)


def live_monitor(reports: Iterable[StatusReport], interval: float) -> None:
    """Live progress bar with counts per state, throughput and ETA, until all is final."""
    if not console.is_terminal:
        _plain_monitor(reports)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        console=console,
    )
    task = progress.add_task("completed", total=1)
    first: tuple[float, int] | None = None
    last: StatusReport | None = None
    with Live(progress, console=console, refresh_per_second=4, transient=False) as live:
        for report in reports:
            last = report
            done = report.counts["completed"]
            now = time.monotonic()
            first = first or (now, done)
            rate = (done - first[1]) / (now - first[0]) if now > first[0] else 0.0
            remaining = report.total - done - report.counts["cancelled"] - report.exhausted
            eta = _duration(remaining / rate) if rate > 0 else "-"
            progress.update(task, total=report.total, completed=done)
            lines: list[RenderableType] = [
                progress,
                _counts_line(report),
                Text(
                    f"{rate * 60:.1f} jobs/min, ETA {eta}; next refresh in {_duration(interval)}",
                    style="dim",
                ),
            ]
            if report.unknown_scheduler:
                lines.append(Text(report.unknown_scheduler, style="yellow"))
            for f in report.latest_failures[-3:]:
                lines.append(
                    Text(f"failed {f.key}: {f.failure_class} ({f.error}) log {f.log}", style="red")
                )
            live.update(Group(*lines))
    if last is not None:
        status(last)


def _plain_monitor(reports: Iterable[StatusReport]) -> None:
    """One line per refresh, for logs and pipes."""
    last = None
    for report in reports:
        last = report
        stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
        counts = ", ".join(f"{k} {v:,}" for k, v in report.counts.items() if v and k != "completed")
        extra = f" [{report.unknown_scheduler}]" if report.unknown_scheduler else ""
        console.print(
            f"{stamp} {report.counts['completed']:,}/{report.total:,} completed"
            f"{'; ' + counts if counts else ''}{extra}",
            soft_wrap=True,
        )
    if last is not None:
        status(last)


def estimate(report: EstimateReport) -> None:
    """`estimate` output."""
    console.print(
        f"{report.remaining_jobs:,} of {report.n_jobs:,} jobs left to run: "
        f"{report.n_tasks:,} array tasks in {report.n_arrays:,} arrays"
    )
    table = Table(title="requested resources", title_justify="left")
    for column in ("group", "jobs", "tasks", "arrays", "per task", "node-h", "CPU-h", "GPU-h"):
        table.add_column(column, justify="right" if column not in ("per task",) else "left")
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
        )
    console.print(table)
    console.print(
        f"total: {report.node_hours:,.1f} node-hours, {report.cpu_hours:,.1f} CPU-hours, "
        f"{report.gpu_hours:,.1f} GPU-hours requested"
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
