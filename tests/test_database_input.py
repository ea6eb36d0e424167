"""Bad database input through the CLI: a malformed URL, an unknown database, a missing
driver, an unreachable server, wrong credentials, no such database. Each is one paragraph
on stderr with the documented exit code, nothing is created, and no password is printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pg_helpers import POSTGRES_URL, require_postgres
from test_cli_local import run, write_campaign

SECRET = "s3cret-Pa55"


def with_password(url: str, password: str = SECRET) -> str:
    """The test server's URL with another password."""
    head, tail = url.split("://", 1)
    user = tail.split("@", 1)[0].split(":", 1)[0]
    return f"{head}://{user}:{password}@{tail.split('@', 1)[1]}"


CASES = {
    "not a URL": (f"this is not a url :{SECRET}@", 2, "is not a database URL"),
    "unknown database": (f"oracle9://u:{SECRET}@host/db", 2, "knows no database called"),
    "missing driver": (f"postgresql+psycopg2://u:{SECRET}@127.0.0.1/db", 2, "pip install"),
    "unreachable": (f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db", 1, "cannot reach"),
}


def check(code: int, err: str, expected_code: int, words: str, root: Path) -> None:
    assert code == expected_code, err
    assert err.startswith("error: ") and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert SECRET not in err
    assert not root.exists()  # nothing created


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_urls_exit_with_one_paragraph_and_create_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, expected, words = CASES[case]
    config = write_campaign(tmp_path)
    root = tmp_path / "root"
    for command in ("init", "status", "submit"):
        code, out, err = run([command, str(config), "--root", str(root), "--db-url", url], capsys)
        if command != "init":  # before init the campaign is missing: that is said first
            assert code == 2 and SECRET not in err + out
            continue
        check(code, err, expected, words, root)
        assert SECRET not in out
    code, out, err = run(["campaigns", "--db-url", url], capsys)
    check(code, err, expected, words, root)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "change, words",
    [
        (lambda url: with_password(url), "cannot log in"),
        (lambda url: url.rsplit("/", 1)[0] + "/no_such_database", "does not exist"),
    ],
    ids=["wrong password", "no such database"],
)
def test_wrong_credentials_or_database_are_bad_input(
    change, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_postgres()
    url = change(POSTGRES_URL)
    config = write_campaign(tmp_path)
    root = tmp_path / "root"
    code, _, err = run(["init", str(config), "--root", str(root), "--db-url", url], capsys)
    check(code, err, 2, words, root)
    code, _, err = run(["export", str(tmp_path / "x.csv"), "--all", "--db-url", url], capsys)
    check(code, err, 2, words, root)
    assert not (tmp_path / "x.csv").exists()


def test_a_password_in_the_url_is_masked_in_status_and_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pg_url: str
) -> None:
    config = write_campaign(tmp_path)
    args = [str(config), "--root", str(tmp_path), "--db-url", pg_url]
    password = pg_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    for argv in (["init", *args], ["status", *args], ["status", *args, "--json", "--verbose"]):
        code, out, err = run(argv, capsys)
        assert code == 0, err
        assert f":{password}@" not in out + err
    assert "campaigns:***@" in out
    code, out, err = run(["campaigns", "--db-url", pg_url], capsys)
    assert code == 0 and f":{password}@" not in out + err and ":***@" in out
    recorded = (tmp_path / "t1_local-e2e" / "metadata" / "database.json").read_text()
    assert f":{password}@" not in recorded


def test_listing_without_a_database_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPAIGNS_DB_URL", raising=False)
    code, _, err = run(["campaigns"], capsys)
    assert code == 2 and "--db-url" in err and "CAMPAIGNS_DB_URL" in err


def test_a_password_in_the_campaign_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_campaign(tmp_path)
    config.write_text(
        config.read_text() + f"outputs:\n  db_url: postgresql+psycopg://me:{SECRET}@db/runs\n"
    )
    code, _, err = run(["validate", str(config)], capsys)
    assert code == 2 and "outputs.db_url" in err and "~/.pgpass" in err and SECRET not in err
