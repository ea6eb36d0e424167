"""The manager lease on a server database: one manager at a time across hosts, a dead
holder taken over once its lease expired, heartbeats that keep a live one. Real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.errors import LeaseLostError, LockedError, StoreError
from campaigns.ops import lock as lock_module
from campaigns.ops.lock import CampaignLease
from campaigns.store import Store
from campaigns.store.fence import utc_now
from campaigns.store.schema import events_table
from test_cli_local import REPO, counting_command, monitor_until_done, write_campaign
from test_store import CAMPAIGN, group_rows, intent, job_rows

pytestmark = pytest.mark.postgres
ELSEWHERE = json.dumps({"pid": 1, "host": "login07", "command": "run-campaign submit"})


@pytest.fixture
def store(pg_url: str):
    store = Store(pg_url)
    store.create(CAMPAIGN, group_rows(), job_rows(4), datetime.now(timezone.utc))
    yield store
    store.close()


def db_now(store: Store) -> datetime:
    """The database server's clock (the one leases are judged by)."""
    with store.reading() as conn:
        return conn.execute(sa.select(utc_now())).scalar_one()


def wait_until_expired(store: Store, deadline: float = 30.0) -> None:
    """Wait (polling the server's clock) until the campaign's lease has expired."""
    ends = time.monotonic() + deadline
    while db_now(store) <= store.lease()["expires_at"]:
        assert time.monotonic() < ends, "the lease never expired by the database's clock"
        time.sleep(0.1)


def test_a_live_lease_refuses_and_an_expired_one_is_taken_over(store: Store) -> None:
    first = store.take_lease("other", ELSEWHERE, 60)
    assert first["token"] == "other" and first["fence"] == 1
    held = store.take_lease("me", "{}", 60)
    assert held["token"] == "other" and held["holder"] == ELSEWHERE
    with pytest.raises(LockedError, match="login07") as info, CampaignLease(store, seconds=5):
        pass
    assert "its lease runs to" in str(info.value) and info.value.exit_code == 1
    # The holder on login07 died: once its lease expired (by the server's clock), the next
    # manager takes over, and the lease's fencing number moves on.
    again = store.take_lease("other", ELSEWHERE, 0.5)
    assert again["token"] == "other" and again["fence"] == 1  # a renewal keeps the number
    wait_until_expired(store)
    mine = store.take_lease("me", "{}", 60)
    assert mine["token"] == "me" and mine["fence"] == 2
    assert store.lease()["token"] == "me"
    assert not store.renew_lease("other", 60)  # the old holder lost it
    store.release_lease("me")
    assert store.lease() is None
    assert store.take_lease("me", "{}", 60)["fence"] == 3


