"""The real PostgreSQL the `postgres` tests use (`bash scripts/dev/postgres.sh up`).

Each test gets its own schema in the test database (the URL's `options` set its
search_path), dropped afterwards, so tests never see each other's campaigns.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

#: The server `scripts/dev/postgres.sh up` starts (override with CAMPAIGNS_TEST_POSTGRES_URL).
POSTGRES_URL = os.environ.get(
    "CAMPAIGNS_TEST_POSTGRES_URL",
    "postgresql+psycopg://campaigns:campaigns@127.0.0.1:5432/campaigns_test",
)
REQUIRE_POSTGRES = os.environ.get("CAMPAIGNS_REQUIRE_POSTGRES") == "1" or bool(os.environ.get("CI"))
_reason: list[str] = []


def postgres_missing() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when the server answers."""
    if _reason:
        return _reason[0] or None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _reason.append("psycopg is not installed: pip install -e '.[postgres]'")
        return _reason[0]
    engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    try:
        with engine.connect():
            pass
        _reason.append("")
    except sa.exc.OperationalError as exc:
        _reason.append(
            f"no PostgreSQL at {sa.engine.make_url(POSTGRES_URL)!r} ({exc.orig}); start one "
            "with `bash scripts/dev/postgres.sh up`"
        )
    finally:
        engine.dispose()
    return _reason[0] or None


def require_postgres() -> None:
    """Skip (or, where PostgreSQL is required, fail) when there is no server."""
    reason = postgres_missing()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required here: {reason}")
        pytest.skip(reason)


def with_search_path(url: str, schema: str) -> str:
    """`url` with every connection's search_path set to `schema`."""
    parsed = sa.engine.make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose tables land in a new, empty schema (dropped on exit)."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(POSTGRES_URL, schema)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()


def password() -> str:
    """The password of the test server's URL (for PGPASSWORD)."""
    return sa.engine.make_url(POSTGRES_URL).password or ""
