"""Queries across every campaign of a runs database: what `campaigns` and `export --all` show.

Reads only, a few GROUP BY queries whatever the number of jobs; the schema revision is
checked first, like every command's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from campaigns.store import schema as db
from campaigns.store.base import Database
from campaigns.store.version import require_current, revision


def summaries(database: Database) -> list[dict[str, Any]]:
    """One dict per campaign, oldest first: slug, name, version, created_at, backend,
    counts (jobs per state), node_hours (attempts' run time x the nodes they held) and
    last_activity (the newest event)."""
    with database.reading() as conn:
        if revision(conn) is None:
            return []
        require_current(conn, database.shown)
        campaigns = conn.execute(
            sa.select(
                db.campaigns_table.c.id,
                db.campaigns_table.c.slug,
                db.campaigns_table.c.name,
                db.campaigns_table.c.version,
                db.campaigns_table.c.created_at,
                db.campaigns_table.c.backend,
            ).order_by(db.campaigns_table.c.id)
        ).mappings()
        out = {row["id"]: {**row, "counts": {}, "node_hours": 0.0} for row in campaigns}
        jobs = db.jobs_table
        for cid, state, n in conn.execute(
            sa.select(jobs.c.campaign_id, jobs.c.state, sa.func.count()).group_by(
                jobs.c.campaign_id, jobs.c.state
            )
        ):
            out[cid]["counts"][state] = int(n)
        for cid, hours in _node_hours(conn).items():
            out[cid]["node_hours"] = hours
        events = db.events_table
        for cid, last in conn.execute(
            sa.select(events.c.campaign_id, sa.func.max(events.c.at)).group_by(events.c.campaign_id)
        ):
            out[cid]["last_activity"] = last
    for row in out.values():
        row.setdefault("last_activity", None)
        row["total"] = sum(row["counts"].values())
        del row["id"]
    return list(out.values())


def _seconds(conn: Connection, start: Any, end: Any) -> Any:
    """SQL for the seconds from `start` to `end`, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def _node_hours(conn: Connection) -> dict[int, float]:
    """Per campaign: the run time of every attempt that started and ended, times its nodes."""
    attempts, jobs = db.attempts_table, db.jobs_table
    seconds = sa.func.sum(_seconds(conn, attempts.c.started_at, attempts.c.ended_at))
    query = (
        sa.select(attempts.c.campaign_id, jobs.c.group_id, seconds)
        .join(
            jobs,
            sa.and_(jobs.c.campaign_id == attempts.c.campaign_id, jobs.c.id == attempts.c.job_id),
        )
        .where(attempts.c.started_at.is_not(None), attempts.c.ended_at.is_not(None))
        .group_by(attempts.c.campaign_id, jobs.c.group_id)
    )
    nodes = {
        (cid, gid): int(json.loads(resources).get("nodes", 1))
        for cid, gid, resources in conn.execute(
            sa.select(
                db.groups_table.c.campaign_id, db.groups_table.c.id, db.groups_table.c.resources
            )
        )
    }
    hours: dict[int, float] = defaultdict(float)
    for cid, gid, total in conn.execute(query):
        hours[cid] += float(total or 0) / 3600 * nodes.get((cid, gid), 1)
    return dict(hours)


def all_jobs(database: Database, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Every job of every campaign (`columns` of the jobs table, after `campaign`,
    `campaign_name` and `campaign_version`), by campaign then job id."""
    campaigns, jobs = db.campaigns_table, db.jobs_table
    query = (
        sa.select(
            campaigns.c.slug.label("campaign"),
            campaigns.c.name.label("campaign_name"),
            campaigns.c.version.label("campaign_version"),
            *[jobs.c[c] for c in columns],
        )
        .join(campaigns, campaigns.c.id == jobs.c.campaign_id)
        .order_by(jobs.c.campaign_id, jobs.c.id)
    )
    with database.reading() as conn:
        if revision(conn) is None:
            return []
        require_current(conn, database.shown)
        return [dict(r) for r in conn.execute(query).mappings()]
