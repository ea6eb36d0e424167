"""The autopilot on the real Slurm: a campaign runs to the end with no command but `init`
and `autopilot`, through scrontab (the test cluster enables it) and through the
self-queueing batch job used where scrontab is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from campaigns.cli import main
from slurm_helpers import Cluster, campaign_dir, write_campaign
from waiting import wait_for

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
    # The finishing tick removes the autopilot right after the last update.
    return args, {"status": report, "autopilot": wait_until_off(args, capsys)}


def wait_until_off(
    args: list[str], capsys: pytest.CaptureFixture[str], timeout: float = 120
) -> dict:
    """`autopilot --status --json` once it says the autopilot is off."""

    def off() -> dict | None:
        assert main(["autopilot", *args, "--status", "--json"]) == 0
        report: dict = json.loads(capsys.readouterr().out)
        # Off, and said so: the stop file comes first, the log line once Slurm forgot the tick.
        done = not report["active"] and "autopilot removed" in (report["last_tick"] or "")
        return report if done else None

    return wait_for(off, timeout=timeout, what="the autopilot to remove itself")


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


def start_batch_chain(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leftovers: list[Path],
    title: str,
    *,
    n: int,
    command: str,
) -> list[str]:
    """A campaign under the batch-chain autopilot (a tick every 5 s); its CLI arguments."""
    config = write_campaign(tmp_path, title, n=n, command=command, batch=n, retries=1)
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    capsys.readouterr()
    leftovers.append(campaign_dir(config, tmp_path, capsys))
    code = main(["autopilot", *args, "--backend", "slurm", "--interval", "5", "--method", "batch"])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    return args


def autopilot_report(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["autopilot", *args, "--status", "--json"]) == 0
    report: dict = json.loads(capsys.readouterr().out)
    return report


def test_a_failed_sbatch_begin_does_not_end_the_batch_chain(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    # Each job takes a while, so that several ticks pass while the campaign runs.
    args = start_batch_chain(
        tmp_path,
        capsys,
        leftovers,
        "autopilot chain",
        n=3,
        command="'sleep 15; echo {i} > {output}'",
    )
    folder = leftovers[0] / "logs" / "autopilot"
    log = leftovers[0] / "logs" / "autopilot.log"
    try:
        # The next link's `sbatch --begin` fails for real: its script is gone.
        (folder / "tick.sbatch").unlink()
        wait_for(
            lambda: "the batch chain had broken" in log.read_text(),
            timeout=180,
            what=f"a tick to queue the chain again; the log: {log}",
        )
        assert "sbatch --begin failed" in log.read_text()  # what sbatch said, kept
        assert (folder / "tick.sbatch").exists() and not (folder / "chain-broken").exists()
        report = wait_until_off(args, capsys, timeout=300)
        assert "campaign finished (complete)" in report["last_tick"], report
        assert not report["problems"], report
    finally:
        main(["autopilot", *args, "--stop"])  # no tick may outlive a failed test


def test_a_chain_that_cannot_be_queued_again_says_so(
    cluster: Cluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leftovers: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # sbatch refuses every submission made inside a job (a QOS limit, say): the tick's own
    # `sbatch --begin` and the tick's attempt to queue the next one again both fail.
    real = shutil.which("sbatch")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "sbatch").write_text(
        "#!/bin/bash\n"
        'if [ -n "$SLURM_JOB_ID" ]; then\n'
        '  echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS '
        "policy (job submit limit, user's size and/or time limits)\" >&2; exit 1\n"
        f'fi\nexec {real} "$@"\n'
    )
    (shims / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    args = start_batch_chain(
        tmp_path, capsys, leftovers, "autopilot broken", n=2, command="'sleep 120'"
    )
    try:
        report = wait_for(
            lambda: next((r for r in [autopilot_report(args, capsys)] if not r["active"]), None),
            timeout=180,
            what="the chain to end",
        )
        problems = " | ".join(report["problems"])
        assert "the batch chain broke" in problems and "violates accounting/QOS" in problems
        assert "ended without being stopped" in problems and "`autopilot " in problems
        log = Path(report["log"]).read_text()
        assert "the batch chain is broken: no next tick is queued" in log
        assert main(["autopilot", *args, "--status"]) == 0
        assert "! the batch chain broke" in capsys.readouterr().out
    finally:
        main(["autopilot", *args, "--stop"])


def test_status_says_when_a_tick_waits_behind_the_campaign(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    # The campaign's tasks hold every CPU and more wait: the tick queues behind them.
    cpus = int(
        subprocess.run(
            ["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, check=True
        ).stdout.split("/")[-1]
    )
    config = write_campaign(
        tmp_path, "autopilot starved", n=cpus + 2, command="'sleep 300'", batch=cpus + 2
    )
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    capsys.readouterr()
    leftovers.append(campaign_dir(config, tmp_path, capsys))
    try:
        assert main(["submit", *args, "--backend", "slurm"]) == 0
        code = main(
            ["autopilot", *args, "--backend", "slurm", "--interval", "5", "--method", "batch"]
        )
        assert code == 0, capsys.readouterr().err
        capsys.readouterr()
        report = wait_for(
            lambda: next(
                (
                    r
                    for r in [autopilot_report(args, capsys)]
                    if any("has waited in the queue" in p for p in r["problems"])
                ),
                None,
            ),
            timeout=120,
            what="status to say that the tick waits",
        )
        assert report["active"]
        (said,) = [p for p in report["problems"] if "has waited in the queue" in p]
        assert "Slurm: " in said and "nothing is reconciled or retried" in said
    finally:
        main(["autopilot", *args, "--stop"])
        main(["cancel", *args])
