"""`monitor`'s screen: live on a terminal, one line per refresh in a pipe or a log.

The live region shows the campaign's name and elapsed time, a progress bar, counts per
state, the jobs waiting for a retry and when the next is due, the throughput over a
sliding window and the ETA it gives, and the last few failures, one line each (cut, never
wrapped). When the campaign is final the region is replaced by the final summary.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from campaigns.cli.render import console, counts_line, duration, status
from campaigns.ops.reports import StatusReport

#: Throughput is measured over this many seconds of recent refreshes.
WINDOW_SECONDS = 600.0


class Throughput:
    """Completed jobs per second over a sliding window of refreshes."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, completed: int) -> None:
        """Record a refresh."""
        self.samples.append((now, completed))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def per_second(self) -> float:
        """The rate over the window (0 until two refreshes apart)."""
        if len(self.samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0


def progress_text(report: StatusReport, rate: float, elapsed: float) -> str:
    """Elapsed time, throughput, ETA and the retry wait, in one line."""
    remaining = report.total - report.counts["completed"] - report.counts["cancelled"]
    remaining -= report.exhausted
    eta = duration(remaining / rate) if rate > 0 and remaining > 0 else "-"
    text = f"elapsed {duration(elapsed)}; {rate * 60:.1f} jobs/min, ETA {eta}"
    if report.retry_waiting and report.next_retry_at is not None:
        text += (
            f"; {report.retry_waiting:,} wait for a retry, next at "
            f"{report.next_retry_at.strftime('%H:%M:%S')} UTC"
        )
    if report.retry_due:
        text += f"; {report.retry_due:,} retries due"
    return text


def _failure_lines(report: StatusReport, n: int = 3) -> list[Text]:
    lines = []
    for f in report.latest_failures[:n]:
        line = Text(f"failed {f.key}: {f.failure_class} ({f.error}) log {f.log}", style="red")
        line.no_wrap, line.overflow = True, "ellipsis"
        lines.append(line)
    return lines


def live_monitor(reports: Iterable[StatusReport], interval: float) -> StatusReport:
    """The screen until every job is final; returns the last report."""
    if not console.is_terminal:
        return plain_monitor(reports)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        console=console,
    )
    task = progress.add_task("completed", total=1)
    started, throughput = time.monotonic(), Throughput()
    last: StatusReport | None = None
    with Live(progress, console=console, refresh_per_second=4, transient=True) as live:
        for report in reports:
            last = report
            now = time.monotonic()
            throughput.add(now, report.counts["completed"])
            progress.update(task, total=report.total, completed=report.counts["completed"])
            lines: list[RenderableType] = [
                Text(f"{report.name} {report.version}", style="bold"),
                progress,
                counts_line(report),
                Text(
                    progress_text(report, throughput.per_second(), now - started)
                    + f"; next refresh in {duration(interval)}",
                    style="dim",
                ),
            ]
            if report.breaker_open_since is not None:
                lines.append(Text(f"circuit breaker open: {report.breaker_reason}", style="red"))
            if report.unknown_scheduler:
                lines.append(Text(report.unknown_scheduler, style="yellow"))
            lines += _failure_lines(report)
            live.update(Group(*lines))
    assert last is not None  # the watch yields at least once
    status(last)
    return last


def plain_monitor(reports: Iterable[StatusReport]) -> StatusReport:
    """One line per refresh, never wrapped, for logs and pipes; the summary at the end."""
    started, throughput = time.monotonic(), Throughput()
    last: StatusReport | None = None
    for report in reports:
        last = report
        now = time.monotonic()
        throughput.add(now, report.counts["completed"])
        counts = ", ".join(f"{k} {v:,}" for k, v in report.counts.items() if v and k != "completed")
        extra = f" [{report.unknown_scheduler}]" if report.unknown_scheduler else ""
        if report.breaker_open_since is not None:
            extra += " [circuit breaker open]"
        console.print(
            f"{time.strftime('%H:%M:%S', time.gmtime())} {report.name} "
            f"{report.counts['completed']:,}/{report.total:,} completed"
            f"{'; ' + counts if counts else ''}; "
            f"{progress_text(report, throughput.per_second(), now - started)}{extra}",
            soft_wrap=True,
        )
    assert last is not None  # the watch yields at least once
    status(last)
    return last
