"""Schema migrations (Alembic): a campaign made by the previous release is refused until
`db upgrade`, then upgraded whole; the upgraded schema is exactly the one `init` makes."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from campaigns.errors import SchemaOutdatedError
from campaigns.store import SCHEMA_REVISION, Store
from campaigns.store.migrate import head, upgrade
from campaigns.store.schema import metadata
from test_cli_local import monitor_until_done, run, status_json

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "v1_campaign"
V1_DB = FIXTURE / "metadata" / "campaign.db"
V1_TABLES = ("meta", "campaign", "job_groups", "jobs", "submissions", "attempts", "events")


def v1_campaign(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the previous release's campaign: (its campaign file, the --root)."""
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE / "metadata", root / "v1_previous-release" / "metadata")
    config = tmp_path / "campaign.yaml"
    shutil.copy(FIXTURE / "campaign.yaml", config)
    return config, root


def dump(path: Path) -> list[str]:
    """The SQL that recreates an SQLite database: its schema and every row."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_the_schema_revision_is_the_head_of_the_migrations() -> None:
    assert head() == SCHEMA_REVISION


def test_a_campaign_of_the_previous_release_is_refused_then_upgraded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, root = v1_campaign(tmp_path)
    args = [str(config), "--root", str(root)]
    db_file = root / "v1_previous-release" / "metadata" / "campaign.db"
    before = dump(db_file)
    for command in (["status"], ["submit", "--backend", "local"], ["monitor", "--once"]):
        code, _, err = run([command[0], *args, *command[1:]], capsys)
        assert code == 2, (command, err)
        assert "older schema" in err and "run-campaign db upgrade CONFIG" in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert dump(db_file) == before  # refused means untouched

    code, out, err = run(["db", "upgrade", *args], capsys)
    assert code == 0, err
    assert f"from revision 0001 to {SCHEMA_REVISION}" in out
    code, out, _ = run(["db", "upgrade", *args], capsys)
    assert code == 0 and "nothing to do" in out

    report = status_json(config, root, capsys, "--verbose")
    assert report["counts"]["completed"] == 5 and report["counts"]["failed"] == 1
    jobs = {j["key"]: j for j in report["jobs"]}
    failed = jobs["realization=2,redshift=2.0"]
    assert failed["failure_class"] == "exit_code" and failed["attempts"] == 1
    assert jobs["realization=0,redshift=1.0"]["scheduler_id"].startswith("L")
    # The upgraded campaign goes on: the failed job is retried as attempt 2 (and fails again).
    code, out, err = run(["retry", *args, "--submit", "--ignore-backoff"], capsys)
    assert code == 0, err
    monitor_until_done(config, root, capsys)
    jobs = {j["key"]: j for j in status_json(config, root, capsys, "--verbose")["jobs"]}
    assert jobs["realization=2,redshift=2.0"]["attempts"] == 2
    store = Store(f"sqlite:///{db_file}")
    assert [s["id"] for s in store.submissions()] == [1, 2, 3]
    assert [e["kind"] for e in store.events(limit=3)][0] in {"retry", "intent", "submitted"}
    store.close()


def _v1_on(url: str) -> None:
    """The fixture's schema-1 tables and rows, recreated in the database at `url`."""
    source = sa.create_engine(f"sqlite:///{V1_DB}")
    old = sa.MetaData()
    old.reflect(source)
    for table in old.tables.values():  # SQLite's DATETIME, as SQLAlchemy wrote it on PostgreSQL
        for column in table.columns:
            if isinstance(column.type, sa.DateTime):
                column.type = sa.DateTime()
    target = sa.create_engine(url)
    with source.connect() as src, target.begin() as dst:
        old.create_all(dst)
        for name in V1_TABLES:
            table = old.tables[name]
            rows = [dict(r) for r in src.execute(sa.select(table)).mappings()]
            dst.execute(table.insert(), rows)
    source.dispose()
    target.dispose()


def test_the_upgraded_schema_is_the_one_init_makes(db_url: str) -> None:
    _v1_on(db_url)
    store = Store(db_url)
    with pytest.raises(SchemaOutdatedError, match="db upgrade"):
        store.counts()
    done = upgrade(store)
    assert (done.before, done.after, done.changed) == ("0001", SCHEMA_REVISION, True)
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []
    store = Store(db_url)
    assert store.counts() == {"completed": 5, "failed": 1}
    assert store.campaign()["slug"] == "v1_previous-release"
    assert len(store.attempts()) == 6 and len(store.events()) == 6
    # Row ids carry on after the copied ones (PostgreSQL's sequences were moved on).
    now = store.campaign()["created_at"]
    store.reset_jobs([6], clear_attempts=False, now=now)
    sub = store.record_intent(
        {
            "token": "t3",
            "backend": "local",
            "group_id": 0,
            "n_tasks": 1,
            "n_jobs": 1,
            "log_dir": "",
        },
        [{"job_id": 6, "attempt": 2, "task_index": 0}],
        now,
    )
    assert sub == 3 and len(store.attempts()) == 7 and len(store.events()) == 8
    store.close()


def test_an_empty_database_gets_the_schema_at_once(db_url: str) -> None:
    store = Store(db_url)
    assert store.schema_revision() is None
    assert upgrade(store).before is None
    assert store.schema_revision() == SCHEMA_REVISION and not store.is_initialised()
    store.close()
