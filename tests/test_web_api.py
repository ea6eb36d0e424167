"""The dashboard's JSON API through the ASGI test client, on a campaign the local backend ran."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

pytest.importorskip("starlette", reason="the web extra: pip install -e '.[web]'")
from starlette.testclient import TestClient  # noqa: E402

from campaigns.cli import main  # noqa: E402
from campaigns.errors import StoreError  # noqa: E402
from campaigns.store.schema import attempts_table, jobs_table  # noqa: E402
from campaigns.web.app import create_app  # noqa: E402
from campaigns.web.served import Served  # noqa: E402
from web_helpers import (  # noqa: E402
    cli,
    forty_thousand_jobs,
    run_until_done,
    status_json,
    write_campaign,
)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 12-job campaign run to the end: 10 completed, 2 failed (one waiting, one exhausted)."""
    folder = tmp_path_factory.mktemp("ran")
    config, root = write_campaign(folder), folder / "runs"
    cli("init", str(config), "--root", str(root))
    cli("submit", str(config), "--root", str(root), "--backend", "local")
    run_until_done(config, root)
    return config, root


TOKEN = "correct-horse-battery-staple"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def client_for(
    config: Path, root: Path, *, authorised: bool = True, **app_options: Any
) -> TestClient:
    """A test client of a dashboard serving `config`; it sends the token unless told not to."""
    app = create_app(Served.from_files([config], root=str(root)), token=TOKEN, **app_options)
    return TestClient(app, headers=BEARER if authorised else None)


@pytest.fixture
def client(ran: tuple[Path, Path]) -> TestClient:
    return client_for(*ran)


CID = "w1_web-test"


def test_status_mirrors_status_json(
    ran: tuple[Path, Path], client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = status_json(*ran, capsys)
    assert client.get(f"/api/campaigns/{CID}/status").json() == expected
    listed = client.get("/api/campaigns").json()
    assert [c["id"] for c in listed["campaigns"]] == [CID]
    assert listed["campaigns"][0]["status"] == expected
    assert expected["counts"]["completed"] == 10 and expected["counts"]["failed"] == 2


def test_jobs_pages_and_filters(client: TestClient) -> None:
    url = f"/api/campaigns/{CID}/jobs"
    every = client.get(url, params={"limit": 200}).json()
    assert every["total"] == 12 and len(every["jobs"]) == 12
    first = client.get(url, params={"limit": 5, "offset": 0}).json()
    second = client.get(url, params={"limit": 5, "offset": 5}).json()
    assert [j["key"] for j in first["jobs"] + second["jobs"]] == [
        j["key"] for j in every["jobs"][:10]
    ]
    failed = client.get(url, params={"state": "failed"}).json()
    assert sorted(j["key"] for j in failed["jobs"]) == [
        "realization=2,redshift=1.0",
        "realization=2,redshift=2.0",
    ]
    assert {j["failure_class"] for j in failed["jobs"]} == {"exit_code"}
    waiting = client.get(url, params={"standing": "waiting"}).json()
    assert [j["key"] for j in waiting["jobs"]] == ["realization=2,redshift=1.0"]
    assert waiting["jobs"][0]["next_retry_at"].endswith("Z")
    exhausted = client.get(url, params={"standing": "exhausted"}).json()
    assert [j["key"] for j in exhausted["jobs"]] == ["realization=2,redshift=2.0"]
    assert client.get(url, params={"standing": "due"}).json()["total"] == 0
    found = client.get(url, params={"q": "realization=5,"}).json()
    assert found["total"] == 2 and found["jobs"][0]["params"] == {"realization": 5, "redshift": 1.0}
    assert client.get(url, params={"q": "%"}).json()["total"] == 0  # LIKE wildcards are literal
    assert client.get(url, params={"failure_class": "timeout"}).json()["total"] == 0


@pytest.mark.parametrize(
    "params, word",
    [
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"limit": "many"}, "integer"),
        ({"state": "exploded"}, "unknown state"),
        ({"standing": "later"}, "unknown standing"),
    ],
)
def test_bad_queries_are_refused(client: TestClient, params: dict[str, Any], word: str) -> None:
    answer = client.get(f"/api/campaigns/{CID}/jobs", params=params)
    assert answer.status_code == 400 and word in answer.json()["error"]