def test_a_login_node_whose_clock_runs_ahead_cannot_take_a_live_lease(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expiry is the database server's judgement, not the taker's wall clock."""
    store.take_lease("other", ELSEWHERE, 60)

    class AheadClock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime.now(tz) + timedelta(minutes=10)

    monkeypatch.setattr(lock_module, "datetime", AheadClock)
    with pytest.raises(LockedError, match="login07"), CampaignLease(store, seconds=5):
        pass
    assert store.lease()["token"] == "other"


def test_heartbeats_keep_a_lease_past_its_time(store: Store) -> None:
    with CampaignLease(store, seconds=0.9) as lease:
        time.sleep(2.0)  # more than twice the lease time: only heartbeats keep it ours
        assert store.take_lease("intruder", "{}", 5)["token"] == lease.token
        assert store.lease()["token"] == lease.token
        store.add_event("note", "still ours", datetime.now(timezone.utc))
    assert store.lease() is None and lease.lost is None


def test_a_write_after_the_lease_changed_hands_fails_and_writes_nothing(pg_url: str) -> None:
    """Fencing: manager A's lease expires by the database's clock (A is stalled: no
    heartbeat), B takes it, and A's next write is refused inside its own transaction."""
    a, b = Store(pg_url), Store(pg_url)
    a.create(CAMPAIGN, group_rows(), job_rows(4), datetime.now(timezone.utc))
    b.slug = a.slug
    try:
        lease = a.take_lease("manager-a", "{}", 0.5)  # taken by hand: no heartbeat thread
        a.fence_with(lease)
        a.add_event("note", "A while its lease is live", datetime.now(timezone.utc))
        wait_until_expired(a)
        with pytest.raises(LeaseLostError, match="expired at .* by the database's clock"):
            a.add_event("note", "A after its lease expired", datetime.now(timezone.utc))
        with CampaignLease(b, seconds=30) as taken:
            assert taken.fence == lease["fence"] + 1
            before = (a.jobs(), a.submissions(), a.events(limit=100))
            with pytest.raises(LeaseLostError, match="taken over") as info:
                intent(a, [1, 2])
            assert info.value.exit_code == 1 and "nothing was changed" in str(info.value)
            assert (a.jobs(), a.submissions(), a.events(limit=100)) == before
            intent(b, [1, 2])  # the new holder writes
            assert [s["token"] for s in b.submissions()] == ["tok1"]
        messages = [e["message"] for e in a.events(limit=100)]
        assert "A while its lease is live" in messages
        assert not any(m.startswith("A after") for m in messages)
    finally:
        a.close()
        b.close()


#: Manager A: takes the lease, says so, waits for a line on stdin, then writes once.
PAUSED_MANAGER = """
import json, sys
from datetime import datetime, timezone
from campaigns.errors import CampaignError
from campaigns.ops.lock import CampaignLease
from campaigns.store import Store
store = Store(sys.argv[1], slug=sys.argv[2])
try:
    with CampaignLease(store, seconds=1.5) as lease:
        print(json.dumps({"fence": lease.fence}), flush=True)
        sys.stdin.readline()
        store.add_event("note", "A after its pause", datetime.now(timezone.utc))
        print(json.dumps({"wrote": True}), flush=True)
except CampaignError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
"""


def test_a_manager_stopped_past_its_lease_writes_nothing_once_it_resumes(
    store: Store, pg_url: str
) -> None:
    """The classic: a manager process is frozen (SIGSTOP, a long GC pause, a suspended VM)
    longer than its lease; another takes over; the first wakes up and tries to write."""
    a = subprocess.Popen(
        [sys.executable, "-c", PAUSED_MANAGER, pg_url, store.slug],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert a.stdin is not None and a.stdout is not None
        held = json.loads(a.stdout.readline())
        os.kill(a.pid, signal.SIGSTOP)
        wait_until_expired(store)
        with CampaignLease(store, seconds=30) as b:
            assert b.fence == held["fence"] + 1
            os.kill(a.pid, signal.SIGCONT)
            a.stdin.write("go\n")
            a.stdin.flush()
            outcome = json.loads(a.stdout.readline())
            assert outcome.get("error") == "LeaseLostError", outcome
            assert "nothing was changed" in outcome["message"]
            assert store.lease()["token"] == b.token  # B still holds it, and writes
            store.add_event("note", "B at work", datetime.now(timezone.utc))
        a.wait(timeout=30)
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
            a.kill()
            a.wait()
    messages = [e["message"] for e in store.events(limit=100)]
    assert "B at work" in messages and "A after its pause" not in messages


def test_a_taker_waits_for_the_holders_write_in_flight(pg_url: str) -> None:
    """The check holds the lease row until the write commits: a lease never changes hands
    in the middle of its holder's transaction."""
    a, b = Store(pg_url), Store(pg_url)
    a.create(CAMPAIGN, group_rows(), job_rows(4), datetime.now(timezone.utc))
    b.slug = a.slug
    took: list[float] = []
    try:
        a.fence_with(a.take_lease("manager-a", "{}", 0.5))
        taker = threading.Thread(
            target=lambda: took.append(
                (b.take_lease("b", "{}", 30, dead="manager-a"), time.time())[1]
            )
        )
        with a.transaction() as conn:
            conn.execute(
                events_table.insert().values(
                    campaign_id=a.cid,
                    at=datetime.now(timezone.utc),
                    kind="note",
                    message="in flight",
                )
            )
            taker.start()
            time.sleep(1.0)  # the taker is blocked on the lease row all this time
            assert not took
            committed = time.time()
        taker.join(timeout=30)
        assert took and took[0] >= committed
        assert b.lease()["token"] == "b"
        assert "in flight" in [e["message"] for e in b.events()]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("a bug in the heartbeat"), StoreError("the server went away")],
    ids=["any-exception", "database-down"],
)
def test_a_failed_heartbeat_stops_the_manager_before_its_next_write(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    def renew(token: str, seconds: float) -> bool:
        raise failure

    before = len(store.events(limit=100))
    with (
        pytest.raises(LeaseLostError, match="heartbeat") as info,
        CampaignLease(store, seconds=0.9) as lease,
    ):
        monkeypatch.setattr(store, "renew_lease", renew)
        ends = time.monotonic() + 30
        while lease.lost is None:
            assert time.monotonic() < ends, "the heartbeat's failure went unnoticed"
            time.sleep(0.05)
        store.add_event("note", "written after the heartbeat died", datetime.now(timezone.utc))
    assert str(failure) in str(info.value)
    assert len(store.events(limit=100)) == before
    assert any("stops before its next write" in r.getMessage() for r in caplog.records)


#: A manager that starts when told (the file `go` appears) and records when it ran.
TIMED_MANAGER = """
import json, sys, time
from pathlib import Path
from campaigns.cli import main
go, record, args = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
start = time.time()
code = main(args)
record.write_text(json.dumps({"start": start, "end": time.time(), "code": code}))
sys.exit(code)
"""


def test_two_managers_at_once_never_submit_a_job_twice(tmp_path: Path, pg_url: str, capsys) -> None:
    """Two managers started at the same instant: their runs overlap in time (asserted on
    their clocks, so the test cannot pass by running them one after the other), one holds
    the lease while the other is refused, and every job is submitted and run once."""
    runs, command = counting_command(tmp_path)
    config = write_campaign(tmp_path, n=30, command=command, batch=2)
    cli = [sys.executable, str(REPO / "scripts" / "run_campaign.py")]
    args = [str(config), "--root", str(tmp_path), "--db-url", pg_url]
    subprocess.run([*cli, "init", *args], check=True, capture_output=True)
    go = tmp_path / "go"
    records = [tmp_path / f"manager{i}.json" for i in range(2)]
    managers = [
        subprocess.Popen(
            [sys.executable, "-c", TIMED_MANAGER, str(go), str(record)]
            + ["submit", *args, "--backend", "local", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for record in records
    ]
    for manager in managers:  # both imported and waiting: then they start together
        assert manager.stdout is not None and manager.stdout.readline().strip() == "ready"
    go.touch()
    outcomes = [(*m.communicate(timeout=300), m.returncode) for m in managers]
    ran_at = [json.loads(record.read_text()) for record in records]
    assert max(r["start"] for r in ran_at) < min(r["end"] for r in ran_at), ran_at  # overlap
    assert sorted(code for _, _, code in outcomes) == [0, 1], outcomes
    winner, loser = (0, 1) if outcomes[0][2] == 0 else (1, 0)
    # The loser was refused while the winner was working, by the winner's clock and its own.
    assert ran_at[winner]["start"] < ran_at[loser]["end"] < ran_at[winner]["end"], ran_at
    err = outcomes[loser][1]
    assert "another campaigns manager" in err and '"host"' in err, err
    out = outcomes[winner][0].strip().splitlines()[-1]
    assert json.loads(out)["submitted_jobs"] == 60
    store = Store(pg_url, slug="t1_local-e2e")
    assert all(j["attempts"] == 1 for j in store.jobs())
    assert len(store.attempts()) == 60
    store.close()
    report = monitor_until_done(config, tmp_path, capsys, 120, "--db-url", pg_url)
    assert report["counts"]["completed"] == 60
    ran = {p.name: p.read_text().split() for p in runs.iterdir()}
    assert len(ran) == 60 and all(lines == ["1"] for lines in ran.values())
