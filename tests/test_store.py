"""The runs database, on real SQLite files and a real PostgreSQL (each test runs on both)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.errors import ConfigChangedError, InputError, StoreError
from campaigns.ops.init import check_adoption
from campaigns.store import SCHEMA_REVISION, Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
RESOURCES = {
    "nodes": 1,
    "ntasks_per_node": 1,
    "cpus_per_task": 1,
    "gpus_per_node": 0,
    "memory_mb": 512,
    "time_minutes": 60,
    "partition": None,
    "qos": None,
    "account": None,
    "constraint": None,
    "sbatch_options": {},
}
CAMPAIGN = {
    "name": "Store test",
    "version": "v1",
    "slug": "v1_store-test",
    "config_hash": "abc",
    "config": "{}",
    "source": "/x/c.yaml",
}


def job_rows(n: int, start: int = 0, groups: int = 1) -> list[dict]:
    """Rows as the manager writes them: id = expansion index + 1."""
    return [
        {
            "id": i + 1,
            "key": f"r={i}",
            "uid": f"{i:016x}",
            "params": json.dumps({"r": i}),
            "output": f"r{i:05d}.h5",
            "group_id": i % groups,
            "state": "pending",
            "attempts": 0,
        }
        for i in range(start, start + n)
    ]


def group_rows(n: int = 1) -> list[dict]:
    return [{"id": g, "resources": json.dumps(RESOURCES), "max_retries": 3} for g in range(n)]


def make_store(db_url: str, n: int = 10, groups: int = 1, campaign: dict = CAMPAIGN) -> Store:
    store = Store(db_url)
    store.create(campaign, group_rows(groups), job_rows(n, groups=groups), T0)
    return store


@pytest.fixture
def store(db_url: str):
    store = make_store(db_url)
    yield store
    store.close()


def intent(
    store: Store, job_ids: list[int], *, per_task: int = 1, token: str = "tok1", now: datetime = T0
) -> int:
    attempts = {r["id"]: r["attempts"] for r in store.jobs(ids=job_ids)}
    tasks = [
        {
            "job_id": j,
            "attempt": attempts[j] + 1,
            "task_index": i // per_task,
            "time_minutes": 60,
            "memory_mb": 512,
            "manifest_path": f"/m/{j}.json",
        }
        for i, j in enumerate(job_ids)
    ]
    n_tasks = (len(job_ids) + per_task - 1) // per_task
    return store.record_intent(
        {
            "token": token,
            "backend": "local",
            "group_id": 0,
            "n_tasks": n_tasks,
            "n_jobs": len(job_ids),
            "log_dir": "",
        },
        tasks,
        now,
    )


def used(job: dict) -> int:
    """Attempts that count against the job's retry budget."""
    return job["attempts"] - job.get("attempts_base", 0)


def by_id(store: Store, **filters) -> dict[int, dict]:
    return {r["id"]: r for r in store.jobs(**filters)}


# -- creation -------------------------------------------------------------------------


def test_create_40000_jobs_in_one_transaction(db_url: str) -> None:
    store = Store(db_url)
    commits: list[int] = []
    statements: list[bool] = []  # one entry per round trip: executemany or not
    sa.event.listen(store.engine, "commit", lambda conn: commits.append(1))
    assert not store.is_initialised()
    sa.event.listen(
        store.engine, "before_cursor_execute", lambda *args: statements.append(args[-1])
    )
    started = time.monotonic()
    store.create(CAMPAIGN, group_rows(2), job_rows(40_000, groups=2), T0)
    elapsed = time.monotonic() - started
    assert len(commits) == 1
    # Bulk on every database: a few executemany calls, never one statement per job.
    assert sum(statements) <= 8 and len(statements) < 80, len(statements)  # DDL included
    assert elapsed < 10, f"creating 40,000 jobs took {elapsed:.1f} s"
    assert store.is_initialised()
    assert store.counts() == {"pending": 40_000}
    jobs = store.jobs(columns=["id", "key", "attempts", "state", "group_id"])
    assert len(jobs) == 40_000 and jobs[0] == {
        "id": 1,
        "key": "r=0",
        "attempts": 0,
        "state": "pending",
        "group_id": 0,
    }
    assert [j["id"] for j in jobs] == list(range(1, 40_001))
    assert store.groups()[1] == {"resources": RESOURCES, "max_retries": 3}
    campaign = store.campaign()
    assert campaign["name"] == "Store test" and campaign["created_at"] == T0
    assert [e["kind"] for e in store.events()] == ["init"]
    store.close()


