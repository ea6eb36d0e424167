"""`db upgrade` and `db copy`: a campaign's database brought up to date, or moved.

`db copy CONFIG --to URL` copies the campaign (jobs, attempts, submissions, events,
groups) into another database, verifies the row counts, and records the new location
in `metadata/database.json`, so later commands use it; the old copy stays (a backup)
unless `move`. `--to sqlite` names the campaign's own `metadata/campaign.db`: the way
back from a shared database, for archiving.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from campaigns.errors import InputError
from campaigns.ops import location
from campaigns.ops.context import Context
from campaigns.ops.lock import CampaignLock
from campaigns.store import Store
from campaigns.store.copying import copy_campaign, delete_campaign
from campaigns.store.migrate import upgrade
from campaigns.store.urls import shown


@dataclass(frozen=True)
class UpgradeReport:
    """What `db upgrade` did."""

    database: str  # the URL, password masked
    before: str | None  # the schema revision found (None: no schema yet)
    after: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class CopyReport:
    """What `db copy` did."""

    source: str  # URLs, passwords masked
    target: str
    rows: dict[str, int]  # per table, verified
    moved: bool  # the source's copy was deleted

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _require_initialised(ctx: Context) -> None:
    if not ctx.initialised():
        raise InputError(
            f"campaign not initialised: {ctx.layout.root} does not exist. Run "
            f"`init {ctx.config_path}` first."
        )


def upgrade_schema(ctx: Context) -> UpgradeReport:
    """Migrate the campaign's database to this version's schema (a no-op when current)."""
    _require_initialised(ctx)
    database = ctx.open_store()
    try:
        with CampaignLock(ctx.layout.lock_file):
            done = upgrade(database)
    finally:
        database.close()
    return UpgradeReport(database.shown, done.before, done.after)


def copy_to(ctx: Context, to: str, *, move: bool = False, replace: bool = False) -> CopyReport:
    """Copy the campaign into the database at `to` (`sqlite`: its own file) and use it there."""
    _require_initialised(ctx)
    target_url = ctx.layout.db_url() if to == "sqlite" else to
    target = Store(target_url, slug=ctx.spec.slug)  # a bad URL stops here
    if location.same(target_url, ctx.db_url):
        target.close()
        raise InputError(f"the campaign already lives in {shown(target_url)}; nothing to copy.")
    try:
        with ctx.lock():
            rows = copy_campaign(ctx.store, target, replace=replace)
            location.write_record(ctx.layout, target_url, ctx.clock(), moved_from=ctx.db_url)
            if move:
                delete_campaign(ctx.store)
    finally:
        target.close()
    return CopyReport(ctx.store.shown, target.shown, rows, move)
