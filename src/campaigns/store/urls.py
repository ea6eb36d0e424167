"""Database URLs as users give them: parsed once, shown only with the password masked.

`shown(url)` is what any message, log or report may print; `recorded(url)` is what a
campaign directory may keep (no password at all: libpq finds it in PGPASSWORD or
~/.pgpass, or a later `--db-url` supplies it). Both know every place a URL may carry a
password: `user:PASSWORD@`, and query settings such as `?password=` or `sslpassword=`.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL

from campaigns.core.secrets import is_secret_key, mask_unparsed, secrets_in
from campaigns.core.secrets import mask_passwords as mask_text
from campaigns.errors import InputError


def parse(url: str) -> URL:
    """The URL, or InputError (exit 2) naming what is wrong with it (password masked)."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise InputError(
            f"'{mask_unparsed(url)}' is not a database URL. Use an SQLAlchemy URL such as "
            "sqlite:////path/to/campaign.db or "
            "postgresql+psycopg://user@host:5432/database (password in ~/.pgpass or "
            "PGPASSWORD)."
        ) from None
    if parsed.host and "@" in parsed.host:  # part of the password would pass for the host
        raise InputError(
            f"'{mask_unparsed(url)}' has an '@' in its password: write it as %40, or better "
            "leave the password out of the URL and keep it in ~/.pgpass or PGPASSWORD."
        )
    return parsed


def shown(url: str | URL) -> str:
    """The URL with every password replaced by ***: the only form ever printed. Query
    settings that hold a secret (`?password=`, `sslpassword`, ...) are masked too."""
    try:
        parsed = sa.engine.make_url(url) if isinstance(url, str) else url
    except (sa.exc.ArgumentError, ValueError):
        return mask_unparsed(str(url))
    return mask_text(parsed.render_as_string(hide_password=True))


def recorded(url: str | URL) -> str:
    """The URL without its password, as a campaign directory may record it: no user-part
    password and no query setting that holds a secret."""
    parsed = sa.engine.make_url(url) if isinstance(url, str) else url
    secret = [key for key in parsed.query if is_secret_key(key)]
    bare = parsed._replace(password=None).difference_update_query(secret)
    return bare.render_as_string(hide_password=False)


def secrets(url: str) -> list[str]:
    """The secret values in `url` (its password, secret query settings), raw and decoded."""
    found = secrets_in(url)
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return found
    values = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if is_secret_key(key):
            values += [value] if isinstance(value, str) else list(value)
    return sorted({str(v) for v in [*found, *values] if v}, key=len, reverse=True)


def is_server(url: str) -> bool:
    """True for a database server (PostgreSQL, ...), False for an SQLite file."""
    return not str(url).startswith("sqlite")


__all__ = ["is_server", "mask_text", "parse", "recorded", "secrets", "shown"]
