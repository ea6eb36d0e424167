"""Exit codes that tell the truth, through the CLI with a scheduler fake (fast, real store):
0 every job completed, 3 the campaign ended incomplete, 4 not finished; `monitor --once`
stays a polling primitive (0 when the refresh worked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.states import TaskState
from fake_scheduler import SharedFake
from test_ops_submit import CAMPAIGN

pytestmark = pytest.mark.usefixtures("fake_backend")


def campaign(tmp_path: Path, retries: int = 0, backoff: int = 60) -> list[str]:
    """A six-job campaign on the fake backend, submitted; the common arguments."""
    config = tmp_path / "campaign.yaml"
    text = CAMPAIGN.replace("max_retries: 2", f"max_retries: {retries}")
    config.write_text(text.replace("base_seconds: 60", f"base_seconds: {backoff}"))
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    assert main(["submit", *args, "--backend", "fake"]) == 0
    return args


def fake() -> SharedFake:
    assert SharedFake.instance is not None
    return SharedFake.instance


def fail_everything(exit_code: int = 5) -> None:
    """Every task runs and fails (the worker writes real manifests)."""
    for array in fake().arrays.values():
        text = (array.request.folder / "tasks.jsonl").read_text()
        lines = [json.loads(line) for line in text.splitlines()]
        for line in lines:
            for job in line["jobs"]:
                job["command"] = f"exit {exit_code}"
        body = "\n".join(json.dumps(line) for line in lines) + "\n"
        (array.request.folder / "tasks.jsonl").write_text(body)
    fake().run()


def codes(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    """Exit codes of the reporting commands, in a fixed order."""
    out = {
        "monitor --once": main(["monitor", *args, "--once", "--json"]),
        "status --check": main(["status", *args, "--check"]),
        "monitor": main(["monitor", *args, "--interval", "0.01", "--json"]),
        "qa": main(["qa", *args]),
    }
    capsys.readouterr()
    return out


def test_every_job_completed_is_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = campaign(tmp_path)
    fake().run()
    assert codes(args, capsys) == {"monitor --once": 0, "status --check": 0, "monitor": 0, "qa": 0}
    assert main(["monitor", *args, "--submit", "--interval", "0.01"]) == 0


def test_jobs_failed_for_good_is_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = campaign(tmp_path, retries=0)
    fail_everything()
    assert codes(args, capsys) == {"monitor --once": 0, "status --check": 3, "monitor": 3, "qa": 3}
    assert main(["monitor", *args, "--submit", "--interval", "0.01"]) == 3
    assert main(["status", *args]) == 0  # without --check, status only reports


def test_waiting_for_a_retry_is_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = campaign(tmp_path, retries=2, backoff=3600)
    fail_everything()
    # Nothing is queued or running, but every job waits an hour for its retry: a blocking
    # `monitor` without --submit cannot make progress and says so.
    assert codes(args, capsys) == {"monitor --once": 0, "status --check": 4, "monitor": 4, "qa": 4}
    main(["status", *args, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["outcome"] == "unfinished" and report["failures"]["retry_waiting"] == 6


def test_a_cancelled_campaign_is_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = campaign(tmp_path)
    fake().set_all(TaskState.RUNNING)
    assert main(["monitor", *args, "--once"]) == 0
    assert main(["cancel", *args]) == 0
    assert main(["status", *args, "--check"]) == 3


def test_every_file_the_campaign_writes_honours_the_umask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shared results: group members can read what the campaign wrote (no 0600 files)."""
    import os
    import stat

    old = os.umask(0o027)
    try:
        args = campaign(tmp_path)
        fake().run()
        assert main(["monitor", *args, "--once"]) == 0
        assert main(["qa", *args]) == 0
        assert main(["status", *args, "--export", str(tmp_path / "f1_fake" / "jobs.csv")]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
        for p in (tmp_path / "f1_fake").rglob("*")
        if p.is_file()
    }
    kinds = {Path(name).suffix for name in modes}
    assert {".json", ".jsonl", ".yaml", ".png", ".csv", ".log", ".db"} <= kinds, kinds
    wrong = {name: oct(mode) for name, mode in modes.items() if mode != 0o640}
    assert not wrong, wrong
