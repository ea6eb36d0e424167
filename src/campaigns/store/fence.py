"""Fencing: while a manager holds a campaign's lease, each of its writes checks, inside its
own transaction, that the lease is still its own.

A lease carries a number, bumped each time it changes hands. The holder's store keeps a
`Fence` (campaign, token, number); every write transaction first reads the lease row
`FOR KEY SHARE` and goes on only if the row still carries that token and number and has
not expired by the database's clock; otherwise it raises `LeaseLostError` and writes
nothing. The row lock is one a taker's `SELECT ... FOR UPDATE` waits for and the
holder's own heartbeat (a plain UPDATE) does not: a lease never changes hands in the
middle of its holder's write. A heartbeat that failed stops the fence (`stop`), so the
manager stops before its next write without asking the database.

Times are the database server's (`utc_now`), never a login node's clock: two hosts whose
clocks disagree still agree on who holds a lease.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from campaigns.errors import LeaseLostError
from campaigns.store.schema import UTCDateTime, leases_table


class utc_now(FunctionElement[datetime]):  # noqa: N801 -- reads as the SQL it renders
    """The database server's current time, in UTC."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(utc_now, "postgresql")
def _utc_now_postgresql(element: utc_now, compiler: Any, **kw: Any) -> str:
    # `now()` is the transaction's start: one instant for every check in it.
    return "(now() AT TIME ZONE 'utc')"


@compiles(utc_now, "sqlite")
def _utc_now_sqlite(element: utc_now, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f', 'now')"


@compiles(utc_now)
def _utc_now_default(element: utc_now, compiler: Any, **kw: Any) -> str:
    return "CURRENT_TIMESTAMP"


@dataclass
class Fence:
    """The lease a store's writes must still hold."""

    campaign: int
    token: str
    number: int
    #: Why the holder gave up (a failed heartbeat); set from the heartbeat thread.
    stopped: str | None = None

    def stop(self, reason: str) -> None:
        """Refuse every later write (the heartbeat failed, or found the lease gone)."""
        self.stopped = reason

    def check(self, conn: Connection, shown: str) -> None:
        """Go on only while the lease is ours (locks its row until the caller's commit)."""
        if self.stopped is not None:
            raise LeaseLostError(_refused(shown, self.stopped))
        lease = leases_table.c
        row = conn.execute(
            sa.select(lease.token, lease.fence, lease.holder, lease.expires_at, utc_now())
            .where(lease.campaign_id == self.campaign)
            .with_for_update(key_share=True)
        ).first()
        if row is None:
            raise LeaseLostError(_refused(shown, "its lease row is gone"))
        token, number, holder, expires_at, now = row
        if token == self.token and number == self.number:
            if expires_at is not None and expires_at > now:
                return
            when = f"{expires_at:%Y-%m-%d %H:%M:%S}" if expires_at else "some time"
            raise LeaseLostError(
                _refused(shown, f"its lease expired at {when} UTC by the database's clock")
            )
        who = f"by {holder}" if token is not None else "and released"
        raise LeaseLostError(_refused(shown, f"its lease was taken over {who} (fence {number})"))


def _refused(shown: str, why: str) -> str:
    """The message of a write a manager may no longer make."""
    return (
        f"this manager stopped: {why}, so another manager may be working on the campaign in "
        f"{shown}. Its last step was not written (nothing was changed by it). Run `status`, "
        "then the command again if no other manager is running."
    )
