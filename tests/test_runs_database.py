"""One runs database for many campaigns, through the CLI and the Python API, on a real
PostgreSQL: campaigns side by side, the listing and `export --all`, `db copy` both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from campaigns import RunsDatabase
from campaigns.store import Store
from pg_helpers import password
from test_cli_local import SMALL, monitor_until_done, run, status_json

pytestmark = pytest.mark.postgres


def campaign_file(
    tmp_path: Path, version: str, n: int, extra_axis: str = "", nap: str = ""
) -> Path:
    """A small campaign (n realizations x 2 redshifts), under its own version."""
    text = SMALL.format(n=n, command=f'"{nap}echo {{realization}} > {{output}}"', batch=4)
    text = text.replace('version: "t1"', f'version: "{version}"')
    if extra_axis:
        text = text.replace("  redshift: [1.0, 2.0]\n", f"  redshift: [1.0, 2.0]\n{extra_axis}")
    path = tmp_path / f"{version}.yaml"
    path.write_text(text)
    return path


def test_two_campaigns_share_one_database_each_sees_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    first = campaign_file(tmp_path, "v1.0", 3, nap="sleep 1; ")
    second = campaign_file(tmp_path, "v1.1", 2, extra_axis="  seed: [7]\n")
    db = ["--root", str(tmp_path), "--db-url", pg_url]
    assert run(["init", str(first), *db], capsys)[0] == 0
    assert run(["init", str(second), *db], capsys)[0] == 0
    assert run(["submit", str(first), *db, "--backend", "local"], capsys)[0] == 0
    report = monitor_until_done(first, tmp_path, capsys, 120, "--db-url", pg_url)
    assert report["counts"]["completed"] == 6
    other = status_json(second, tmp_path, capsys, "--db-url", pg_url, "--verbose")
    assert other["total"] == 4 and other["counts"]["pending"] == 4
    assert {j["params"]["seed"] for j in other["jobs"]} == {7}

    code, out, err = run(["campaigns", "--db-url", pg_url, "--json"], capsys)
    assert code == 0, err
    listing = json.loads(out)
    assert listing["database"].startswith("postgresql+psycopg://campaigns:***@")
    rows = {c["slug"]: c for c in listing["campaigns"]}
    assert set(rows) == {"v1.0_local-e2e", "v1.1_local-e2e"}
    assert rows["v1.0_local-e2e"]["counts"]["completed"] == 6
    assert rows["v1.1_local-e2e"]["counts"]["pending"] == 4 and rows["v1.1_local-e2e"]["total"] == 4
    assert rows["v1.0_local-e2e"]["node_hours"] >= 0.9 * 6 / 3600  # six jobs of 1 s on 1 node
    assert rows["v1.1_local-e2e"]["node_hours"] == 0
    assert rows["v1.0_local-e2e"]["last_activity"] >= rows["v1.0_local-e2e"]["created_at"]
    code, out, _ = run(["campaigns", "--db-url", pg_url], capsys)
    assert code == 0 and "v1.0_local-e2e" in out and "v1.1_local-e2e" in out

    table = tmp_path / "all.csv"
    code, _, err = run(["export", str(table), "--all", "--db-url", pg_url], capsys)
    assert code == 0 and "wrote 10 jobs" in err
    frame = pd.read_csv(table)
    assert list(frame.columns[:5]) == [
        "campaign",
        "campaign_name",
        "campaign_version",
        "key",
        "uid",
    ]
    assert frame.groupby("campaign_version").size().to_dict() == {"v1.0": 6, "v1.1": 4}
    assert frame["seed"].isna().sum() == 6  # a parameter only the second campaign has

    one = tmp_path / "one.csv"
    code, _, err = run(["export", str(one), str(second), *db], capsys)
    assert code == 0 and "wrote 4 jobs" in err
    assert list(pd.read_csv(one).columns[:2]) == ["key", "uid"]
    code, _, err = run(["export", str(one)], capsys)
    assert code == 2 and "--all" in err

    runs = RunsDatabase(pg_url)
    jobs = runs.jobs_frame()
    assert len(jobs) == 10 and (jobs[jobs.campaign_version == "v1.0"].state == "completed").all()
    assert jobs["runtime_seconds"].notna().sum() == 6
    summary = runs.campaigns_frame().set_index("slug")
    assert summary.loc["v1.1_local-e2e", "pending"] == 4
    runs.close()


def test_db_copy_moves_a_campaign_to_postgresql_and_back_for_archiving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    config = campaign_file(tmp_path, "v2", 3)
    args = [str(config), "--root", str(tmp_path)]
    assert run(["init", *args], capsys)[0] == 0
    assert run(["submit", *args, "--backend", "local", "--limit", "4"], capsys)[0] == 0
    monitor_until_done(config, tmp_path, capsys)
    before = status_json(config, tmp_path, capsys, "--verbose")
    sqlite_file = tmp_path / "v2_local-e2e" / "metadata" / "campaign.db"

    code, out, err = run(["db", "copy", *args, "--to", pg_url, "--json"], capsys)
    assert code == 0, err
    copied = json.loads(out)
    assert copied["rows"] == {
        "job_groups": 1,
        "jobs": 6,
        "submissions": 1,
        "attempts": 4,
        "events": copied["rows"]["events"],
        "qa_results": 0,  # no `qa` has run yet
    }
    assert "campaigns:***@" in copied["target"] and "campaigns:campaigns@" not in out
    # From now on the campaign lives in PostgreSQL (the record has no password: this test
    # passes it in --db-url, as a user without ~/.pgpass or PGPASSWORD would).
    after = status_json(config, tmp_path, capsys, "--verbose", "--db-url", pg_url)
    assert after["jobs"] == before["jobs"] and after["counts"] == before["counts"]
    record = json.loads((tmp_path / "v2_local-e2e" / "metadata" / "database.json").read_text())
    assert record["url"].startswith("postgresql+psycopg://campaigns@") and "moved_from" in record
    with pytest.MonkeyPatch.context() as env:  # with the password where libpq looks for it,
        env.setenv("PGPASSWORD", password())  # the record alone finds the campaign
        assert status_json(config, tmp_path, capsys, "--verbose")["jobs"] == before["jobs"]
    # ... and keeps going there: the rest is submitted as submission 2.
    assert run(["submit", *args, "--db-url", pg_url, "--backend", "local"], capsys)[0] == 0
    monitor_until_done(config, tmp_path, capsys, 120, "--db-url", pg_url)
    store = Store(pg_url, slug="v2_local-e2e")
    assert [s["id"] for s in store.submissions()] == [1, 2] and store.counts() == {"completed": 6}
    store.close()
    assert sqlite_file.exists()  # the old copy stays until archived over

    # Archive: back into the campaign's own file, replacing its stale copy, gone from the server.
    code, out, err = run(
        ["db", "copy", *args, "--db-url", pg_url, "--to", "sqlite", "--move", "--replace"], capsys
    )
    assert code == 0, err
    assert "no longer holds it" in out
    assert not (tmp_path / "v2_local-e2e" / "metadata" / "database.json").exists()
    assert status_json(config, tmp_path, capsys)["counts"]["completed"] == 6
    assert RunsDatabase(pg_url).campaigns() == []


def test_db_copy_refuses_a_target_that_holds_the_campaign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    config = campaign_file(tmp_path, "v3", 1)
    args = [str(config), "--root", str(tmp_path)]
    assert run(["init", *args], capsys)[0] == 0
    assert run(["db", "copy", *args, "--to", pg_url], capsys)[0] == 0
    code, _, err = run(["db", "copy", *args, "--db-url", pg_url, "--to", pg_url], capsys)
    assert code == 2 and "already lives" in err
    sqlite_url = f"sqlite:///{tmp_path / 'v3_local-e2e' / 'metadata' / 'campaign.db'}"
    code, _, err = run(["db", "copy", *args, "--db-url", pg_url, "--to", sqlite_url], capsys)
    assert code == 2 and "already holds campaign 'v3_local-e2e'" in err and "--replace" in err