def test_a_failed_create_leaves_nothing_behind(db_url: str) -> None:
    store = Store(db_url)
    rows = job_rows(100)
    rows[60]["key"] = rows[10]["key"]  # violates the unique key
    with pytest.raises((sa.exc.IntegrityError, StoreError)):
        store.create(CAMPAIGN, group_rows(), rows, T0)
    assert not store.is_initialised()
    store.create(CAMPAIGN, group_rows(), job_rows(100), T0)  # and a clean retry works
    assert store.counts() == {"pending": 100}
    store.close()


def test_wal_mode_and_schema_revision(tmp_path: Path) -> None:
    store = make_store(f"sqlite:///{tmp_path}/c.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert store.schema_revision() == SCHEMA_REVISION
    # A second Store on the same file (another process, later) sees the same facts.
    other = Store(f"sqlite:///{tmp_path}/c.db")
    assert other.is_initialised() and other.schema_revision() == SCHEMA_REVISION
    with other.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    other.close()
    store.close()


def test_a_url_of_no_known_database_is_bad_input() -> None:
    with pytest.raises(InputError, match="knows no database called 'nosuchdialect'"):
        Store("nosuchdialect://x")


# -- reads ------------------------------------------------------------------------------


def test_jobs_with_many_ids_equal_the_sql_path(db_url: str) -> None:
    store = make_store(db_url, n=1500)
    intent(store, list(range(1, 300)))
    ids = list(range(1, 1500, 2))[:600]
    assert len(ids) == 600
    big = store.jobs(ids=ids)
    small = [r for chunk in (ids[:300], ids[300:]) for r in store.jobs(ids=chunk)]
    assert big == small and [r["id"] for r in big] == ids
    for kwargs in (
        {"states": ["queued"]},
        {"columns": ["key", "state"]},
        {"limit": 7},
        {"states": ["pending"], "columns": ["uid"], "limit": 450},
    ):
        big = store.jobs(ids=ids, **kwargs)
        small = [r for chunk in (ids[:300], ids[300:]) for r in store.jobs(ids=chunk, **kwargs)]
        limit = kwargs.get("limit")
        assert big == (small[:limit] if limit else small), kwargs
        if "columns" in kwargs:
            assert all(set(r) == set(kwargs["columns"]) for r in big)
    # Keys (or uids) in bulk, the same way.
    keys = [f"r={i}" for i in range(0, 1200, 2)] + [f"{i:016x}" for i in range(1201, 1203)]
    big = store.jobs(keys=keys)
    small = [r for chunk in (keys[:301], keys[301:]) for r in store.jobs(keys=chunk)]
    assert big == sorted(small, key=lambda r: r["id"]) and len(big) == 602
    store.close()


def test_counts_by_state(store: Store) -> None:
    intent(store, [1, 2, 3])
    assert store.counts() == {"pending": 7, "queued": 3}


# -- submission ---------------------------------------------------------------------------


def test_record_intent_then_mark_submitted(store: Store) -> None:
    sub = intent(store, [1, 2, 3, 4, 5], per_task=2)
    jobs = by_id(store)
    for j in (1, 2, 3, 4, 5):
        assert jobs[j]["state"] == "queued" and jobs[j]["attempts"] == 1
        assert jobs[j]["submission_id"] == sub and jobs[j]["scheduler_id"] is None
    assert [jobs[j]["task_index"] for j in (1, 2, 3, 4, 5)] == [0, 0, 1, 1, 2]
    assert jobs[6]["state"] == "pending" and jobs[6]["attempts"] == 0
    (submission,) = store.submissions()
    assert submission["state"] == "intent" and submission["token"] == "tok1"
    assert store.open_task_count() == 3

    logs = {i: f"/logs/777_{i}.out" for i in range(3)}
    store.mark_submitted(sub, "777", logs, T0 + timedelta(seconds=5))
    jobs = by_id(store)
    assert [jobs[j]["scheduler_id"] for j in (1, 2, 3, 4, 5)] == [
        "777_0",
        "777_0",
        "777_1",
        "777_1",
        "777_2",
    ]
    (submission,) = store.submissions(states=["submitted"])
    assert submission["scheduler_id"] == "777"
    assert submission["submitted_at"] == T0 + timedelta(seconds=5)
    attempts = store.attempts()
    assert [
        (a["job_id"], a["number"], a["state"], a["scheduler_id"], a["log_path"]) for a in attempts
    ] == [
        (1, 1, "queued", "777_0", "/logs/777_0.out"),
        (2, 1, "queued", "777_0", "/logs/777_0.out"),
        (3, 1, "queued", "777_1", "/logs/777_1.out"),
        (4, 1, "queued", "777_1", "/logs/777_1.out"),
        (5, 1, "queued", "777_2", "/logs/777_2.out"),
    ]
    assert all(a["manifest_path"] == f"/m/{a['job_id']}.json" for a in attempts)
    assert store.log_paths([1, 5]) == {1: "/logs/777_0.out", 5: "/logs/777_2.out"}
    assert store.log_paths(None) == {j: logs[(j - 1) // 2] for j in (1, 2, 3, 4, 5)}


def test_a_second_attempt_counts_up(store: Store) -> None:
    first = intent(store, [1])
    store.mark_submitted(first, "1", {0: "/l/1_0"}, T0)
    store.apply(
        [{"id": 1, "state": "failed", "failure_class": "exit_code", "exit_code": 1}],
        [{"job_id": 1, "number": 1, "state": "failed"}],
        [],
        [first],
        T0,
    )
    store.reset_jobs([1], clear_attempts=False, now=T0)
    second = intent(store, [1], token="tok2")
    store.mark_submitted(second, "2", {0: "/l/2_0"}, T0)
    job = by_id(store)[1]
    assert job["attempts"] == 2 and job["state"] == "queued" and job["failure_class"] is None
    assert [(a["number"], a["state"]) for a in store.attempts([1])] == [
        (1, "failed"),
        (2, "queued"),
    ]
    assert store.log_paths([1]) == {1: "/l/2_0"}


def test_abandon_restores_pending_and_attempts(store: Store) -> None:
    first = intent(store, [1, 2])
    store.mark_submitted(first, "1", {0: "/l/a", 1: "/l/b"}, T0)
    store.apply(
        [{"id": 1, "state": "failed"}],
        [{"job_id": 1, "number": 1, "state": "failed"}],
        [],
        [first],
        T0,
    )
    store.reset_jobs([1], clear_attempts=False, now=T0)
    second = intent(store, [1, 3, 4], token="tok2")
    assert by_id(store)[1]["attempts"] == 2
    n = store.abandon(second, "sbatch: error: Batch job submission failed", T0)
    assert n == 3
    jobs = by_id(store)
    assert [(jobs[j]["state"], jobs[j]["attempts"]) for j in (1, 3, 4)] == [
        ("pending", 1),
        ("pending", 0),
        ("pending", 0),
    ]
    assert all(
        jobs[j]["submission_id"] is None and jobs[j]["task_index"] is None for j in (1, 3, 4)
    )
    assert jobs[2]["state"] == "queued" and jobs[2]["submission_id"] == first  # untouched
    assert [(a["job_id"], a["number"]) for a in store.attempts()] == [(1, 1), (2, 1)]
    subs = {s["id"]: s for s in store.submissions()}
    assert subs[second]["state"] == "abandoned" and "submission failed" in subs[second]["error"]
    assert subs[second]["closed_at"] == T0
    assert store.open_task_count() == 1


def test_a_late_acceptance_never_revives_an_abandoned_submission(store: Store) -> None:
    """sbatch answered after the submission was given up (by a timeout, or by another
    manager's crash recovery) and its jobs were submitted again: the late answer is
    recorded as an event, and changes neither the submission nor any job or attempt."""
    first = intent(store, [1, 2])
    store.abandon(first, "sbatch timed out", T0)
    second = intent(store, [1, 2], token="tok2")
    assert store.mark_submitted(second, "200", {0: "/l/a", 1: "/l/b"}, T0)
    before = (by_id(store), store.attempts())
    assert not store.mark_submitted(first, "100", {0: "/l/x", 1: "/l/y"}, T0)
    subs = {s["id"]: s for s in store.submissions()}
    assert subs[first]["state"] == "abandoned" and subs[first]["scheduler_id"] is None
    assert subs[second]["state"] == "submitted"
    assert (by_id(store), store.attempts()) == before
    assert all(j["scheduler_id"].startswith("200_") for j in by_id(store, ids=[1, 2]).values())
    late = [e for e in store.events() if e["kind"] == "late"]
    assert len(late) == 1 and "as 100 after it was given up" in late[0]["message"]


# -- reconciliation -----------------------------------------------------------------------


def test_apply_mixed_updates_events_and_closing(store: Store) -> None:
    sub = intent(store, [1, 2, 3, 4])
    store.mark_submitted(sub, "9", {i: f"/l/{i}" for i in range(4)}, T0)
    now = T0 + timedelta(minutes=10)
    started = datetime(2024, 5, 1, 14, 1, tzinfo=timezone(timedelta(hours=2)))  # 12:01 UTC
    retry_at = T0 + timedelta(minutes=12)
    store.apply(
        [
            {"id": 1, "state": "running", "started_at": started},
            {"id": 2, "state": "completed", "exit_code": 0, "ended_at": now},
            {
                "id": 3,
                "state": "failed",
                "failure_class": "timeout",
                "error": "killed",
                "next_retry_at": retry_at,
                "ended_at": now,
            },
            {"id": 4, "state": "running", "started_at": started},
        ],
        [
            {"job_id": 2, "number": 1, "state": "completed", "exit_code": 0, "ended_at": now},
            {"job_id": 3, "number": 1, "state": "failed", "failure_class": "timeout"},
        ],
        [
            {"kind": "state", "job_id": 2, "submission_id": sub, "message": "completed"},
            {"kind": "state", "job_id": 3, "submission_id": sub, "message": "timeout"},
        ],
        [sub],
        now,
    )
    jobs = by_id(store)
    assert jobs[1]["state"] == "running" and jobs[1]["started_at"] == started
    assert jobs[1]["started_at"].tzinfo is not None
    assert jobs[2]["state"] == "completed" and jobs[2]["exit_code"] == 0
    assert jobs[3]["failure_class"] == "timeout" and jobs[3]["error"] == "killed"
    assert jobs[3]["next_retry_at"] == retry_at
    assert all(jobs[j]["updated_at"] == now for j in (1, 2, 3, 4))
    assert jobs[5]["updated_at"] is None and jobs[5]["state"] == "pending"
    attempts = {a["job_id"]: a for a in store.attempts()}
    assert attempts[2]["state"] == "completed" and attempts[2]["ended_at"] == now
    assert attempts[3]["state"] == "failed" and attempts[3]["failure_class"] == "timeout"
    assert attempts[1]["state"] == "queued"
    events = store.events()
    assert [(e["kind"], e["job_id"]) for e in events[-2:]] == [("state", 2), ("state", 3)]
    assert events[-1]["at"] == now and events[-1]["submission_id"] == sub
    (closed,) = store.submissions(states=["closed"])
    assert closed["id"] == sub and closed["closed_at"] == now
    assert store.counts() == {"running": 2, "completed": 1, "failed": 1, "pending": 6}


def test_apply_keeps_every_event_field(store: Store) -> None:
    store.apply(
        [],
        [],
        [
            {"kind": "note", "message": "a"},
            {"kind": "note", "message": "b", "job_id": 4, "submission_id": 9},
        ],
        [],
        T0,
    )
    last = store.events()[-1]
    assert (last["message"], last["job_id"], last["submission_id"]) == ("b", 4, 9)


def test_apply_nothing_is_fine(store: Store) -> None:
    store.apply([], [], [], [], T0)
    assert store.counts() == {"pending": 10}


def test_reset_jobs(db_url: str) -> None:
    store = make_store(db_url, n=1200)
    ids = list(range(1, 1101))
    sub = intent(store, ids)
    store.apply(
        [
            {
                "id": j,
                "state": "failed",
                "failure_class": "exit_code",
                "exit_code": 2,
                "error": "boom",
                "next_retry_at": T0,
            }
            for j in ids
        ],
        [],
        [],
        [sub],
        T0,
    )
    store.reset_jobs(ids[:700], clear_attempts=False, now=T0)
    jobs = by_id(store)
    assert all(
        jobs[j]["state"] == "pending"
        and jobs[j]["attempts"] == 1
        and jobs[j]["next_retry_at"] is None
        and jobs[j]["failure_class"] == "exit_code"
        for j in ids[:700]
    )
    assert all(jobs[j]["state"] == "failed" for j in ids[700:])
    store.reset_jobs(ids[600:], clear_attempts=True, now=T0)
    jobs = by_id(store)
    # The budget is restored: no attempt counts against max_retries any more (attempts
    # may stay as history, with `attempts_base` marking where the new budget starts).
    assert all(
        jobs[j]["state"] == "pending"
        and used(jobs[j]) == 0
        and jobs[j]["failure_class"] is None
        and jobs[j]["error"] is None
        and jobs[j]["exit_code"] is None
        for j in ids[600:]
    )
    assert jobs[1]["attempts"] == 1 and used(jobs[1]) == 1
    assert store.counts() == {"pending": 1200}
    assert [e["kind"] for e in store.events()[-2:]] == ["retry", "reset"]
    store.reset_jobs([], clear_attempts=True, now=T0)  # a no-op
    store.close()


def test_cancel_open(store: Store) -> None:
    first = intent(store, [1, 2, 3])
    store.mark_submitted(first, "5", {i: f"/l/{i}" for i in range(3)}, T0)
    store.apply(
        [{"id": 1, "state": "running"}, {"id": 3, "state": "completed"}],
        [{"job_id": 3, "number": 1, "state": "completed"}],
        [],
        [],
        T0,
    )
    n = store.cancel_open([first], T0 + timedelta(hours=1))
    assert n == 2
    jobs = by_id(store)
    assert [jobs[j]["state"] for j in (1, 2, 3, 4)] == [
        "cancelled",
        "cancelled",
        "completed",
        "pending",
    ]
    assert jobs[1]["failure_class"] == "cancelled" and jobs[1]["error"] == "cancelled by the user"
    states = {a["job_id"]: a["state"] for a in store.attempts()}
    assert states == {1: "cancelled", 2: "cancelled", 3: "completed"}
    (sub,) = store.submissions()
    assert sub["state"] == "closed" and sub["closed_at"] == T0 + timedelta(hours=1)
    assert store.open_task_count() == 0
    assert store.cancel_open([], T0) == 0


# -- config changes -------------------------------------------------------------------------


def test_adopt_config_adds_new_jobs_and_keeps_states(store: Store) -> None:
    sub = intent(store, [1, 2])
    store.apply([{"id": 1, "state": "completed"}], [], [], [sub], T0)
    rows = job_rows(15, groups=2)
    rows[5]["output"] = "moved/r00005.h5"  # a pending job may move
    added = store.adopt_config(
        config='{"x": 1}', config_hash="def", groups=group_rows(2), jobs=rows, now=T0
    )
    assert added == 5
    jobs = by_id(store)
    assert len(jobs) == 15 and list(jobs) == list(range(1, 16))
    assert jobs[1]["state"] == "completed" and jobs[2]["state"] == "queued"
    assert all(jobs[j]["state"] == "pending" for j in range(11, 16))
    assert jobs[6]["output"] == "moved/r00005.h5" and jobs[2]["group_id"] == 1
    assert store.campaign()["config_hash"] == "def"
    assert sorted(store.groups()) == [0, 1]


def test_adoption_refuses_dropped_jobs(store: Store) -> None:
    # `init --force` checks the change against the store's jobs before it writes anything.
    with pytest.raises(ConfigChangedError) as info:
        check_adoption(store.jobs(columns=["key", "output", "state"]), job_rows(8))
    assert "drops 2 existing jobs" in str(info.value) and info.value.exit_code == 2


def test_adoption_refuses_to_move_outputs_of_jobs_that_ran(store: Store) -> None:
    intent(store, [3])
    rows = job_rows(10)
    rows[2]["output"] = "elsewhere.h5"
    with pytest.raises(ConfigChangedError, match="moves the outputs of 1 jobs"):
        check_adoption(store.jobs(columns=["key", "output", "state"]), rows)
    rows[2]["output"] = "r00002.h5"
    rows[4]["output"] = "elsewhere.h5"  # a job that never ran may move
    check_adoption(store.jobs(columns=["key", "output", "state"]), rows)
