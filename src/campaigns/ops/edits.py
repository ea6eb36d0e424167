"""A campaign file edited after `init`: what `init --force` would do, and telling it once.

The campaign keeps running as recorded (see `Context`); the autopilot's tick says so in
its log line every time and, once per edit, logs and notifies what changed and what
`init --force` would do, so an edit never stalls a campaign silently.
"""

from __future__ import annotations

from campaigns.errors import InputError
from campaigns.ops.context import Context
from campaigns.ops.init import check_adoption, job_rows

#: The event that remembers which edit was already told (its message starts with the digest).
EVENT = "config_edited"


def forecast(ctx: Context) -> str:
    """What `init --force` would do with the file as written now: jobs added, or its refusal."""
    try:
        view = ctx.as_written()
        jobs = list(job_rows(view.expansion, view.spec.config_hash))
        existing = ctx.store.jobs(columns=["key", "output", "state"])
        check_adoption(existing, jobs)
    except InputError as exc:
        return f"`init --force` would refuse: {str(exc).splitlines()[0]}"
    known = {row["key"] for row in existing}
    added = sum(1 for row in jobs if row["key"] not in known)
    return (
        f"`init --force` would adopt it: {added} jobs added, every existing job keeping its "
        "state; jobs submitted from then on run as the file says"
    )


def untold(ctx: Context) -> str | None:
    """The message to log and notify when this edit was not told yet (None: no edit, or told)."""
    edit = ctx.edit
    if edit is None:
        return None
    told = ctx.store.events(1, kinds=[EVENT])
    if told and told[-1]["message"].startswith(f"{edit.digest}:"):
        return None
    changes = "; ".join(edit.changes[:8]) + (" ..." if len(edit.changes) > 8 else "")
    what = str(edit.error).splitlines()[0] if edit.error is not None else changes
    message = (
        f"{edit.path} changed since `init` ({what}); the autopilot keeps running the campaign "
        f"as recorded in {ctx.layout.config_file}. {forecast(ctx)}"
    )
    ctx.store.add_event(EVENT, f"{edit.digest}: {message}", ctx.clock())
    return message
