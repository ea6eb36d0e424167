"""Every campaign of one runs database: the `campaigns` listing, `export --all`, and the
same as DataFrames for a notebook.

    from campaigns import RunsDatabase
    runs = RunsDatabase("postgresql+psycopg://me@dbhost/runs")
    runs.campaigns_frame()          # one row per campaign: counts, node-hours, last activity
    jobs = runs.jobs_frame()        # every job of every campaign
    jobs[jobs.state == "failed"].groupby("campaign_version").size()
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from campaigns.core.states import JobState
from campaigns.core.times import iso
from campaigns.errors import InputError
from campaigns.ops.export import JOB_COLUMNS, ExportReport, check_path, rows_frame, write_frame
from campaigns.ops.location import ENV_URL
from campaigns.store.base import Database
from campaigns.store.catalog import all_jobs, summaries

if TYPE_CHECKING:
    import pandas as pd

#: The columns `jobs_frame` puts before each job's own.
CAMPAIGN_COLUMNS = ("campaign", "campaign_name", "campaign_version")


@dataclass(frozen=True)
class CampaignSummary:
    """One campaign as `campaigns` lists it."""

    slug: str
    name: str
    version: str
    created_at: datetime
    backend: str | None
    total: int
    counts: dict[str, int]
    node_hours: float
    last_activity: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (times ISO-8601 UTC)."""
        return {
            "slug": self.slug,
            "name": self.name,
            "version": self.version,
            "created_at": iso(self.created_at),
            "backend": self.backend,
            "total": self.total,
            "counts": {s.value: self.counts.get(s.value, 0) for s in JobState},
            "node_hours": round(self.node_hours, 4),
            "last_activity": iso(self.last_activity) if self.last_activity else None,
        }


class RunsDatabase:
    """A runs database as a whole: its campaigns and all their jobs. Reads only."""

    def __init__(self, url: str | None = None) -> None:
        """`url`: an SQLAlchemy URL, else $CAMPAIGNS_DB_URL."""
        chosen = url or os.environ.get(ENV_URL)
        if not chosen:
            raise InputError(
                f"which database? Give --db-url URL (or set {ENV_URL}), e.g. "
                "postgresql+psycopg://me@dbhost/runs or sqlite:////path/to/campaign.db."
            )
        self.database = Database(chosen)
        self.shown = self.database.shown

    def campaigns(self) -> list[CampaignSummary]:
        """Every campaign, oldest first."""
        return [CampaignSummary(**row) for row in summaries(self.database)]

    def campaigns_frame(self) -> pd.DataFrame:
        """`campaigns()` as a DataFrame: one row per campaign, one column per state."""
        import pandas as pd

        rows = []
        for summary in self.campaigns():
            data = summary.to_dict()
            counts = data.pop("counts")
            rows.append({**data, **counts})
        frame = pd.DataFrame.from_records(rows)
        for name in ("created_at", "last_activity"):
            if name in frame:
                frame[name] = pd.to_datetime(frame[name], utc=True)
        return frame

    def jobs_frame(self) -> pd.DataFrame:
        """Every job of every campaign: the campaign's slug, name and version, then the
        columns of `status --export` (parameters of every campaign, empty where a
        campaign has no such parameter)."""
        return rows_frame(all_jobs(self.database, JOB_COLUMNS), leading=CAMPAIGN_COLUMNS)

    def export(self, path: str | os.PathLike[str]) -> ExportReport:
        """Write `jobs_frame()` to a .csv or .parquet file, atomically."""
        check_path(path)
        return write_frame(self.jobs_frame(), path)

    def close(self) -> None:
        """Release the connections."""
        self.database.close()
