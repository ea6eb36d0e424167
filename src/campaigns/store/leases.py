"""The manager lease of a campaign on a server database: one row per campaign.

A lease is held by a random token (with a description of its holder: host, pid,
command) until `expires_at`; the holder renews it with heartbeats. Taking it is a
compare-and-set in one transaction (the row locked with SELECT ... FOR UPDATE): it
succeeds when the lease is free, expired, or already ours, and bumps the lease's
fencing number whenever it changes hands (`store.fence`). Every time is the database
server's: a login node whose clock runs ahead cannot take a lease that is still live.
How long a lease lasts and when to renew it are the caller's decisions.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.store.base import Database
from campaigns.store.fence import Fence, utc_now
from campaigns.store.schema import leases_table


class Leases(Database):
    """Take, renew, read and release a campaign's lease."""

    def take_lease(
        self, token: str, holder: str, seconds: float, dead: str | None = None
    ) -> dict[str, Any]:
        """Take the lease for `token` for `seconds` (by the database's clock); the lease row
        as it stands afterwards (token, holder, fence, heartbeat_at, expires_at, now): ours
        when its token is `token`, else the live lease of another holder.

        `dead`: the token of a holder the caller knows has died; its lease is taken at once.
        """
        mine = leases_table.c.campaign_id == self.cid
        with self.transaction(fenced=False) as conn:
            query = sa.select(leases_table, utc_now().label("db_now")).where(mine)
            found = conn.execute(query.with_for_update()).mappings().first()
            if found is None:  # a campaign copied in without its row
                conn.execute(leases_table.insert().values(campaign_id=self.cid))
                found = conn.execute(query.with_for_update()).mappings().one()
            current = dict(found)
            now = current["now"] = current.pop("db_now")
            live = current["expires_at"] is not None and current["expires_at"] > now
            if current["token"] not in (None, token, dead) and live:
                return current
            fence = int(current["fence"]) + (current["token"] != token)
            values = {
                "token": token,
                "holder": holder,
                "heartbeat_at": now,
                "expires_at": now + timedelta(seconds=seconds),
                "fence": fence,
            }
            if current["token"] != token:
                values["acquired_at"] = now
            conn.execute(leases_table.update().where(mine).values(**values))
        return {**current, **values}

    def renew_lease(self, token: str, seconds: float) -> bool:
        """A heartbeat: push our lease's expiry out (from the database's now); False if the
        lease is no longer ours."""
        with self.transaction(fenced=False) as conn:
            now = conn.execute(sa.select(utc_now())).scalar_one()
            result = conn.execute(
                leases_table.update()
                .where(leases_table.c.campaign_id == self.cid)
                .where(leases_table.c.token == token)
                .values(heartbeat_at=now, expires_at=now + timedelta(seconds=seconds))
            )
        return bool(result.rowcount == 1)

    def release_lease(self, token: str) -> None:
        """Give our lease back (nothing happens if another holder took it meanwhile)."""
        with self.transaction(fenced=False) as conn:
            conn.execute(
                leases_table.update()
                .where(leases_table.c.campaign_id == self.cid)
                .where(leases_table.c.token == token)
                .values(token=None, holder=None, expires_at=None)
            )

    def lease(self) -> dict[str, Any] | None:
        """The campaign's lease row, if any holder ever took it."""
        with self.reading() as conn:
            row = (
                conn.execute(sa.select(leases_table).where(leases_table.c.campaign_id == self.cid))
                .mappings()
                .first()
            )
        return dict(row) if row is not None and row["token"] is not None else None

    def fence_with(self, lease: dict[str, Any] | None) -> Fence | None:
        """Check every later write against `lease` (a row `take_lease` gave us); None: stop."""
        self.fence = None if lease is None else Fence(self.cid, lease["token"], lease["fence"])
        return self.fence
