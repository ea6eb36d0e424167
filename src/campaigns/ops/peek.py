"""Read the campaign's own files for viewers: a job's log tail, the QA plots and report.

Every path is resolved (symbolic links included) and served only when it lies inside
the campaign directory: a log path recorded elsewhere, a `..` or an absolute name in a
request gives nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaigns.ops.context import Context

TAIL_BYTES = 256 * 1024  # how much of a log's end is read at most
MAX_LINES = 2000
_PLOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.png$")
_MARK = "===== job "


def inside(root: Path, candidate: str | Path) -> Path | None:
    """`candidate` (absolute, or relative to `root`) resolved, if it lies inside `root`."""
    base = root.resolve()
    path = (base / candidate).resolve()
    return path if path.is_relative_to(base) and path != base else None


@dataclass(frozen=True)
class LogTail:
    """The end of one attempt's log."""

    attempt: int
    path: str  # relative to the campaign directory
    lines: list[str]
    section: bool  # True: only this job's section of a task log shared by several jobs
    truncated: bool  # True: earlier lines exist that are not shown
    size: int  # bytes in the whole file

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "attempt": self.attempt,
            "path": self.path,
            "lines": self.lines,
            "section": self.section,
            "truncated": self.truncated,
            "size": self.size,
        }


def job_section(lines: list[str], key: str, attempt: int) -> list[str] | None:
    """The lines of job `key`'s attempt `attempt` in a task log (its start to its end marker)."""
    start = f"{_MARK}{key} attempt {attempt} start"
    begin = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(start)), None)
    if begin is None:
        return None
    own = f"{_MARK}{key} "
    for end in range(begin + 1, len(lines)):
        if lines[end].startswith(own):
            return lines[begin : end + 1]
        if lines[end].startswith(_MARK):  # another job's section begins
            return lines[begin:end]
    return lines[begin:]


def log_tail(
    ctx: Context, reference: str, attempt: int | None = None, lines: int = 200
) -> LogTail | None:
    """The last `lines` lines of a job's attempt (default: its latest), or None when the job,
    the attempt or its log is unknown, missing, or outside the campaign directory."""
    lines = max(1, min(lines, MAX_LINES))
    store = ctx.store
    job = store.job_by_reference(reference)
    if job is None:
        return None
    attempts = store.attempts([job["id"]])
    if attempt is not None:
        attempts = [a for a in attempts if a["number"] == attempt]
    if not attempts or not attempts[-1]["log_path"]:
        return None
    chosen = attempts[-1]
    path = inside(ctx.layout.root, chosen["log_path"])
    if path is None or not path.is_file():
        return None
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(0, size - TAIL_BYTES))
        text = handle.read().decode("utf-8", errors="replace")
    every = text.splitlines()
    if size > TAIL_BYTES and every:
        every = every[1:]  # the first line read is probably cut
    section = job_section(every, job["key"], chosen["number"])
    shown = every if section is None else section
    return LogTail(
        chosen["number"],
        str(path.relative_to(ctx.layout.root.resolve())),
        shown[-lines:],
        section is not None,
        len(shown) > lines or (section is None and size > TAIL_BYTES),
        size,
    )


def qa_plots(ctx: Context) -> list[str]:
    """Names of the PNG plots in qa/summary_plots/ that `qa_plot` serves, sorted."""
    folder = ctx.layout.qa_plots
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if qa_plot(ctx, p.name) is not None)


def qa_plot(ctx: Context, name: str) -> Path | None:
    """The plot called `name` in qa/summary_plots/, or None (no such plot, or a bad name)."""
    if not _PLOT_NAME.match(name):
        return None
    path = inside(ctx.layout.qa_plots, name)
    return path if path is not None and path.is_file() else None


def qa_latest(ctx: Context, max_invalid: int = 50) -> dict[str, Any] | None:
    """The newest QA report (qa/validation_reports/latest.json), its invalid list cut to
    `max_invalid` entries; None before the first `qa`."""
    path = inside(ctx.layout.qa_reports, "latest.json")
    if path is None or not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict):
        return None
    invalid = report.get("invalid") or []
    return {
        "checked_at": report.get("checked_at"),
        "summary": report.get("summary", {}),
        "invalid": invalid[:max_invalid],
        "invalid_shown": min(len(invalid), max_invalid),
        "requeued": len(report.get("requeued") or []),
        "exhausted": len(report.get("exhausted") or []),
    }