def test_a_job_its_attempts_and_its_log_section(client: TestClient) -> None:
    detail = client.get(f"/api/campaigns/{CID}/jobs/realization=2,redshift=2.0").json()
    assert detail["job"]["state"] == "failed" and detail["job"]["standing"] == "exhausted"
    (attempt,) = detail["attempts"]
    assert attempt["exit_code"] == 3 and attempt["log"].startswith("logs/array-")
    by_uid = client.get(f"/api/campaigns/{CID}/jobs/{detail['job']['uid']}").json()
    assert by_uid == detail
    tail = client.get(f"/api/campaigns/{CID}/jobs/{detail['job']['uid']}/log").json()
    assert tail["attempt"] == 1 and tail["section"] is True and tail["path"] == attempt["log"]
    assert "boom 2" in tail["lines"]
    assert tail["lines"][0].startswith("===== job realization=2,redshift=2.0 attempt 1 start")
    assert client.get(f"/api/campaigns/{CID}/jobs/nope").status_code == 404
    assert client.get("/api/campaigns/nope/status").status_code == 404
    assert (
        client.get(
            f"/api/campaigns/{CID}/jobs/realization=2,redshift=2.0/log?attempt=9"
        ).status_code
        == 404
    )


def test_progress_counts_what_the_store_holds(client: TestClient) -> None:
    progress = client.get(f"/api/campaigns/{CID}/progress?buckets=20").json()
    assert progress["total"] == 12 and progress["completed"] == 10
    assert progress["series"]["completed"][-1] == 10
    assert progress["series"]["failed_attempts"][-1] == 2
    assert len(progress["series"]["time"]) <= 20
    assert progress["remaining"] == 1  # the waiting retry
    assert progress["throughput_per_hour"] > 0 and progress["eta"] is not None


def test_log_paths_outside_the_campaign_are_never_served(
    ran: tuple[Path, Path], client: TestClient, tmp_path: Path
) -> None:
    config, root = ran
    campaign = root / CID
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    (campaign / "logs" / "escape.log").symlink_to(secret)
    db = sa.create_engine(f"sqlite:///{campaign / 'metadata' / 'campaign.db'}")
    job_id = 1
    with db.begin() as conn:
        original = conn.execute(
            sa.select(attempts_table.c.log_path).where(attempts_table.c.job_id == job_id)
        ).scalar_one()
    try:
        for planted in (
            str(secret),
            "/etc/passwd",
            str(campaign / "logs" / ".." / ".." / ".." / secret.name),
            "../../../../../../etc/passwd",
            str(campaign / "logs" / "escape.log"),  # a symbolic link leading out
            str(campaign),  # the directory itself
        ):
            with db.begin() as conn:
                conn.execute(
                    attempts_table.update()
                    .where(attempts_table.c.job_id == job_id)
                    .values(log_path=planted)
                )
            answer = client.get(f"/api/campaigns/{CID}/jobs/realization=0,redshift=1.0/log")
            assert answer.status_code == 404, planted
            assert "SECRET" not in answer.text and "root:" not in answer.text
    finally:
        with db.begin() as conn:
            conn.execute(
                attempts_table.update()
                .where(attempts_table.c.job_id == job_id)
                .values(log_path=original)
            )
        db.dispose()
    assert (
        client.get(f"/api/campaigns/{CID}/jobs/realization=0,redshift=1.0/log").status_code == 200
    )


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fmetadata%2Fcampaign.db",
        "..%2Fvalidation_reports%2Flatest.png",
        "%2Fetc%2Fpasswd",
        "....png",
        "escape.png",
        "missing.png",
    ],
)
def test_plot_names_cannot_leave_the_plots_folder(
    ran: tuple[Path, Path], client: TestClient, name: str, tmp_path: Path
) -> None:
    plots = ran[1] / CID / "qa" / "summary_plots"
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"\x89PNG secret")
    if not (plots / "escape.png").exists():
        (plots / "escape.png").symlink_to(outside)
    answer = client.get(f"/api/campaigns/{CID}/qa/plots/{name}")
    assert answer.status_code == 404 and b"secret" not in answer.content
    for traversal in ("/static/../metadata/campaign.db", "/static/%2e%2e/app.py"):
        assert client.get(traversal).status_code == 404


