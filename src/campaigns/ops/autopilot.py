"""`autopilot`: keep a campaign going to the end with nobody watching.

`start` installs a recurring tick through the backend (scrontab or a self-queueing
batch job on Slurm, a detached ticker process locally) and runs the first tick at once.
Each tick does what a person does with `monitor --submit`: reconcile, submit due
retries, top the queue up, notify; it logs one line to `logs/autopilot.log`, and when
every job is final it removes the autopilot. Ticks never overlap: a tick that finds the
campaign lock held logs that it skipped. A tick killed mid-way loses nothing (the store
step is one transaction) and the next tick carries on.

Nothing stops it silently: a tick that fails logs why (`tick failed: ...`) before it exits;
a campaign file edited after `init` is run as recorded, and the first tick after the edit
logs and notifies what changed and what `init --force` would do; each tick asks the backend
to keep the next one coming (a broken batch chain is queued again). `status` reports failed
ticks, ticks missed (none logged for longer than the interval allows), ticks waiting in the
queue, and the edit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from campaigns.core.secrets import mask_passwords
from campaigns.core.ticks import tick_options
from campaigns.core.times import iso, parse_iso
from campaigns.errors import CampaignError, LockedError, SchedulerError
from campaigns.node.files import write_atomic
from campaigns.ops import edits, monitor, notify
from campaigns.ops.context import Context
from campaigns.scheduler.base import TickJob

#: Seconds between ticks unless `--interval` says otherwise.
DEFAULT_INTERVAL = 300.0
#: A tick is missed when none was logged for the interval plus this much (or twice the
#: interval, if longer): a tick takes time, and scrontab runs on whole minutes.
MISSED_AFTER_S = 120.0
#: Where each way of ticking writes the tick's own output (tracebacks, early errors).
OUTPUT = {"process": "ticker.out", "scrontab": "scrontab.out", "batch": "batch.out"}
FAILED = "tick failed: "


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
    failed_ticks: int = 0  # the latest ticks that failed, in a row
    missed_ticks: int = 0  # ticks due since the last one logged, while active
    problems: list[str] = field(default_factory=list)  # what keeps ticks from working, in words

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
            "failed_ticks": self.failed_ticks,
            "missed_ticks": self.missed_ticks,
            "problems": self.problems,
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
    options = tick_options(ctx.spec.machine, ctx.expansion.groups[0].resources)
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
    finished = tick(ctx, backend=name, keep=False)  # nothing installed yet to keep going
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


def tick(ctx: Context, backend: str | None = None, keep: bool = True) -> bool:
    """One tick (skipped if another manager holds the lock); True when every job is final.
    `keep`: first ask the backend to keep the next tick coming (a broken chain queued again).
    A tick that fails says why in the log before the error ends it."""
    try:
        return _tick(ctx, backend, keep)
    except Exception as exc:
        # Where the user looks: without this line the log just stops (the error itself goes
        # to the tick's own output file, which nobody reads), and `status` counts it.
        _log(ctx, FAILED + _failure(exc))
        raise


def _tick(ctx: Context, backend: str | None, keep: bool) -> bool:
    notes = _keep_going(ctx) if keep else []
    if ctx.edit is not None:
        notes.append("the campaign file changed since `init`: running the campaign as recorded")
    try:
        with ctx.lock():
            report, done = monitor.step(ctx, resubmit=True, backend=backend)
            told = edits.untold(ctx)
            if told:
                _log(ctx, f"campaign file changed: {told}")
                if ctx.spec.notify.command:
                    done.append(f"notified {notify.send(ctx, 'config_changed', report, told)}")
    except LockedError:
        _log(ctx, "; ".join(["skipped: another manager holds the campaign lock", *notes]))
        return False
    counts = " ".join(f"{k} {v}" for k, v in report.counts.items() if v)
    breaker = "; circuit breaker OPEN" if report.breaker_open_since else ""
    _log(ctx, "; ".join([f"{counts}{breaker}", ", ".join(done) or "nothing new", *notes]))
    if report.finished:
        stop(ctx, f"campaign finished ({report.outcome})")
        return True
    return False


def _keep_going(ctx: Context) -> list[str]:
    """Ask the installed autopilot to keep the next tick coming; what it did or could not."""
    state = _state(ctx)
    if not state.get("backend"):
        return []  # a tick run by hand, with no autopilot installed
    job = dataclasses.replace(_installed(ctx, state), method=state.get("method"))
    try:
        said = ctx.scheduler(str(state["backend"])).autopilot().keep(job)
    except SchedulerError as exc:
        return [str(exc)]
    return [said] if said else []


def _failure(exc: Exception) -> str:
    """A failed tick's error on one line, with the exit code it ends with."""
    if isinstance(exc, CampaignError):
        text, code = str(exc), exc.exit_code
    else:
        text = f"{type(exc).__name__}: {exc} (a bug; the traceback is in the tick's output)"
        code = 1
    return f"{' '.join(mask_passwords(text).split())} (exit {code})"


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
    """Installed or not, how, what the last tick did, and what keeps ticks from working."""
    state = _state(ctx)
    job = _installed(ctx, state)
    now, active, problems = ctx.clock(), False, []
    stopped = job.stop_file.exists()
    if state.get("backend") and not stopped:
        pilot = ctx.scheduler(str(state["backend"])).autopilot()
        active = pilot.active(job)
        try:
            problems += pilot.health(dataclasses.replace(job, method=state.get("method")), now)
        except SchedulerError as exc:  # the rest of the report still stands
            problems.append(f"could not ask the scheduler about the ticks: {exc}")
    lines = _tail(log_file(ctx))
    last = parse_iso(lines[-1].split(" ", 1)[0]) if lines else None
    interval = state.get("interval")
    failed = _failed_in_a_row(lines)
    output = job.folder / OUTPUT.get(str(state.get("method")), "ticker.out")
    if failed:
        said = lines[-1].split(FAILED, 1)[-1] if FAILED in lines[-1] else ""
        problems.append(f"the last {failed} ticks failed" if failed > 1 else "the last tick failed")
        problems[-1] += f": {said}" if said else f" (see {log_file(ctx)})"
    missed = 0
    if active and last and interval:
        late = (now - last).total_seconds() - interval
        if late > max(MISSED_AFTER_S, interval):
            missed = max(1, int(late // interval))
            problems.append(
                f"no tick logged since {iso(last)}: about {missed} missed (one is due every "
                f"{round(interval)} s); the tick's own output is in {output}"
                + (f", last saying: {said_last}" if (said_last := _last_line(output)) else "")
            )
    if state.get("backend") and not stopped and not active:
        problems.append(
            "it ended without being stopped (nothing will tick): run `autopilot "
            f"{ctx.config_path}` to start it again"
        )
    if ctx.edit is not None:
        problems.append(
            f"{ctx.edit.describe()}: ticks run the campaign as recorded until `init --force`"
        )
    return AutopilotReport(
        next_tick=last + timedelta(seconds=interval) if active and last and interval else None,
        active=active,
        method=state.get("method"),
        how=state.get("how"),
        interval=state.get("interval"),
        installed_at=parse_iso(state.get("installed_at")),
        last_tick=lines[-1] if lines else None,
        log=str(log_file(ctx)),
        failed_ticks=failed,
        missed_ticks=missed,
        problems=problems,
    )


def _failed_in_a_row(lines: list[str]) -> int:
    """How many of the latest ticks failed, in a row (other lines in between ignored)."""
    count = 0
    for line in reversed(lines):
        text = line.split(" ", 1)[-1]
        if text.startswith(FAILED):
            count += 1
        elif not text.startswith(("autopilot ", "campaign file changed")):
            break
    return count


def _tail(path: Path, size: int = 16384) -> list[str]:
    """The last lines of `path` (a bounded read: the log grows by a line per tick)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - size))
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.splitlines()
    return lines[1:] if len(text) >= size and len(lines) > 1 else lines


def _last_line(path: Path) -> str:
    """The last non-empty line of `path`, shortened ("" when there is none)."""
    lines = [line for line in _tail(path, 4096) if line.strip()]
    return " ".join(lines[-1].split())[:300] if lines else ""


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
