"""Triage and bulk actions through the CLI, with a scheduler fake (real store, real worker):
failure counts with "and N more", `status --jobs` filters, `retry --reset` and `submit` on a
selection, the task log's header and footer, output that never wraps in a pipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.selection import parse_match, select
from campaigns.core.states import TaskState
from campaigns.errors import InputError
from test_exit_codes import campaign, fail_everything, fake

pytestmark = pytest.mark.usefixtures("fake_backend")


def out_of(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> str:
    assert main(argv) == code, capsys.readouterr().err
    return capsys.readouterr().out


def test_status_counts_classes_and_says_how_many_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path, retries=0)
    fail_everything(exit_code=7)
    assert main(["monitor", *args, "--once"]) == 0
    text = out_of(["status", *args], capsys)
    assert "failed by class: exit_code 6" in text and "exhausted 6" in text
    assert "... and 1 more: `status --jobs --state failed`" in text


def test_status_jobs_with_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = campaign(tmp_path, retries=0)
    fail_everything(exit_code=7)
    main(["monitor", *args, "--once"])
    capsys.readouterr()
    report = json.loads(
        out_of(
            [
                "status",
                *args,
                "--json",
                "--state",
                "failed",
                "--class",
                "exit_code",
                "--match",
                "realization=2..4",
            ],
            capsys,
        )
    )
    assert [j["key"] for j in report["jobs"]] == ["realization=2", "realization=3", "realization=4"]
    assert report["jobs_matched"] == 3
    job = report["jobs"][0]
    assert job["exit_code"] == 7 and job["failure_class"] == "exit_code" and job["log"]
    text = out_of(["status", *args, "--jobs", "--match", "realization=0,5", "--limit", "1"], capsys)
    assert "realization=0" in text and "realization=5" not in text
    assert "... and 1 more (2 matched" in text
    assert "no job matches" in out_of(["status", *args, "--jobs", "--state", "running"], capsys)


def test_a_selection_error_names_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path)
    assert main(["status", *args, "--match", "realisation=1"]) == 2
    err = capsys.readouterr().err
    assert "no parameter 'realisation'" in err and "did you mean 'realization'" in err
    assert main(["status", *args, "--state", "faild"]) == 2
    assert "did you mean 'failed'" in capsys.readouterr().err
    assert main(["retry", *args, "--state", "failed"]) == 2  # a selection needs --reset
    assert "add it" in capsys.readouterr().err


def test_bulk_reset_of_exhausted_and_cancelled_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path, retries=0)
    fail_everything()
    main(["monitor", *args, "--once"])
    capsys.readouterr()
    text = out_of(
        ["retry", *args, "--reset", "--state", "failed", "--match", "realization=..2"], capsys
    )
    assert "started 3 jobs over (pending, fresh attempt budget)" in text
    report = json.loads(out_of(["status", *args, "--json"], capsys))
    assert report["counts"]["pending"] == 3 and report["counts"]["failed"] == 3
    # Cancel what runs, then `submit` says how to resume the cancelled jobs.
    out_of(["submit", *args, "--backend", "fake"], capsys)
    fake().set_all(TaskState.RUNNING)
    main(["monitor", *args, "--once"])
    out_of(["cancel", *args], capsys)
    text = out_of(["submit", *args, "--backend", "fake"], capsys)
    assert "3 jobs are cancelled" in text and "retry --reset --state cancelled" in text
    text = out_of(["retry", *args, "--reset", "--state", "cancelled", "--submit"], capsys)
    assert "started 3 jobs over" in text and "submitted 3 jobs" in text


def test_submit_a_selection_of_pending_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.yaml"
    from test_ops_submit import CAMPAIGN

    config.write_text(CAMPAIGN)
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    capsys.readouterr()
    report = json.loads(
        out_of(
            ["submit", *args, "--backend", "fake", "--match", "realization=1,4", "--json"], capsys
        )
    )
    assert report["submitted_jobs"] == 2
    counts = json.loads(out_of(["status", *args, "--json"], capsys))["counts"]
    assert counts["queued"] == 2 and counts["pending"] == 4


def test_the_task_log_says_what_ran_where_and_how_it_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path, retries=0)
    fail_everything(exit_code=9)
    main(["monitor", *args, "--once"])
    capsys.readouterr()
    report = json.loads(out_of(["status", *args, "--json", "--jobs", "--limit", "1"], capsys))
    log = Path(report["jobs"][0]["log"]).read_text()
    assert "command: exit 9" in log and "host: " in log and "working directory: " in log
    assert "attempt 1 failed (exit code 9): exit code 9 after " in log


def test_piped_output_is_not_wrapped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4)
    deep.mkdir()
    args = campaign(deep)
    text = out_of(["status", *args], capsys)
    assert any(str(deep) in line and len(line) > 80 for line in text.splitlines())


def test_selection_parsing_is_pure() -> None:
    match = parse_match("z=1.5..", ["z"])
    assert match.admits(2) and match.admits(1.5) and not match.admits(1)
    assert parse_match("flag=true", ["flag"]).admits(True)
    assert not parse_match("n=1", ["n"]).admits(True)  # true never matches 1
    assert parse_match("n=2", ["n"]).admits(2.0)
    chosen = select(states=["failed,cancelled"], parameters=["n"])
    assert chosen.describe() == "--state cancelled,failed"
    with pytest.raises(InputError, match="range is empty"):
        parse_match("n=5..1", ["n"])
    with pytest.raises(InputError, match="not NAME=VALUE"):
        parse_match("n", ["n"])


def test_the_live_screen_measures_throughput_over_a_window() -> None:
    from datetime import datetime, timezone

    from campaigns.cli.live import Throughput, progress_text
    from campaigns.ops.reports import StatusReport

    meter = Throughput(window=60)
    for second, done in [(0, 0), (30, 10), (60, 20), (90, 50)]:
        meter.add(second, done)
    assert meter.per_second() == pytest.approx(40 / 60)  # the first sample left the window
    counts = {
        "pending": 0,
        "queued": 40,
        "running": 0,
        "completed": 50,
        "failed": 10,
        "cancelled": 0,
    }
    soon = datetime(2026, 1, 1, 12, 30, tzinfo=timezone.utc)
    report = StatusReport(
        "C",
        "v1",
        "/c",
        100,
        counts,
        {"exit_code": 10},
        0,
        10,
        0,
        "/l",
        "local",
        1,
        [],
        next_retry_at=soon,
    )
    text = progress_text(report, meter.per_second(), 125)
    assert text == (
        "elapsed 2m05s; 40.0 jobs/min, ETA 75s; 10 wait for a retry, next at 12:30:00 UTC"
    )
