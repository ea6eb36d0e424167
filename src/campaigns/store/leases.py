"""The manager lease of a campaign on a server database: one row per campaign.

A lease is held by a random token (with a description of its holder: host, pid,
command) until `expires_at`; the holder renews it with heartbeats. Taking it is a
compare-and-set in one transaction (the row locked with SELECT ... FOR UPDATE): it
succeeds when the lease is free, expired, or already ours. How long a lease lasts and
when to renew it are the caller's decisions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.store.base import Database
from campaigns.store.schema import leases_table


class Leases(Database):
    """Take, renew, read and release a campaign's lease."""

    def take_lease(
        self,
        token: str,
        holder: str,
        now: datetime,
        expires_at: datetime,
        dead: str | None = None,
    ) -> dict[str, Any] | None:
        """Take the lease for `token` until `expires_at`; None on success, else the live
        lease that another holder has (its row: token, holder, heartbeat_at, expires_at).

        `dead`: the token of a holder the caller knows has died; its lease is taken at once.
        """
        mine = leases_table.c.campaign_id == self.cid
        with self.transaction() as conn:
            row = conn.execute(sa.select(leases_table).where(mine).with_for_update()).mappings()
            found = row.first()
            current: dict[str, Any] = dict(found) if found else {"token": None, "expires_at": None}
            if found is None:  # a campaign copied in without its row
                conn.execute(leases_table.insert().values(campaign_id=self.cid))
            live = current["expires_at"] is not None and current["expires_at"] > now
            if current["token"] not in (None, token, dead) and live:
                return current
            conn.execute(
                leases_table.update()
                .where(mine)
                .values(
                    token=token,
                    holder=holder,
                    acquired_at=now,
                    heartbeat_at=now,
                    expires_at=expires_at,
                )
            )
        return None

    def renew_lease(self, token: str, now: datetime, expires_at: datetime) -> bool:
        """A heartbeat: push our lease's expiry out; False if the lease is no longer ours."""
        with self.transaction() as conn:
            result = conn.execute(
                leases_table.update()
                .where(leases_table.c.campaign_id == self.cid)
                .where(leases_table.c.token == token)
                .values(heartbeat_at=now, expires_at=expires_at)
            )
        return bool(result.rowcount == 1)

    def release_lease(self, token: str) -> None:
        """Give our lease back (nothing happens if another holder took it meanwhile)."""
        with self.transaction() as conn:
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
