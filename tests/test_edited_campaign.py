"""A campaign file edited after `init`: the campaign keeps running as recorded. `status`,
`monitor`, `cancel` and `qa` work (jobs can always be stopped), `submit` and `retry`
refuse and say why, the autopilot's tick runs the recorded campaign and tells the edit
once (log and notifier), and `autopilot --status` shows failed and missed ticks.

Tests that take the `database` fixture run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.errors import SiteConfigError
from campaigns.ops import autopilot
from campaigns.ops.context import utcnow
from campaigns.ops.manager import CampaignManager
from fake_scheduler import SharedFake
from waiting import wait_for

CAMPAIGN = """\
campaign: {{name: "Edited", version: "e1", machine: local}}
parameters:
  i: {{range: [0, {n}]}}
job:
  command: "{command}"
  output: "out/{{i}}.txt"
execution: {{batch_size: 2, max_retries: 1, retry_backoff: {{base_seconds: 1, jitter: 0}}}}
notify: {{command: "cat >> {notified}"}}
"""


def write(tmp_path: Path, command: str, n: int = 4) -> list[str]:
    config = tmp_path / "campaign.yaml"
    notified = tmp_path / "notified.jsonl"
    config.write_text(CAMPAIGN.format(n=n, command=command, notified=notified))
    return [str(config), "--root", str(tmp_path)]


def edit(args: list[str], old: str, new: str) -> None:
    config = Path(args[0])
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_emergency_command_works_on_the_recorded_campaign(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    nap = f"sleep {60 + os.getpid() % 1000 / 1000:.3f}"  # unique: pgrep sees only ours
    args = write(tmp_path, f"{nap}; echo {{i}} > {{output}}")
    assert cli(["init", *args], capsys)[0] == 0
    assert cli(["submit", *args, "--backend", "local"], capsys)[0] == 0
    edit(args, f"{nap};", f"{nap} --verbose;")  # a one-flag change to the command

    code, out, err = cli(["status", *args, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["counts"]["queued"] + json.loads(out)["counts"]["running"] == 4
    assert "has changed since `init`" in err and "--verbose" in err and "as recorded" in err
    code, _, err = cli(["monitor", *args, "--once", "--json"], capsys)
    assert code == 0, err
    for command in (["submit", *args, "--backend", "local"], ["retry", *args, "--submit"]):
        code, _, err = cli(command, capsys)
        assert code == 2 and "refused" in err and f"init --force {args[0]}" in err, err
        assert "`cancel`" in err  # ... and what still works
    code, out, err = cli(["cancel", *args], capsys)
    assert code == 0 and "cancelled 4 jobs" in out, err
    wait_for(
        lambda: not subprocess.run(["pgrep", "-f", nap], capture_output=True).stdout,
        timeout=60,
        what="the cancelled jobs to end",
    )
    code, _, err = cli(["qa", *args], capsys)
    assert code != 2, err

    # A broken edit (a typo) blocks nothing either; `init` names the mistake.
    edit(args, "batch_size: 2", "batch_sise: 2")
    code, out, err = cli(["status", *args, "--json"], capsys)
    assert code == 0 and json.loads(out)["counts"]["cancelled"] == 4
    assert "no longer validates" in err and "batch_sise" in err
    code, _, err = cli(["init", *args, "--force"], capsys)
    assert code == 2 and "did you mean 'batch_size'" in err


def test_the_tick_runs_the_recorded_campaign_and_tells_the_edit_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    args = write(tmp_path, "echo old > {output}")
    assert cli(["init", *args], capsys)[0] == 0
    edit(args, "echo old", "echo new")
    edit(args, "range: [0, 4]", "range: [0, 6]")
    log = tmp_path / "e1_edited" / "logs" / "autopilot.log"
    deadline = time.monotonic() + 120
    while True:  # ticks by hand, as the installed autopilot runs them
        code, _, err = cli(["autopilot", *args, "--tick", "--backend", "local"], capsys)
        assert code == 0, err
        if "campaign finished" in log.read_text():
            break
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)  # the poll interval: the jobs run meanwhile
    outputs = sorted((tmp_path / "e1_edited" / "catalogs" / "out").iterdir())
    assert [p.read_text() for p in outputs] == ["old\n"] * 4  # the campaign as recorded
    lines = log.read_text().splitlines()
    told = [line for line in lines if "campaign file changed:" in line]
    assert len(told) == 1, lines  # once per edit, not once per tick
    assert "job.command" in told[0] and "echo new" in told[0]
    assert "`init --force` would adopt it: 2 jobs added" in told[0]
    assert all("running the campaign as recorded" in line for line in lines[1:-1])
    events = [json.loads(line) for line in (tmp_path / "notified.jsonl").read_text().splitlines()]
    changed = [e for e in events if e["event"] == "config_changed"]
    assert len(changed) == 1 and "2 jobs added" in changed[0]["detail"]


def test_a_failed_tick_is_logged_and_shown(
    tmp_path: Path, fake_backend: type[SharedFake], capsys: pytest.CaptureFixture[str]
) -> None:
    args = write(tmp_path, "echo {i} > {output}")
    assert cli(["init", *args], capsys)[0] == 0
    fake = SharedFake.from_machine(None)  # type: ignore[arg-type]
    fake.refusals.append(SiteConfigError("sbatch: error: invalid partition specified: nope"))
    code, _, err = cli(["autopilot", *args, "--tick", "--backend", "fake"], capsys)
    assert code == 1 and "invalid partition" in err
    log = (tmp_path / "e1_edited" / "logs" / "autopilot.log").read_text().splitlines()
    assert "tick failed: sbatch: error: invalid partition" in log[-1] and "(exit 1)" in log[-1]
    code, out, _ = cli(["autopilot", *args, "--status", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["failed_ticks"] == 1
    assert any("the last tick failed: sbatch: error" in p for p in report["problems"])
    assert cli(["autopilot", *args, "--status"], capsys)[1].count("! the last tick failed") == 1


def test_missed_ticks_and_a_dead_ticker_are_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write(tmp_path, "echo {i} > {output}")
    assert cli(["init", *args], capsys)[0] == 0
    edit(args, "echo {i}", "echo {i} {i}")
    code, _, err = cli(["autopilot", *args, "--backend", "local", "--interval", "3600"], capsys)
    assert code == 0, err
    try:
        later = CampaignManager(args[0], root=args[2], clock=lambda: utcnow() + timedelta(hours=3))
        report = autopilot.status(later)
        assert report.active and report.missed_ticks == 2, report
        assert any("no tick logged since" in p and "ticker.out" in p for p in report.problems)
        assert any("ticks run the campaign as recorded" in p for p in report.problems)
        code, out, _ = cli(["autopilot", *args, "--status"], capsys)
        assert code == 0 and "next tick about" in out and "no tick logged" not in out
        # The ticker dies (a reboot, an OOM kill): nothing ticks, and status says so.
        folder = tmp_path / "e1_edited" / "logs" / "autopilot"
        os.kill(int((folder / "ticker.pid").read_text()), signal.SIGKILL)
        report = wait_for(
            lambda: next((r for r in [autopilot.status(later)] if not r.active), None),
            timeout=30,
            what="the ticker to be gone",
        )
        assert any("ended without being stopped" in p for p in report.problems), report
    finally:
        assert main(["autopilot", *args, "--stop"]) == 0
