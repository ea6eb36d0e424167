"""The manager lease on a server database: one manager at a time across hosts, a dead
holder taken over once its lease expired, heartbeats that keep a live one. Real PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from campaigns.errors import LockedError
from campaigns.ops.lock import CampaignLease
from campaigns.store import Store
from test_cli_local import REPO, counting_command, monitor_until_done, write_campaign
from test_store import CAMPAIGN, group_rows, job_rows

pytestmark = pytest.mark.postgres
ELSEWHERE = json.dumps({"pid": 1, "host": "login07", "command": "run-campaign submit"})


@pytest.fixture
def store(pg_url: str):
    store = Store(pg_url)
    store.create(CAMPAIGN, group_rows(), job_rows(4), datetime.now(timezone.utc))
    yield store
    store.close()


def test_a_live_lease_refuses_and_an_expired_one_is_taken_over(store: Store) -> None:
    now = datetime.now(timezone.utc)
    assert store.take_lease("other", ELSEWHERE, now, now + timedelta(seconds=60)) is None
    held = store.take_lease("me", "{}", now, now + timedelta(seconds=60))
    assert held is not None and held["holder"] == ELSEWHERE
    with pytest.raises(LockedError, match="login07") as info, CampaignLease(store, seconds=5):
        pass
    assert "its lease runs to" in str(info.value) and info.value.exit_code == 1
    # The holder on login07 died: once its lease expired, the next manager takes over.
    later = now + timedelta(seconds=61)
    assert store.take_lease("me", "{}", later, later + timedelta(seconds=60)) is None
    assert store.lease()["token"] == "me"
    assert not store.renew_lease("other", later, later)  # the old holder lost it
    store.release_lease("me")
    assert store.lease() is None


def test_heartbeats_keep_a_lease_past_its_time(store: Store) -> None:
    with CampaignLease(store, seconds=0.9) as lease:
        time.sleep(2.0)  # more than twice the lease time: only heartbeats keep it ours
        now = datetime.now(timezone.utc)
        assert store.take_lease("intruder", "{}", now, now + timedelta(seconds=5)) is not None
        assert store.lease()["token"] == lease.token
    assert store.lease() is None and not lease.lost


def test_two_managers_at_once_never_submit_a_job_twice(tmp_path: Path, pg_url: str, capsys) -> None:
    runs, command = counting_command(tmp_path)
    config = write_campaign(tmp_path, n=30, command=command, batch=2)
    cli = [sys.executable, str(REPO / "scripts" / "run_campaign.py")]
    args = [str(config), "--root", str(tmp_path), "--db-url", pg_url]
    subprocess.run([*cli, "init", *args], check=True, capture_output=True)
    managers = [
        subprocess.Popen(
            [*cli, "submit", *args, "--backend", "local", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [(m.wait(timeout=120), *m.communicate()) for m in managers]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes in ([0, 0], [0, 1]), outcomes
    submitted = 0
    for code, out, err in outcomes:
        if code == 1:  # refused: it says who holds the campaign
            assert "another campaigns manager" in err and '"host"' in err
        else:
            submitted += json.loads(out)["submitted_jobs"]
    assert submitted == 60  # every job once, whether the second waited its turn or refused
    store = Store(pg_url, slug="t1_local-e2e")
    assert all(j["attempts"] == 1 for j in store.jobs())
    assert len(store.attempts()) == 60
    store.close()
    report = monitor_until_done(config, tmp_path, capsys, 120, "--db-url", pg_url)
    assert report["counts"]["completed"] == 60
    ran = {p.name: p.read_text().split() for p in runs.iterdir()}
    assert len(ran) == 60 and all(lines == ["1"] for lines in ran.values())
