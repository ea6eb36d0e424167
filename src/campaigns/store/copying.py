"""Copy one campaign, every row of it, from one runs database to another, verified.

The rows are read in chunks and written in bulk (executemany) in one transaction of the
target; the row counts of every table are compared before that transaction commits, so
a copy is whole or absent. Job, group and submission ids stay as they are (they count
within the campaign); attempts and events get the target's row ids, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.errors import InputError, StoreError
from campaigns.store.base import Database
from campaigns.store.schema import CAMPAIGN_TABLES, campaigns_table, leases_table
from campaigns.store.version import prepare

#: Rows per executemany while copying.
CHUNK = 10_000


def copy_campaign(source: Database, target: Database, *, replace: bool = False) -> dict[str, int]:
    """Copy `source`'s campaign into `target`; returns the rows copied per table.

    InputError if `target` already holds a campaign with that slug (unless `replace`:
    then its rows there are replaced). The caller holds the campaign's lock.
    """
    counts: dict[str, int] = {}
    with source.reading() as src, target.transaction() as dst:
        prepare(dst, target.shown)
        campaign = dict(
            src.execute(sa.select(campaigns_table).where(campaigns_table.c.id == source.cid))
            .mappings()
            .one()
        )
        slug = campaign.pop("slug")
        old = dst.execute(
            sa.select(campaigns_table.c.id).where(campaigns_table.c.slug == slug)
        ).scalar()
        if old is not None and not replace:
            raise InputError(
                f"{target.shown} already holds campaign '{slug}'; nothing was copied. Add "
                "--replace to overwrite it there."
            )
        if old is not None:
            delete_rows(dst, int(old))
        del campaign["id"]
        cid = int(
            dst.execute(
                campaigns_table.insert().values(slug=slug, **campaign)
            ).inserted_primary_key[0]  # type: ignore[index]
        )
        dst.execute(leases_table.insert().values(campaign_id=cid))
        for table in CAMPAIGN_TABLES:
            counts[table.name] = 0
            for chunk in _chunks(src, table, source.cid):
                dst.execute(table.insert(), [{**row, "campaign_id": cid} for row in chunk])
                counts[table.name] += len(chunk)
        copied = _counts(dst, cid)
        if copied != counts or _counts(src, source.cid) != counts:
            raise StoreError(
                f"copy of '{slug}' to {target.shown} did not verify (source {counts}, copied "
                f"{copied}); nothing was written there."
            )
    return counts


def _chunks(conn: Connection, table: sa.Table, campaign: int) -> Iterator[list[dict[str, Any]]]:
    """The campaign's rows of `table`, in id order, CHUNK at a time (row ids dropped where
    the target assigns its own)."""
    own_ids = "id" in table.c and table.c.id.autoincrement is True
    drop = {"campaign_id"} | ({"id"} if own_ids else set())
    query = (
        sa.select(table).where(table.c.campaign_id == campaign).order_by(*table.primary_key.columns)
    )
    result = conn.execution_options(yield_per=CHUNK).execute(query).mappings()
    for part in result.partitions(CHUNK):
        yield [_without(row, drop) for row in part]


def _without(row: Mapping[Any, Any], drop: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in drop}


def _counts(conn: Connection, campaign: int) -> dict[str, int]:
    """Rows per table of one campaign."""
    return {
        table.name: int(
            conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.campaign_id == campaign)
            ).scalar_one()
        )
        for table in CAMPAIGN_TABLES
    }


def delete_rows(conn: Connection, campaign: int) -> None:
    """Every row of one campaign, the campaign's own row last."""
    for table in (*reversed(CAMPAIGN_TABLES), leases_table):
        conn.execute(table.delete().where(table.c.campaign_id == campaign))
    conn.execute(campaigns_table.delete().where(campaigns_table.c.id == campaign))


def delete_campaign(database: Database) -> None:
    """Remove the campaign from `database` (after a verified copy elsewhere: `db copy --move`)."""
    with database.transaction() as conn:
        delete_rows(conn, database.cid)
