"""The autopilot: the pure scrontab/batch texts, and a local campaign run to the end by the
detached ticker with no other command (ticks skip a held lock; a killed tick is survived)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.ops.lock import CampaignLock
from campaigns.scheduler.base import TickJob
from campaigns.scheduler.slurm_autopilot import (
    batch_script,
    cron_schedule,
    crontab_block,
    pinned,
    without_block,
)

JOB = TickJob(
    "v1_x-0123abcd",
    ("/venv/bin/python", "-m", "campaigns", "autopilot", "/c.yaml", "--tick", "--root", "/r"),
    300.0,
    Path("/r/v1_x/logs/autopilot"),
    (("account", "m1234"), ("qos", "cron")),
)

CAMPAIGN = """\
campaign: {{name: "Pilot", version: "p1", machine: local}}
parameters:
  i: {{range: [0, {n}]}}
job:
  command: {command}
  output: "out/{{i}}.txt"
execution: {{batch_size: 4, max_retries: 1, retry_backoff: {{base_seconds: 1, jitter: 0}}}}
"""


def test_cron_schedules() -> None:
    assert cron_schedule(30) == "* * * * *"  # at least a minute; Slurm refuses */1
    assert cron_schedule(300) == "*/5 * * * *"
    assert cron_schedule(3600) == "0 * * * *"
    assert cron_schedule(6 * 3600) == "0 */6 * * *"


def test_the_scrontab_block_keeps_other_entries() -> None:
    block = crontab_block(JOB)
    assert block[0] == "# campaigns autopilot v1_x-0123abcd begin"
    assert "--job-name=cmp-auto-v1_x-0123abcd" in block[1] and "--account=m1234" in block[1]
    assert block[2].startswith("*/5 * * * * /venv/bin/python -m campaigns autopilot /c.yaml")
    theirs = ["# my own", "0 3 * * * backup.sh"]
    assert without_block([*theirs[:1], *block, *theirs[1:]], JOB.tag) == theirs


def test_the_tick_keeps_the_cluster_it_was_installed_on() -> None:
    conf = "/etc/slurm-perlmutter/slurm.conf"
    tick = pinned(JOB, {"SLURM_CONF": conf})
    assert tick.argv[:2] == ("env", f"SLURM_CONF={conf}") and tick.argv[2:] == JOB.argv
    assert crontab_block(tick)[2].startswith(f"*/5 * * * * env SLURM_CONF={conf} /venv/bin/")
    assert pinned(tick, {"SLURM_CONF": conf}) == tick  # installed twice: pinned once
    assert pinned(JOB, {}) == JOB


def test_the_batch_tick_queues_the_next_one_before_it_runs() -> None:
    text = batch_script(JOB)
    assert "#SBATCH --qos=cron" in text and "#SBATCH --account=m1234" in text
    lines = text.splitlines()
    stop = next(i for i, line in enumerate(lines) if "logs/autopilot/stop ] && exit 0" in line)
    queue = next(i for i, line in enumerate(lines) if "--begin=now+300" in line)
    run = next(i for i, line in enumerate(lines) if line.startswith("exec /venv/bin/python"))
    assert stop < queue < run


def write(tmp_path: Path, n: int, command: str) -> list[str]:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN.format(n=n, command=command))
    return [str(config), "--root", str(tmp_path)]


def wait_until_off(args: list[str], capsys: pytest.CaptureFixture[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert main(["autopilot", *args, "--status", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        if not report["active"]:
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.5)


def tick_processes(config: str) -> list[int]:
    """Pids of running ticks of this campaign."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ticker = b"campaigns.node.ticker" in cmdline
            if b"--tick" in cmdline and config.encode() in cmdline and not ticker:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_a_local_campaign_runs_to_the_end_under_autopilot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Attempt 1 of every third job fails: the autopilot must retry it after its backoff.
    command = (
        '\'if [ $(( {i} % 3 )) = 0 ] && [ "$CAMPAIGNS_ATTEMPT" = 1 ]; then exit 3; fi; '
        "sleep 0.3; echo {i} > {output}'"
    )
    args = write(tmp_path, 9, command)
    assert main(["init", *args]) == 0
    assert main(["autopilot", *args, "--backend", "local", "--interval", "1"]) == 0
    assert "autopilot on: a detached ticker process" in capsys.readouterr().out
    # Kill ticks as they appear, for a while: the ticker carries on with the next one.
    killed, deadline = 0, time.monotonic() + 4
    while time.monotonic() < deadline and killed < 2:
        for pid in tick_processes(args[0]):
            os.kill(pid, signal.SIGKILL)
            killed += 1
        time.sleep(0.05)
    assert killed >= 1
    report = wait_until_off(args, capsys, timeout=90)
    assert "campaign finished (complete)" in report["last_tick"]
    assert main(["status", *args, "--check", "--json", "--verbose"]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert {j["state"] for j in jobs} == {"completed"}
    # Nothing ran twice: attempts are 2 exactly for the jobs whose first attempt failed.
    assert {j["key"]: j["attempts"] for j in jobs} == {
        f"i={i}": 2 if i % 3 == 0 else 1 for i in range(9)
    }
    log = Path(report["log"]).read_text().splitlines()
    assert any("submitted" in line for line in log) and any("retried 3" in line for line in log)
    assert not tick_processes(args[0])


def test_a_tick_skips_when_another_manager_holds_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write(tmp_path, 2, '"echo {i} > {output}"')
    assert main(["init", *args]) == 0
    with CampaignLock(tmp_path / "p1_pilot" / "metadata" / "manager.lock"):
        assert main(["autopilot", *args, "--tick"]) == 0
    log = (tmp_path / "p1_pilot" / "logs" / "autopilot.log").read_text()
    assert "skipped: another manager holds the campaign lock" in log
    assert main(["status", *args, "--check"]) == 4  # nothing was submitted
