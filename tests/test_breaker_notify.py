"""The circuit breaker and notifications, through the CLI with a scheduler fake."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.breaker import CircuitBreaker
from test_exit_codes import fail_everything, fake
from test_ops_submit import CAMPAIGN

pytestmark = pytest.mark.usefixtures("fake_backend")

BREAKER = "  circuit_breaker: {window: 4, failure_rate: 0.5, min_failures: 3}\n"


def campaign(tmp_path: Path, extra: str = "", execution: str = BREAKER) -> list[str]:
    """The six-job campaign on the fake backend with a small breaker; submitted."""
    config = tmp_path / "campaign.yaml"
    text = CAMPAIGN.replace("execution:\n", "execution:\n" + execution)
    config.write_text(text.replace("base_seconds: 60", "base_seconds: 0") + extra)
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    assert main(["submit", *args, "--backend", "fake"]) == 0
    return args


@pytest.fixture(autouse=True)
def _quiet(capsys: pytest.CaptureFixture[str]) -> None:
    """Tests read only what their own commands print."""


def notifier(tmp_path: Path, exit_code: int = 0) -> str:
    """A `notify:` section whose command appends what it reads to notes.jsonl."""
    script = tmp_path / "note.py"
    script.write_text(
        "import sys\n"
        f"open({str(tmp_path / 'notes.jsonl')!r}, 'a').write(sys.stdin.read())\n"
        f"sys.exit({exit_code})\n"
    )
    return f"notify:\n  command: {sys.executable} {script}\n"


def notes(tmp_path: Path) -> list[dict]:
    path = tmp_path / "notes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_breaker_is_pure() -> None:
    breaker = CircuitBreaker(window=4, failure_rate=0.5, min_failures=3)
    assert breaker.trips([True, True, False, False]) is None  # 2 failures < 3
    assert breaker.trips([True, True, True, False, False, False]).failures == 3  # type: ignore[union-attr]
    assert breaker.trips([False, False, True, True, True]) is None  # 2 of the last 4
    assert CircuitBreaker.from_config(False).trips([True] * 100) is None
    assert CircuitBreaker().trips([True] * 19) is None and CircuitBreaker().trips([True] * 20)


def test_failures_open_the_breaker_and_stop_submission(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path, extra=notifier(tmp_path))
    fail_everything()
    capsys.readouterr()
    assert main(["monitor", *args, "--once", "--submit", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["circuit_breaker"]["open"] is True
    assert "6 of the last 4" not in report["circuit_breaker"]["reason"]
    assert report["circuit_breaker"]["reason"].startswith("4 of the last 4 finished jobs failed")
    # Nothing more was submitted: the due retries wait, running work was left alone.
    assert len(fake().arrays) == 2 and report["failures"]["retry_due"] == 6
    assert [n["event"] for n in notes(tmp_path)] == ["circuit_breaker"]
    assert notes(tmp_path)[0]["counts"]["failed"] == 6
    assert main(["submit", *args]) == 1
    err = capsys.readouterr().err
    assert "circuit breaker is open" in err and "submit --resume" in err
    assert main(["retry", *args, "--submit"]) == 1
    assert main(["status", *args]) == 0
    assert "circuit breaker open" in capsys.readouterr().out
    # The user fixed the cause: resume closes it and submits the due retries.
    assert main(["retry", *args]) == 0
    capsys.readouterr()
    assert main(["submit", *args, "--resume", "--backend", "fake", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["submitted_jobs"] == 6
    fake().run()  # the commands were fixed: they run as written now
    capsys.readouterr()
    assert main(["monitor", *args, "--once", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["circuit_breaker"]["open"] is False  # old failures no longer count
    assert report["counts"]["completed"] == 6
    assert [n["event"] for n in notes(tmp_path)] == ["circuit_breaker", "finished"]


def test_the_end_is_told_once_and_a_failing_notifier_is_harmless(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path, extra=notifier(tmp_path, exit_code=3), execution="")
    fake().run()
    assert main(["monitor", *args, "--interval", "0.01"]) == 0
    assert main(["monitor", *args, "--once"]) == 0
    assert [n["event"] for n in notes(tmp_path)] == ["finished"]  # once, though it failed
    assert notes(tmp_path)[0]["outcome"] == "complete"
    from campaigns.ops.manager import CampaignManager

    m = CampaignManager(args[0], root=args[2])
    kinds = [e["kind"] for e in m.store.events(20)]
    assert "notify_failed" in kinds and "notified" not in kinds
    m.close()


def test_progress_every_few_hours(tmp_path: Path) -> None:
    from datetime import timedelta

    from test_ops_submit import Clock, manager

    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN + notifier(tmp_path) + "  every_hours: 2\n")
    clock = Clock()
    shared = fake_instance()
    m = manager(config, shared, clock)
    m.init()
    m.submit_campaign(backend="fake")
    m.monitor_progress()
    m.monitor_progress()
    clock.now += timedelta(hours=2, seconds=1)
    m.monitor_progress()
    assert [n["event"] for n in notes(tmp_path)] == ["progress", "progress"]


def fake_instance():  # type: ignore[no-untyped-def]
    from fake_scheduler import FakeScheduler

    return FakeScheduler()
