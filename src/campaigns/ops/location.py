"""Where a campaign's database is: chosen once per command, recorded in its directory.

In order: `--db-url`; the location recorded in `metadata/database.json` (by `init` on a
server database, or by `db copy`); `outputs.db_url` in the campaign file; the
`CAMPAIGNS_DB_URL` environment variable (for campaigns not yet made, or made there);
else SQLite in `metadata/campaign.db`. The record never holds a password: libpq finds
it in `PGPASSWORD` or `~/.pgpass` (or give `--db-url` with it).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from campaigns.core.layout import Layout
from campaigns.errors import InputError
from campaigns.node.files import write_atomic
from campaigns.store.urls import recorded

#: The environment variable naming the group's runs database.
ENV_URL = "CAMPAIGNS_DB_URL"


def record_file(layout: Layout) -> Path:
    """The file that says where the campaign's database lives."""
    return layout.metadata / "database.json"


def resolve(explicit: str | None, layout: Layout, configured: str | None) -> str:
    """The database URL this command uses for the campaign at `layout`."""
    if explicit:
        return explicit
    kept = read_record(layout)
    if kept:
        return kept
    if configured:
        return configured
    shared = os.environ.get(ENV_URL)
    if shared and not layout.db_file.exists():  # a campaign in its own SQLite file stays there
        return shared
    return layout.db_url()


def read_record(layout: Layout) -> str | None:
    """The recorded location, if any."""
    path = record_file(layout)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}. Fix or remove the file.") from None
    url = data.get("url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        raise InputError(f"{path} names no database URL ('url'). Fix or remove the file.")
    return url


def write_record(layout: Layout, url: str, now: datetime, moved_from: str | None = None) -> None:
    """Record where the campaign lives now (the default SQLite file needs no record)."""
    path = record_file(layout)
    if url == layout.db_url():
        path.unlink(missing_ok=True)
        return
    record = {"url": recorded(url), "since": now.isoformat(timespec="seconds")}
    if moved_from:
        record["moved_from"] = recorded(moved_from)
    write_atomic(path, json.dumps(record, indent=1) + "\n")


def same(a: str, b: str) -> bool:
    """True when two URLs name the same database (passwords aside)."""
    return recorded(a) == recorded(b)
