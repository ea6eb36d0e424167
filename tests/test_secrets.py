"""A database password never leaves campaigns, whichever form the URL carries it in:
`user:PASSWORD@host` or a query setting (`?password=`, `sslpassword=`, %-escaped names),
nor a libpq key=value string. Masked in every message and report, and no file keeps it.

The output paths are checked against the real PostgreSQL with both forms: the recorded
location (`metadata/database.json`), `status --json`, `db copy`'s report, the notifier's
payload, the dashboard's API, and an error that quotes the URL.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from campaigns.core.secrets import is_secret_key, mask_passwords, secrets_in
from campaigns.errors import InputError
from campaigns.store.urls import parse, recorded, secrets, shown
from pg_helpers import fresh_schema
from test_cli_local import run, write_campaign

SECRET = "Zq9-s3cret-Pa55"

#: Text holding a secret, and what it must read once masked.
MASKED = {
    f"postgresql://me:{SECRET}@db/runs": "postgresql://me:***@db/runs",
    f"postgresql://me@db/runs?password={SECRET}": "postgresql://me@db/runs?password=***",
    f"postgresql://me@db/runs?sslmode=require&password={SECRET}&x=1": (
        "postgresql://me@db/runs?sslmode=require&password=***&x=1"
    ),
    f"postgresql://me@db/runs?passw%6Frd={SECRET}": "postgresql://me@db/runs?passw%6Frd=***",
    f"postgresql://me@db/runs?sslpassword={SECRET}&sslkey=/k": (
        "postgresql://me@db/runs?sslpassword=***&sslkey=/k"
    ),
    f"mysql://me@db/runs?auth_token={SECRET}": "mysql://me@db/runs?auth_token=***",
    f"host=db user=me password={SECRET} dbname=runs": "host=db user=me password=*** dbname=runs",
    f"host=db password = '{SECRET} x\\' y' port=5": "host=db password = *** port=5",
    f"error: --db-password={SECRET} and postgresql://a:{SECRET}@h/d": (
        "error: --db-password=*** and postgresql://a:***@h/d"
    ),
}


@pytest.mark.parametrize("text", list(MASKED))
def test_every_form_of_a_password_is_masked(text: str) -> None:
    assert mask_passwords(text) == MASKED[text]
    assert SECRET in secrets_in(text) or SECRET + " x\\' y" in secrets_in(text)


def test_only_secrets_are_masked() -> None:
    text = "postgresql://me@db/runs?sslmode=require&passfile=/h/.pgpass&options=-cx%3D1"
    assert mask_passwords(text) == text
    assert not is_secret_key("passfile") and not is_secret_key("sslkey")
    assert all(map(is_secret_key, ["password", "PASSWORD", "sslpassword", "pass%77ord", "token"]))


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://me:{SECRET}@db:5432/runs?sslmode=require",
        f"postgresql+psycopg://me@db:5432/runs?password={SECRET}&sslmode=require",
        f"postgresql+psycopg://me@db:5432/runs?pass%77ord={SECRET}&sslmode=require",
        f"postgresql+psycopg://me@db:5432/runs?sslpassword={SECRET}&sslmode=require",
    ],
)
def test_a_url_is_shown_masked_and_recorded_without_its_secret(url: str) -> None:
    assert SECRET not in shown(url) and "***" in shown(url)
    kept = recorded(url)
    assert SECRET not in kept and "***" not in kept
    parsed = sa.engine.make_url(kept)
    assert parsed.password is None and not any(map(is_secret_key, parsed.query))
    assert parsed.query["sslmode"] == "require" and parsed.host == "db"
    assert SECRET in secrets(url)


def test_an_unescaped_at_in_the_password_is_refused_not_half_recorded() -> None:
    with pytest.raises(InputError, match="%40") as caught:
        parse("postgresql+psycopg://me:pa@ss@db/runs")
    assert "pa@ss" not in str(caught.value) and "ss@db" not in str(caught.value)


# -- every output path, on the real PostgreSQL ---------------------------------------------


def in_query(url: str) -> str:
    """`url` with its password moved from `user:password@` into `?password=`."""
    parsed = sa.engine.make_url(url)
    moved = parsed._replace(password=None).update_query_dict({"password": parsed.password})
    return moved.render_as_string(hide_password=False)


FORMS = {"user:password@": lambda url: url, "?password=": in_query}


def leaks(text: str, password: str) -> list[str]:
    """The ways `text` shows `password` (the test role's name and password are the same
    word, so only the password's own places count)."""
    forms = [f":{password}@", f"password={password}", f'password": "{password}']
    found = [form for form in forms if form in text]
    found += re.findall(r"password=(?!\*\*\*)[^&\s\"']+", text)
    return found


def notifier(folder: Path) -> str:
    script = folder / "note.py"
    script.write_text(
        f"import sys\nopen({str(folder / 'notes.jsonl')!r}, 'a').write(sys.stdin.read())\n"
    )
    return f"notify:\n  command: {sys.executable} {script}\n"


def finish(args: list[str], capsys: pytest.CaptureFixture[str], timeout: float = 120) -> None:
    """`monitor --once` until the campaign is finished (it notifies the end)."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = run(["monitor", *args, "--once", "--json"], capsys)
        assert code == 0, err
        if json.loads(out)["finished"]:
            return
        assert time.monotonic() < deadline, out
        time.sleep(0.3)


@pytest.mark.postgres
@pytest.mark.parametrize("form", list(FORMS))
def test_no_output_path_shows_the_password(
    form: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fresh_schema() as base:
        url = FORMS[form](base)
        password = sa.engine.make_url(base).password or ""
        assert password and password in secrets(url)
        monkeypatch.delenv("CAMPAIGNS_DB_URL", raising=False)
        monkeypatch.delenv("PGPASSWORD", raising=False)
        config = write_campaign(tmp_path)
        config.write_text(config.read_text() + notifier(tmp_path))
        args = [str(config), "--root", str(tmp_path / "runs")]
        said: list[str] = []

        def cli(*argv: str) -> str:
            code, out, err = run([*argv], capsys)
            assert code == 0, err
            said.append(out + err)
            return out

        # Into the server: `init --db-url`, then `db copy` of a second campaign.
        cli("init", *args, "--db-url", url)
        record_file = tmp_path / "runs" / "t1_local-e2e" / "metadata" / "database.json"
        other = tmp_path / "other.yaml"
        other.write_text(config.read_text().replace('version: "t1"', 'version: "t2"'))
        other_args = [str(other), "--root", str(tmp_path / "runs")]
        cli("init", *other_args)
        copied = json.loads(cli("db", "copy", *other_args, "--to", url, "--json"))
        assert "***" in copied["target"]
        records = [record_file, tmp_path / "runs" / "t2_local-e2e" / "metadata" / "database.json"]
        for path in records:
            text = path.read_text()
            assert not leaks(text, password), text
            kept = sa.engine.make_url(json.loads(text)["url"])
            assert kept.password is None and not any(map(is_secret_key, kept.query)), text
        # Run it, as a user who passes the URL each time.
        db = ["--db-url", url]
        cli("submit", *args, *db, "--backend", "local")
        finish([*args, *db], capsys)
        report = json.loads(cli("status", *args, *db, "--json", "--verbose"))
        assert report["counts"]["completed"] == 6 and "***" in report["database"]
        payloads = (tmp_path / "notes.jsonl").read_text()
        assert json.loads(payloads.splitlines()[-1])["event"] == "finished"
        assert "***" in json.loads(payloads.splitlines()[-1])["database"]
        # The dashboard, the same way.
        pytest.importorskip("starlette")
        from starlette.testclient import TestClient

        from campaigns.web.app import create_app
        from campaigns.web.served import Served

        served = Served.from_files([config], root=str(tmp_path / "runs"), db_url=url)
        client = TestClient(create_app(served, token="t0ken"))
        auth = {"Authorization": "Bearer t0ken"}
        answers = [
            client.get(path, headers=auth)
            for path in ("/api/campaigns", "/api/campaigns/t1_local-e2e/status")
        ]
        assert all(a.status_code == 200 for a in answers)
        assert "***" in answers[1].json()["database"]
        served.close()
        # An error that quotes the URL: a database that does not exist.
        wrong = url.replace("/campaigns_test", "/no_such_database_h1")
        code, out, err = run(["status", *args, "--db-url", wrong], capsys)
        assert code == 2 and "***" in err
        texts: list[Any] = [*said, payloads, out + err, *(a.text for a in answers)]
        texts += [
            p.read_text()
            for p in (tmp_path / "runs").rglob("*")
            if p.is_file() and p.suffix in (".json", ".yaml", ".log", ".jsonl", ".out")
        ]
        for text in texts:
            assert not leaks(text, password), text[:2000]


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://me@db/runs?password={SECRET}",
        f"postgresql+psycopg://me@db/runs?sslmode=require&sslpassword={SECRET}",
    ],
)
def test_a_password_in_the_query_of_the_campaign_files_url_is_refused(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The campaign file is copied into the campaign's metadata: no password may be in it."""
    config = write_campaign(tmp_path)
    config.write_text(config.read_text() + f"outputs:\n  db_url: {url}\n")
    code, _, err = run(["validate", str(config)], capsys)
    assert code == 2 and "outputs.db_url" in err and "~/.pgpass" in err and SECRET not in err
