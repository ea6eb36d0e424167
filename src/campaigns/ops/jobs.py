"""Triage at 40,000 jobs: the jobs a selection picks (`status --jobs`, `retry --reset`,
`submit` with --state/--class/--match), as rows the reports show. Reads the store only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from campaigns.core.selection import Selection
from campaigns.ops.context import Context
from campaigns.ops.reports import JobRow

#: The columns a job row needs.
_COLUMNS = (
    "id key uid params state attempts next_retry_at scheduler_id output error failure_class "
    "exit_code"
)
COLUMNS = _COLUMNS.split()


def selected(
    ctx: Context, selection: Selection, columns: list[str] | None = None
) -> list[dict[str, Any]]:
    """Store rows of every job the selection picks, in campaign order (its limit ignored)."""
    states = sorted(s.value for s in selection.states) or None
    classes = sorted(c.value for c in selection.classes) or None
    wanted = list(dict.fromkeys([*(columns or COLUMNS), "params"]))
    rows = ctx.store.jobs(states=states, failure_classes=classes, columns=wanted)
    if not selection.matches:
        return rows
    return [r for r in rows if selection.admits(json.loads(r["params"]))]


def job_rows(ctx: Context, selection: Selection) -> tuple[list[JobRow], int]:
    """The selected jobs as report rows (at most `selection.limit`) and how many matched."""
    rows = selected(ctx, selection)
    shown = rows if selection.limit is None else rows[: selection.limit]
    logs = ctx.store.log_paths([r["id"] for r in shown] if len(shown) < len(rows) else None)
    return [row(r, logs) for r in shown], len(rows)


def row(r: Mapping[str, Any], logs: Mapping[int, str]) -> JobRow:
    """One store row as a report row."""
    return JobRow(
        r["key"],
        json.loads(r["params"]),
        r["state"],
        r["attempts"],
        r["next_retry_at"],
        r["scheduler_id"],
        r["output"],
        r["error"],
        r["failure_class"],
        logs.get(r["id"]),
        r["exit_code"],
    )
