"""The autopilot: the pure scrontab/batch texts, and a local campaign run to the end by the
detached ticker with no other command (ticks skip a held lock; a killed tick is survived)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.spec import Machine, Resources
from campaigns.core.ticks import tick_options
from campaigns.errors import ConfigError
from campaigns.ops.autopilot import tick_job
from campaigns.ops.lock import CampaignLock
from campaigns.ops.manager import CampaignManager
from campaigns.scheduler.base import TickJob
from campaigns.scheduler.slurm_autopilot import (
    batch_script,
    cron_schedule,
    crontab_block,
    pinned,
    without_block,
)
from waiting import wait_for

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


def test_a_failed_sbatch_begin_is_written_down_for_the_tick() -> None:
    (queue,) = [line for line in batch_script(JOB).splitlines() if "--begin=" in line]
    assert queue.endswith(
        "2>/r/v1_x/logs/autopilot/sbatch.err || cp /r/v1_x/logs/autopilot/sbatch.err "
        "/r/v1_x/logs/autopilot/chain-broken"
    )


def test_the_tick_is_placed_from_one_place() -> None:
    resources = Resources(account="m1234", partition="regular", qos="regular", constraint="cpu")
    campaign = (("account", "m1234"), ("partition", "regular"), ("qos", "regular"))
    assert tick_options(Machine("nersc"), resources) == (*campaign, ("constraint", "cpu"))
    # A site's QOS for small recurring jobs places the tick alone; the account stays ours.
    cron = Machine("nersc", tick=(("qos", "cron"),))
    assert tick_options(cron, resources) == (("account", "m1234"), ("qos", "cron"))
    assert tick_options(Machine("x", tick=(("qos", "cron"), ("account", "m9"))), Resources()) == (
        ("account", "m9"),
        ("qos", "cron"),
    )
    assert tick_options(Machine("local"), Resources()) == ()


def test_a_machine_file_names_where_ticks_run(tmp_path: Path) -> None:
    machine = tmp_path / "site.yaml"
    machine.write_text("machine: {name: site, backend: slurm, tick: {qos: cron}}\n")
    config = tmp_path / "campaign.yaml"
    config.write_text(
        CAMPAIGN.format(n=2, command='"true"').replace("machine: local", "machine: site.yaml")
    )
    manager = CampaignManager(config, root=tmp_path)
    assert tick_job(manager, 300).sbatch_options == (("qos", "cron"),)
    machine.write_text("machine: {name: site, tick: {qos: cron, nice: 10}}\n")
    with pytest.raises(ConfigError, match="nice"):  # only placement keys: no priority games
        CampaignManager(config, root=tmp_path)


def write(tmp_path: Path, n: int, command: str) -> list[str]:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN.format(n=n, command=command))
    return [str(config), "--root", str(tmp_path)]


def folder(tmp_path: Path) -> Path:
    """The campaign's logs/autopilot/."""
    return tmp_path / "p1_pilot" / "logs" / "autopilot"


def wait_until_off(args: list[str], capsys: pytest.CaptureFixture[str], timeout: float) -> dict:
    def off() -> dict | None:
        assert main(["autopilot", *args, "--status", "--json"]) == 0
        report: dict = json.loads(capsys.readouterr().out)
        # Off, and said so: the stop file comes first, then the log line.
        done = not report["active"] and "autopilot removed" in (report["last_tick"] or "")
        return report if done else None

    return wait_for(off, timeout=timeout, what="the autopilot to switch itself off")


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


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, not yet reaped by its parent, has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


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
    # Kill the first two ticks the ticker starts: it carries on with the next one. (Waiting
    # on the kills, not for a fixed time: a loaded machine starts ticks late.)
    killed: list[int] = []
    deadline = time.monotonic() + 120
    while len(killed) < 2 and not (folder(tmp_path) / "stop").exists():
        for pid in set(tick_processes(args[0])) - set(killed):
            with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        assert time.monotonic() < deadline, f"no tick to kill after 120 s: {killed}"
        time.sleep(0.05)
    assert killed
    report = wait_until_off(args, capsys, timeout=180)
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
    # "Off" means no tick starts any more; the tick that said so may still be exiting (on a
    # loaded machine, for a while), and then the ticker ends. Nothing ticks after the end.
    ticker = int((folder(tmp_path) / "ticker.pid").read_text())
    wait_for(
        lambda: not tick_processes(args[0]) and not alive(ticker),
        timeout=60,
        what="the last tick and the ticker to exit",
    )
    assert Path(report["log"]).read_text().splitlines() == log
    assert "autopilot removed: campaign finished (complete)" in log[-1]


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
