"""What `qa` found for each output, kept so that the next `qa` checks only what changed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.store.base import Database
from campaigns.store.schema import qa_results_table as table

#: The columns a caller hands `save_qa_results` (besides `checked_at`, which is `now`).
FIELDS = (
    "job_id",
    "attempt",
    "rules_hash",
    "output_size",
    "output_mtime_ns",
    "manifest_size",
    "manifest_mtime_ns",
    "ok",
    "problems",
    "sha256",
    "seconds",
)


class QAResults(Database):
    """The stored QA results of one campaign."""

    def qa_results(self) -> dict[int, dict[str, Any]]:
        """Job id -> its stored QA result (`problems` as a list)."""
        query = sa.select(*(table.c[name] for name in FIELDS)).where(
            table.c.campaign_id == self.cid
        )
        with self.reading() as conn:
            rows = conn.execute(query).all()
        out = {}
        for row in rows:
            record = dict(zip(FIELDS, row, strict=True))
            record["problems"] = json.loads(record["problems"])
            out[record["job_id"]] = record
        return out

    def save_qa_results(self, results: Sequence[Mapping[str, Any]], now: datetime) -> None:
        """Replace the stored results of these jobs, in one transaction."""
        if not results:
            return
        campaign = self.cid
        rows = [
            {
                **{name: r[name] for name in FIELDS},
                "problems": json.dumps(list(r["problems"])),
                "campaign_id": campaign,
                "checked_at": now,
            }
            for r in results
        ]
        delete = table.delete().where(
            table.c.campaign_id == campaign, table.c.job_id == sa.bindparam("old_job")
        )
        with self.transaction() as conn:
            conn.execute(delete, [{"old_job": r["job_id"]} for r in rows])
            conn.execute(table.insert(), rows)
