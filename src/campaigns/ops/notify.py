"""Notifications: the `notify:` command hears about the campaign with a JSON summary on its
standard input: when the campaign ends, when the circuit breaker opens, and every
`every_hours` while someone (monitor, autopilot) keeps it going.

A notifier that fails (exits non-zero, hangs, is missing) is written to the event log
and otherwise ignored: it never fails the campaign. Sent notifications are events too,
so "ended" is said once per end, whichever process or login node ticks.
"""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from typing import Any

from campaigns.core.breaker import Trip
from campaigns.core.times import iso
from campaigns.ops.context import Context
from campaigns.ops.reports import StatusReport

SENT, FAILED = "notified", "notify_failed"
#: How the notifier runs: through the shell, its output kept for the event log, bounded.
_RUN: dict[str, Any] = {"shell": True, "capture_output": True, "text": True, "timeout": 120}


def after_tick(ctx: Context, report: StatusReport, trip: Trip | None) -> list[str]:
    """Send what this tick calls for; the kinds sent."""
    settings = ctx.spec.notify
    if not settings.command:
        return []
    sent = []
    if trip is not None:
        sent.append(send(ctx, "circuit_breaker", report, trip.reason()))
    if report.finished and not _said_since_last_submission(ctx, "finished"):
        sent.append(send(ctx, "finished", report, f"the campaign ended {report.outcome}"))
    elif settings.every_hours and _due(ctx, settings.every_hours):
        sent.append(send(ctx, "progress", report, "periodic summary"))
    return sent


def payload(ctx: Context, kind: str, report: StatusReport, detail: str) -> dict[str, Any]:
    """What the notifier reads on stdin."""
    return {
        "event": kind,
        "detail": detail,
        "at": iso(ctx.clock()),
        "config": str(ctx.config_path),
        **report.to_dict(),
    }


def send(ctx: Context, kind: str, report: StatusReport, detail: str) -> str:
    """Run the notifier once; record whether it worked. Returns `kind`."""
    command = ctx.spec.notify.command
    assert command is not None
    text = json.dumps(payload(ctx, kind, report, detail)) + "\n"
    try:
        done = subprocess.run(command, input=text, **_RUN)
        problem = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:  # a missing shell, a hung notifier
        problem = str(exc)
    if problem is None:
        ctx.store.add_event(SENT, f"{kind}: {detail}", ctx.clock())
    else:
        ctx.store.add_event(FAILED, f"{kind}: notifier failed ({problem.strip()})", ctx.clock())
    return kind


def _said_since_last_submission(ctx: Context, kind: str) -> bool:
    """True when `kind` was sent (or tried: a broken notifier is not retried every tick)
    after the latest submission, so an end is told once."""
    events = ctx.store.events(1, kinds=["intent", SENT, FAILED])
    return (
        bool(events) and events[-1]["kind"] != "intent" and events[-1]["message"].startswith(kind)
    )


def _due(ctx: Context, every_hours: float) -> bool:
    """True when no notification went out for `every_hours`."""
    events = ctx.store.events(1, kinds=[SENT, FAILED])
    if not events:
        return True
    return bool(ctx.clock() - events[-1]["at"] >= timedelta(hours=every_hours))
