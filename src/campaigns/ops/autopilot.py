"""`autopilot`: keep a campaign going to the end with nobody watching.

`start` installs a recurring tick through the backend (scrontab or a self-queueing
batch job on Slurm, a detached ticker process locally) and runs the first tick at once.
Each tick does what a person does with `monitor --submit`: reconcile, submit due
retries, top the queue up, notify; it logs one line to `logs/autopilot.log`, and when
every job is final it removes the autopilot. Ticks never overlap: a tick that finds the
campaign lock held logs that it skipped. A tick killed mid-way loses nothing (the store
step is one transaction) and the next tick carries on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from campaigns.core.times import iso, parse_iso
from campaigns.errors import LockedError
from campaigns.node.files import write_atomic
from campaigns.ops import monitor
from campaigns.ops.context import Context
from campaigns.scheduler.base import TickJob

#: Seconds between ticks unless `--interval` says otherwise.
DEFAULT_INTERVAL = 300.0


@dataclass(frozen=True)
class AutopilotReport:
    """Where the autopilot stands."""

    active: bool
    method: str | None
    how: str | None  # how it runs, in words
    interval: float | None
    installed_at: datetime | None
    last_tick: str | None  # the last line of logs/autopilot.log
    log: str
    next_tick: datetime | None = None  # about when the next tick runs, while active

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "active": self.active,
            "method": self.method,
            "how": self.how,
            "interval_seconds": self.interval,
            "installed_at": iso(self.installed_at),
            "last_tick": self.last_tick,
            "next_tick": iso(self.next_tick),
            "log": self.log,
        }


def folder(ctx: Context) -> Path:
    """logs/autopilot/: the tick's scripts, state and output."""
    return ctx.layout.logs / "autopilot"


def log_file(ctx: Context) -> Path:
    """One line per tick."""
    return ctx.layout.logs / "autopilot.log"


def tick_job(ctx: Context, interval: float, method: str | None = None) -> TickJob:
    """The recurring command: one tick of this campaign, from any directory."""
    digest = hashlib.sha256(str(ctx.layout.root).encode()).hexdigest()[:8]
    argv = [
        ctx.spec.machine.python or sys.executable,
        "-m",
        "campaigns",
        "autopilot",
        str(ctx.config_path.resolve()),
        "--tick",
        "--root",
        str(ctx.layout.root.parent),
    ]
    resources = ctx.expansion.groups[0].resources
    options = tuple(
        (name, str(getattr(resources, name)))
        for name in ("account", "partition", "qos")
        if getattr(resources, name)
    )
    tag = f"{ctx.spec.slug[:30]}-{digest}"
    return TickJob(tag, tuple(argv), interval, folder(ctx), options, method)


def start(
    ctx: Context,
    backend: str | None = None,
    interval: float | None = None,
    method: str | None = None,
) -> AutopilotReport:
    """Run a first tick now, then install the recurring one (`method`: a backend's way to
    prefer, such as Slurm's `batch` over `scrontab`)."""
    name = ctx.backend(backend or ctx.store.campaign().get("backend"))
    every = interval or DEFAULT_INTERVAL
    job = tick_job(ctx, every, method)
    job.folder.mkdir(parents=True, exist_ok=True)
    job.stop_file.unlink(missing_ok=True)
    finished = tick(ctx, backend=name)
    if finished:
        return status(ctx)
    pilot = ctx.scheduler(name).autopilot()
    how = pilot.install(job)
    state = {
        "backend": name,
        "method": pilot.method,
        "how": how,
        "interval": every,
        "prefer": method,
        "installed_at": iso(ctx.clock()),
        "tag": job.tag,
    }
    write_atomic(job.folder / "state.json", json.dumps(state, indent=1) + "\n")
    _log(ctx, f"autopilot installed: {how}")
    return status(ctx)


def tick(ctx: Context, backend: str | None = None) -> bool:
    """One tick (skipped if another manager holds the lock); True when every job is final."""
    try:
        with ctx.lock():
            report, done = monitor.step(ctx, resubmit=True, backend=backend)
    except LockedError:
        _log(ctx, "skipped: another manager holds the campaign lock")
        return False
    counts = " ".join(f"{k} {v}" for k, v in report.counts.items() if v)
    breaker = "; circuit breaker OPEN" if report.breaker_open_since else ""
    _log(ctx, f"{counts}{breaker}; {', '.join(done) or 'nothing new'}")
    if report.finished:
        stop(ctx, f"campaign finished ({report.outcome})")
        return True
    return False


def stop(ctx: Context, reason: str = "stopped by the user") -> AutopilotReport:
    """Remove the recurring tick (a tick running now may still finish)."""
    state = _state(ctx)
    job = _installed(ctx, state)
    job.folder.mkdir(parents=True, exist_ok=True)
    job.stop_file.touch()
    if state.get("backend"):
        ctx.scheduler(str(state["backend"])).autopilot().remove(job)
    _log(ctx, f"autopilot removed: {reason}")
    return status(ctx)


def status(ctx: Context) -> AutopilotReport:
    """Installed or not, how, and what the last tick did."""
    state = _state(ctx)
    job = _installed(ctx, state)
    active = False
    if state.get("backend") and not job.stop_file.exists():
        active = ctx.scheduler(str(state["backend"])).autopilot().active(job)
    try:
        lines = log_file(ctx).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    last = parse_iso(lines[-1].split(" ", 1)[0]) if lines else None
    interval = state.get("interval")
    return AutopilotReport(
        next_tick=last + timedelta(seconds=interval) if active and last and interval else None,
        active=active,
        method=state.get("method"),
        how=state.get("how"),
        interval=state.get("interval"),
        installed_at=parse_iso(state.get("installed_at")),
        last_tick=lines[-1] if lines else None,
        log=str(log_file(ctx)),
    )


def _installed(ctx: Context, state: dict[str, Any]) -> TickJob:
    """The tick as `start` installed it (from its recorded state)."""
    return tick_job(ctx, float(state.get("interval") or DEFAULT_INTERVAL), state.get("prefer"))


def _state(ctx: Context) -> dict[str, Any]:
    """What `start` recorded (empty when it never ran)."""
    ctx.store  # noqa: B018 -- InputError naming `init` when the campaign does not exist
    try:
        data = json.loads((folder(ctx) / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _log(ctx: Context, line: str) -> None:
    """Append one line to logs/autopilot.log."""
    path = log_file(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{iso(ctx.clock())} {line}\n")
