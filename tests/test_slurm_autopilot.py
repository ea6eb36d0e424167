"""The autopilot on the real Slurm: a campaign runs to the end with no command but `init`
and `autopilot`, through scrontab (the test cluster enables it) and through the
self-queueing batch job used where scrontab is missing."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from campaigns.cli import main
from slurm_helpers import Cluster, write_campaign

pytestmark = pytest.mark.slurm


def run_under_autopilot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], title: str, *options: str
) -> tuple[list[str], dict]:
    # Job 0 fails once: the autopilot retries it after its backoff, with nobody watching.
    command = (
        "'if [ {i} = 0 ] && [ \"$CAMPAIGNS_ATTEMPT\" = 1 ]; then exit 3; fi; echo {i} > {output}'"
    )
    config = write_campaign(tmp_path, title, n=5, command=command, batch=3, retries=1)
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    assert main(["autopilot", *args, "--backend", "slurm", *options]) == 0
    capsys.readouterr()
    deadline = time.monotonic() + 300
    try:
        while True:  # observe only: `status` reads the store and asks no scheduler
            assert main(["status", *args, "--json"]) == 0
            report = json.loads(capsys.readouterr().out)
            if report["finished"]:
                break
            assert time.monotonic() < deadline, report
            time.sleep(3)
    except BaseException:
        main(["autopilot", *args, "--stop"])  # no tick may outlive a failed test
        raise
    time.sleep(2)  # the finishing tick removes the autopilot right after the last update
    assert main(["autopilot", *args, "--status", "--json"]) == 0
    return args, {"status": report, "autopilot": json.loads(capsys.readouterr().out)}


def test_scrontab_runs_a_campaign_to_the_end(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, seen = run_under_autopilot(tmp_path, capsys, "autopilot cron", "--interval", "60")
    assert seen["status"]["outcome"] == "complete"
    assert seen["autopilot"]["method"] == "scrontab" and not seen["autopilot"]["active"]
    assert "campaign finished (complete)" in seen["autopilot"]["last_tick"]
    crontab = subprocess.run(["scrontab", "-l"], capture_output=True, text=True).stdout
    assert "campaigns autopilot" not in crontab  # it removed itself
    assert main(["status", *args, "--check"]) == 0


def test_the_batch_chain_runs_a_campaign_to_the_end(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args, seen = run_under_autopilot(
        tmp_path, capsys, "autopilot batch", "--interval", "5", "--method", "batch"
    )
    assert seen["status"]["outcome"] == "complete"
    assert seen["autopilot"]["method"] == "batch" and not seen["autopilot"]["active"]
    log = Path(seen["autopilot"]["log"]).read_text()
    assert "retried 1" in log and "campaign finished (complete)" in log
    assert main(["status", *args, "--check"]) == 0
