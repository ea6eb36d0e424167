"""`cancel`: cancel the campaign's queued and running jobs, one call per backend."""

from __future__ import annotations

from campaigns.ops.context import Context
from campaigns.ops.reconcile import recover_intents
from campaigns.ops.reports import CancelReport


def cancel(ctx: Context) -> CancelReport:
    """Cancel every open array, then mark its jobs cancelled (the caller holds the lock)."""
    recover_intents(ctx)
    store = ctx.store
    open_subs = store.submissions(states=["submitted"])
    by_backend: dict[str, list[str]] = {}
    for sub in open_subs:
        by_backend.setdefault(sub["backend"], []).append(sub["scheduler_id"])
    for name, ids in by_backend.items():
        ctx.scheduler(name).cancel(ids)
    n = store.cancel_open([s["id"] for s in open_subs], ctx.clock())
    return CancelReport(n, [s["scheduler_id"] for s in open_subs])