def test_qa_report_and_plots_are_served(
    ran: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, root = ran
    # Its outputs are valid; its failed jobs make the campaign unfinished (exit 4), not an error.
    assert main(["qa", str(config), "--root", str(root)]) == 4, capsys.readouterr().err
    (tmp_path / "outside.png").write_bytes(b"\x89PNG")
    (root / CID / "qa" / "summary_plots" / "leads-out.png").symlink_to(tmp_path / "outside.png")
    client = client_for(config, root)
    qa = client.get(f"/api/campaigns/{CID}/qa").json()
    assert qa["report"]["summary"]["checked"] == 10 and qa["report"]["summary"]["invalid"] == 0
    assert "completion_over_time.png" in qa["plots"] and "leads-out.png" not in qa["plots"]
    png = client.get(f"/api/campaigns/{CID}/qa/plots/completion_over_time.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert png.headers["content-type"] == "image/png"


def test_the_dashboard_never_writes(ran: tuple[Path, Path], client: TestClient) -> None:
    config, root = ran
    db_file = root / CID / "metadata" / "campaign.db"
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    for path in ("/", f"/campaigns/{CID}", "/api/campaigns", f"/api/campaigns/{CID}/progress"):
        assert client.get(path).status_code == 200
    served: Served = client.app.state.served  # type: ignore[attr-defined]
    store = served.ready(CID).store
    with pytest.raises(StoreError, match="readonly"):
        store.add_event("x", "the dashboard must not write", served.ready(CID).clock())
    with pytest.raises(StoreError, match="readonly"), store.transaction() as conn:
        conn.execute(jobs_table.update().values(state="completed"))
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before


def test_a_campaign_before_init_is_listed_and_waits(tmp_path: Path) -> None:
    config = write_campaign(tmp_path)
    client = client_for(config, tmp_path / "runs")
    listed = client.get("/api/campaigns").json()["campaigns"]
    assert listed == [
        {"id": CID, "name": "Web test", "version": "w1", "initialised": False, "status": None}
    ]
    answer = client.get(f"/api/campaigns/{CID}/status")
    assert answer.status_code == 409 and "run-campaign init" in answer.json()["error"]
    cli("init", str(config), "--root", str(tmp_path / "runs"))
    assert client.get(f"/api/campaigns/{CID}/status").json()["counts"]["pending"] == 12


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+nosuchdriver://campaign:s3cr3t-pw@127.0.0.1:1/campaigns", "campaign:***@"),
        ("postgresql+nosuchdriver://campaign@127.0.0.1:1/campaigns?password=s3cr3t-pw", "=***"),
        ("postgresql+nosuchdriver://campaign@127.0.0.1:1/campaigns?passw%6Frd=s3cr3t-pw", "=***"),
    ],
)
def test_no_password_reaches_a_page(ran: tuple[Path, Path], url: str, masked: str) -> None:
    """A database URL with a password: errors name the database, never the password."""
    config, root = ran
    served = Served.from_files([config], root=str(root), db_url=url)
    client = TestClient(create_app(served, token=TOKEN), headers=BEARER)
    for path in ("/api/campaigns", f"/api/campaigns/{CID}/status", f"/api/campaigns/{CID}/jobs"):
        answer = client.get(path)
        assert answer.status_code == 400, (path, answer.text)  # an unknown driver: bad input
        assert "s3cr3t" not in answer.text and masked in answer.json()["error"]
    for page in ("/", f"/campaigns/{CID}"):
        assert "s3cr3t" not in client.get(page).text


def test_pages_are_html_with_a_strict_policy(client: TestClient) -> None:
    for path in ("/", f"/campaigns/{CID}", f"/campaigns/{CID}/jobs/realization=0,redshift=1.0"):
        answer = client.get(path)
        assert answer.status_code == 200 and '<script src="/static/dashboard.js">' in answer.text
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert "__POLL_MS__" not in answer.text
    assert client.get("/campaigns/nope").status_code == 404
    assert client.get("/api/campaigns").headers["cache-control"] == "no-store"
    assert client.get("/static/dashboard.js").status_code == 200


# -- the token -------------------------------------------------------------------------------


