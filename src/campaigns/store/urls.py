"""Database URLs as users give them: parsed once, shown only with the password masked.

`shown(url)` is what any message, log or report may print; `recorded(url)` is what a
campaign directory may keep (no password at all: libpq finds it in PGPASSWORD or
~/.pgpass, or a later `--db-url` supplies it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL

from campaigns.core.secrets import mask_passwords as mask_text
from campaigns.core.secrets import mask_unparsed
from campaigns.errors import InputError


def parse(url: str) -> URL:
    """The URL, or InputError (exit 2) naming what is wrong with it (password masked)."""
    try:
        return sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise InputError(
            f"'{mask_unparsed(url)}' is not a database URL. Use an SQLAlchemy URL such as "
            "sqlite:////path/to/campaign.db or "
            "postgresql+psycopg://user@host:5432/database (password in ~/.pgpass or "
            "PGPASSWORD)."
        ) from None


def shown(url: str | URL) -> str:
    """The URL with its password replaced by ***: the only form ever printed."""
    if not isinstance(url, str):
        return url.render_as_string(hide_password=True)
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return mask_unparsed(url)


def recorded(url: str | URL) -> str:
    """The URL without its password, as a campaign directory may record it."""
    parsed = sa.engine.make_url(url) if isinstance(url, str) else url
    return parsed._replace(password=None).render_as_string(hide_password=False)


def is_server(url: str) -> bool:
    """True for a database server (PostgreSQL, ...), False for an SQLite file."""
    return not str(url).startswith("sqlite")


__all__ = ["is_server", "mask_text", "parse", "recorded", "shown"]
