"""Failure recovery, packing and crash safety on the real Slurm cluster.

Retry timing uses the real clock, so backoffs here are a few seconds long.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from slurm_helpers import (
    Cluster,
    attempts,
    campaign_dir,
    jobs,
    monitor_until_done,
    ok,
    run,
    run_until_finished,
    status,
    write_campaign,
)

pytestmark = pytest.mark.slurm

#: Recovery campaigns: exact backoff (no jitter), a permanent exit code, quick infra retries.
RECOVERY_EXECUTION = """\
  jobs_per_task: {per_task}
  retry_policy: {{permanent_exit_codes: [64], infrastructure_delay_seconds: 1}}
"""
THREE_CPUS = "job_types:\n  three_cpus: {nodes: 1, ntasks_per_node: 1, cpus_per_task: 3}\n"


def make(
    tmp_path: Path,
    title: str,
    command: str,
    *,
    base: float = 1,
    per_task: int = 1,
    **settings: Any,
) -> Path:
    """A recovery campaign: one job and two retries unless `settings` (write_campaign's
    n, retries, hours, batch, job_type) say otherwise."""
    backoff = f"{{base_seconds: {base}, factor: 2, max_seconds: 60, jitter: 0.0}}"
    execution = RECOVERY_EXECUTION.format(per_task=per_task)
    options = {"n": 1, "retries": 2, **settings}
    return write_campaign(
        tmp_path,
        title,
        command=command,
        backoff=backoff,
        execution=execution,
        extra=THREE_CPUS,
        prefix="Recovery",
        **options,
    )


def start(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> Path:
    ok(["init", str(config), "--root", str(root)], capsys)
    directory = campaign_dir(config, root, capsys)
    leftovers.append(directory)
    ok(["submit", str(config), "--root", str(root), "--backend", "slurm"], capsys)
    return directory


def retry_submit(config: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(ok(["retry", str(config), "--root", str(root), "--submit", "--json"], capsys))


def test_failing_once_then_succeeding_waits_for_its_backoff(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    command = "'test \"$CAMPAIGNS_ATTEMPT\" != 1 || exit 7; echo ok > {output}'"
    config = make(tmp_path, "once", command, base=12)
    directory = start(config, tmp_path, capsys, leftovers)
    report = monitor_until_done(config, tmp_path, capsys)
    assert report["counts"]["failed"] == 1
    (job,) = status(config, tmp_path, capsys, "--verbose")["jobs"]
    due = datetime.fromisoformat(job["next_retry_at"].replace("Z", "+00:00"))
    # Before the backoff elapsed, retry --submit resubmits nothing.
    early = retry_submit(config, tmp_path, capsys)
    assert early["reset"] == [] and [w["key"] for w in early["waiting"]] == ["i=0"]
    assert early["submit"] is None
    assert len(attempts(directory)) == 1
    while datetime.now(due.tzinfo) < due:
        time.sleep(0.5)
    later = retry_submit(config, tmp_path, capsys)
    assert later["reset"] == ["i=0"] and later["submit"]["submitted_jobs"] == 1
    report = monitor_until_done(config, tmp_path, capsys)
    assert report["counts"]["completed"] == 1
    first, second = attempts(directory)
    assert (first["state"], first["exit_code"], second["state"]) == ("failed", 7, "completed")
    assert second["scheduler_id"] != first["scheduler_id"]
    assert datetime.fromisoformat(str(second["started_at"])).replace(tzinfo=due.tzinfo) >= due


def test_always_failing_job_stops_after_max_retries_plus_one(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = make(tmp_path, "always", "'echo nope >&2; exit 3'", retries=2, base=1)
    directory = start(config, tmp_path, capsys, leftovers)
    report = run_until_finished(config, tmp_path, capsys)
    assert report["counts"]["failed"] == 1 and report["failures"]["exhausted"] == 1
    assert [a["number"] for a in attempts(directory)] == [1, 2, 3]
    # Never resubmitted after that.
    again = retry_submit(config, tmp_path, capsys)
    assert again["reset"] == [] and again["submit"] is None
    assert [e["key"] for e in again["exhausted"]] == ["i=0"]
    assert len(attempts(directory)) == 3


def test_permanent_exit_code_is_not_retried(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = make(tmp_path, "permanent", "'exit 64'", retries=3)
    directory = start(config, tmp_path, capsys, leftovers)
    argv = ["monitor", str(config), "--root", str(tmp_path), "--interval", "1", "--submit"]
    code, out, err = run([*argv, "--json"], capsys)
    assert code == 3, err  # the campaign ended incomplete: its one job failed for good
    report = json.loads(out.splitlines()[-1])
    assert report["finished"] and report["failures"]["exhausted"] == 1
    (attempt,) = attempts(directory)
    assert attempt["exit_code"] == 64 and attempt["failure_class"] == "exit_code"


@pytest.mark.slow
def test_timeout_is_retried_with_a_longer_limit(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    # The job only finishes when its time limit is longer than one minute.
    command = (
        "'limit=$(squeue -h -j $SLURM_JOB_ID -o %l); echo limit=$limit; "
        'if [ "$limit" = "1:00" ]; then sleep 600; fi; echo ok > {output}\''
    )
    config = make(tmp_path, "timeout", command, retries=2, hours=1 / 60)
    directory = start(config, tmp_path, capsys, leftovers)
    report = run_until_finished(config, tmp_path, capsys, timeout=300, interval=2)
    assert report["counts"]["completed"] == 1
    first, second = attempts(directory)
    assert first["failure_class"] == "timeout" and first["time_minutes"] == 1
    assert second["state"] == "completed" and second["time_minutes"] == 2


def test_packed_tasks_run_jobs_alone_and_retry_only_the_failed_one(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    # 12 jobs, 4 per task: 3 tasks. Job 5 fails on its first attempt only.
    command = (
        "'if [ {i} = 5 ] && [ \"$CAMPAIGNS_ATTEMPT\" = 1 ]; then exit 9; fi; echo {i} > {output}'"
    )
    config = make(tmp_path, "packed", command, n=12, per_task=4, retries=1, base=1)
    directory = start(config, tmp_path, capsys, leftovers)
    report = monitor_until_done(config, tmp_path, capsys)
    assert report["counts"] == {**report["counts"], "completed": 11, "failed": 1}
    first_attempts = attempts(directory)
    assert len({a["scheduler_id"] for a in first_attempts}) == 3  # 3 array tasks
    assert {a["task_index"] for a in first_attempts} == {0, 1, 2}
    (failed,) = [
        j for j in status(config, tmp_path, capsys, "--verbose")["jobs"] if j["key"] == "i=5"
    ]
    due = datetime.fromisoformat(failed["next_retry_at"].replace("Z", "+00:00"))
    while datetime.now(due.tzinfo) < due:  # its backoff (1 s from its end) elapses
        time.sleep(0.2)
    again = retry_submit(config, tmp_path, capsys)
    assert again["reset"] == ["i=5"]
    report = monitor_until_done(config, tmp_path, capsys)
    assert report["counts"]["completed"] == 12
    numbers = {(a["job_id"], a["number"]) for a in attempts(directory)}
    assert len(numbers) == 13  # only job 5 ran twice
    logs = {a["log_path"] for a in first_attempts}
    assert len(logs) == 3
    text = Path(sorted(logs)[1]).read_text()
    assert text.count("===== job i=") == 8  # 4 jobs, a start and an end line each


@pytest.mark.slow
def test_packed_task_killed_by_time_limit_fails_only_unfinished_jobs(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    # 3 jobs in one 3-cpu task, all at once: jobs 0 and 1 finish, job 2 sleeps past the limit.
    command = "'if [ {i} = 2 ]; then sleep 600; fi; echo {i} > {output}'"
    config = make(
        tmp_path,
        "packed-timeout",
        command,
        n=3,
        per_task=3,
        retries=0,
        hours=1 / 60,
        job_type="three_cpus",
    )  # one wave: a 1-minute task limit
    directory = start(config, tmp_path, capsys, leftovers)
    report = monitor_until_done(config, tmp_path, capsys, timeout=240, interval=2)
    states = {j["key"]: (j["state"], j["failure_class"]) for j in jobs(directory)}
    assert states == {
        "i=0": ("completed", None),
        "i=1": ("completed", None),
        "i=2": ("failed", "timeout"),
    }, report


@pytest.mark.parametrize("seed", range(4))
def test_submit_killed_at_random_points_runs_every_job_exactly_once(
    cluster: Cluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leftovers: list[Path],
    seed: int,
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    command = f"'echo $CAMPAIGNS_ATTEMPT >> {runs}/{{i}}; echo x > {{output}}'"
    config = make(tmp_path, f"kill{seed}", command, n=30, batch=7)
    ok(["init", str(config), "--root", str(tmp_path)], capsys)
    leftovers.append(campaign_dir(config, tmp_path, capsys))
    delay = random.Random(seed).uniform(0.2, 2.0)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "campaigns",
            "submit",
            str(config),
            "--root",
            str(tmp_path),
            "--backend",
            "slurm",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ok(["submit", str(config), "--root", str(tmp_path), "--backend", "slurm"], capsys)
    report = monitor_until_done(config, tmp_path, capsys, timeout=240)
    assert report["counts"]["completed"] == 30, report
    counts = {p.name: p.read_text().split() for p in runs.iterdir()}
    assert len(counts) == 30 and all(v == ["1"] for v in counts.values()), counts


@pytest.mark.mpi
def test_mpi_example_runs_with_two_ranks_and_passes_qa(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    from campaigns.cli import main

    example = Path(__file__).resolve().parents[1] / "config" / "examples" / "mpi_campaign.yaml"
    directory = start(example, tmp_path, capsys, leftovers)
    report = monitor_until_done(example, tmp_path, capsys)
    assert report["counts"]["completed"] == 4, report
    logs = {j["log"] for j in status(example, tmp_path, capsys, "--verbose")["jobs"]}
    assert all("with 2 rank(s)" in Path(log).read_text() for log in logs)
    assert main(["qa", str(example), "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    assert len(list((directory / "catalogs").rglob("*.hdf5"))) == 4