def test_every_request_needs_the_token(ran: tuple[Path, Path]) -> None:
    client = client_for(*ran, authorised=False)
    cookie = "campaigns_token_80"  # named for the server's port (the test client's is 80)
    for path in ("/", f"/campaigns/{CID}", "/api/campaigns", "/static/dashboard.js"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert "token" in refused.json()["error"] and "Mock" not in refused.text
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Cookie": f"{cookie}=wrong"}).status_code == 401
        # The cookie of a dashboard on another port (or of an older one) is not this one's.
        for other in ("campaigns_token", "campaigns_token_8000"):
            assert client.get(path, headers={"Cookie": f"{other}={TOKEN}"}).status_code == 401
        ok = client.get(path, headers=BEARER)
        assert ok.status_code == 200, path
    assert client.post(f"/?token={TOKEN}").status_code == 401  # only a GET trades it
    # A browser trades ?token= for a cookie and a clean address.
    traded = client.get(f"/campaigns/{CID}?token={TOKEN}&x=1", follow_redirects=False)
    assert traded.status_code == 303 and traded.headers["location"] == f"/campaigns/{CID}?x=1"
    set_cookie = traded.headers["set-cookie"]
    assert set_cookie.startswith(f"{cookie}={TOKEN};") and "HttpOnly" in set_cookie
    assert "samesite=strict" in set_cookie.lower()
    assert client.get("/api/campaigns", headers={"Cookie": f"{cookie}={TOKEN}"}).status_code == 200


def test_the_dashboard_cannot_be_made_without_a_token(ran: tuple[Path, Path]) -> None:
    served = Served.from_files([ran[0]], root=str(ran[1]))
    with pytest.raises(ValueError, match="token"):
        create_app(served, token="")


def test_a_short_token_in_the_environment_is_refused(ran: tuple[Path, Path]) -> None:
    run_campaign = Path(sys.executable).parent / "run-campaign"
    done = subprocess.run(
        [str(run_campaign), "serve", str(ran[0]), "--root", str(ran[1]), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,  # a dashboard that started would serve until stopped
        env={**os.environ, "CAMPAIGNS_WEB_TOKEN": "letmein"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CAMPAIGNS_WEB_TOKEN holds a token of 7 characters" in done.stderr
    assert "letmein" not in done.stdout + done.stderr


def test_serve_explains_how_to_install_the_extra(
    ran: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "uvicorn" else real(name, *a),
    )
    assert main(["serve", str(ran[0]), "--root", str(ran[1])]) == 2
    err = capsys.readouterr().err
    assert "pip install 'campaigns[web]'" in err and "uvicorn is not installed" in err
    assert len(err.strip().splitlines()) == 1


def test_serve_refuses_bad_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("campaign: {name: x}\n")
    assert main(["serve", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err
    assert main(["serve", str(write_campaign(tmp_path)), "--port", "70000"]) == 2
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(tmp_path / "web.yaml"), "--port", str(port)]) == 2
    assert "choose another --port" in capsys.readouterr().err


def test_forty_thousand_jobs_reach_the_browser_a_page_at_a_time(tmp_path: Path) -> None:
    big, root = forty_thousand_jobs(tmp_path, error="time limit")
    client = client_for(big, root)
    started = time.perf_counter()
    answer = client.get("/api/campaigns/b1_big/jobs", params={"state": "failed", "offset": 19950})
    seconds = time.perf_counter() - started
    page = answer.json()
    assert page["total"] == 20000 and len(page["jobs"]) == 50
    assert len(answer.content) < 40_000, len(answer.content)
    assert seconds < 2.0, f"a page of 40,000 jobs took {seconds:.2f} s"
    status = client.get("/api/campaigns/b1_big/status").json()
    assert status["failures"]["by_class"] == {"timeout": 20000}
    assert "jobs" not in status
    if os.environ.get("CAMPAIGNS_WEB_TIMINGS"):
        print(json.dumps({"page_seconds": seconds}))


def test_moments_past_the_last_bucket_count_in_it() -> None:
    from campaigns.ops.progress import clipped, cumulative

    per_bucket = clipped({-1: 1, 0: 2, 3: 1, 4: 5}, 4)
    assert per_bucket == {0: 3, 3: 6}
    assert cumulative(per_bucket, 4) == [3, 3, 3, 9]
