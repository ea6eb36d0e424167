"""The directives campaigns depends on stay its own: a campaign's `sbatch_options` cannot set
them (refused at `validate`), and `SBATCH_*` variables in the submitting environment (which
beat `#SBATCH` lines) never reach sbatch, as the real Slurm's `scontrol show job` shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.directives import RESERVED, reserved
from campaigns.scheduler.slurm_cli import environment
from campaigns.scheduler.slurm_text import expand_ranges
from slurm_helpers import (
    Cluster,
    campaign_dir,
    monitor_until_done,
    ok,
    submissions,
    write_campaign,
)

#: What a user's shell may hold: each would change the submitted array if sbatch saw it.
HOSTILE_ENVIRONMENT = {
    "SBATCH_REQUEUE": "1",
    "SBATCH_TIMELIMIT": "7",
    "SBATCH_JOB_NAME": "hijacked",
    "SBATCH_ARRAY_INX": "0-0",
    "SBATCH_OPEN_MODE": "truncate",
    "SBATCH_SIGNAL": "B:TERM@30",
    "SBATCH_OUTPUT": "/tmp/campaigns-hijacked-%A_%a.out",
    "SQUEUE_STATES": "RUNNING",
    "SQUEUE_FORMAT": "%i",
    "SACCT_FORMAT": "JobID",
    "SLURM_CLUSTERS": "no-such-cluster",
}


@pytest.mark.parametrize(
    ("key", "option"),
    [
        ("requeue", "requeue"),
        ("no_requeue", "no-requeue"),
        ("--requeue", "requeue"),
        ("req", "requeue"),  # sbatch takes any unambiguous start of a long option
        ("signal", "signal"),
        ("job-name", "job-name"),
        ("J", "job-name"),
        ("array", "array"),
        ("output", "output"),
        ("time", "time"),
        ("mem", "mem"),
        ("partition", "partition"),
        ("wait", "wait"),
    ],
)
def test_a_directive_campaigns_writes_is_reserved(key: str, option: str) -> None:
    found = reserved(key)
    assert found is not None and found[0] == option, found


@pytest.mark.parametrize(
    "key", ["licenses", "exclusive", "gpus", "ntasks", "mail-type", "reservation", "hold"]
)
def test_other_options_pass_through(key: str) -> None:
    assert reserved(key) is None


BASE = """\
campaign: {name: "Directives", version: "d1", machine: local}
parameters:
  i: [0, 1]
job:
  command: "echo {i} > {output}"
  output: "{i}.txt"
"""


@pytest.mark.parametrize(
    ("section", "key_path"),
    [
        (
            "resources:\n  sbatch_options: {licenses: scratch, requeue: true}\n",
            "resources.sbatch_options.requeue",
        ),
        (
            "resources:\n  sbatch_options: {signal: 'B:TERM@60'}\n",
            "resources.sbatch_options.signal",
        ),
        (
            "overrides:\n  - match: {i: 1}\n    resources:\n"
            "      sbatch_options: {no_requeue: false}\n",
            "overrides[0].resources.sbatch_options.no_requeue",
        ),
        (
            "job_types:\n  mine: {cpus_per_task: 1, sbatch_options: {job_name: x}}\n"
            "resources: {job_type: mine}\n",
            "job_types.mine.sbatch_options.job_name",
        ),
    ],
)
def test_validate_refuses_a_reserved_directive_where_it_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: str, key_path: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(BASE + section)
    root = tmp_path / "runs"
    assert main(["validate", str(config), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    line = 1 + (BASE + section).splitlines().index(
        next(x for x in (BASE + section).splitlines() if "sbatch_options" in x)
    )
    assert f"error: {config}, line {line}, key '{key_path}'" in err, err
    assert "is campaigns' own" in err and "Remove it from sbatch_options" in err
    assert main(["init", str(config), "--root", str(root)]) == 2
    assert not root.exists()


def test_every_reserved_directive_is_one_campaigns_writes_or_forbids() -> None:
    """The table names sbatch's long options, as `scontrol`/sbatch spell them."""
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", name) for name in RESERVED)
    assert {"requeue", "no-requeue", "signal", "job-name", "comment", "array"} <= set(RESERVED)


def test_the_scheduler_commands_never_see_the_overriding_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in HOSTILE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    env = environment()
    assert not set(HOSTILE_ENVIRONMENT) & set(env)
    assert env["SLURM_CONF"] == "/etc/slurm/slurm.conf" and env["SLURM_TIME_FORMAT"] == "standard"


def scontrol_tasks(job_id: str) -> list[dict[str, str]]:
    """`scontrol -o show job ID`: one mapping of fields per task (or pending range)."""
    env = {k: v for k, v in os.environ.items() if k not in HOSTILE_ENVIRONMENT}
    out = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    ).stdout
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line]


@pytest.mark.slurm
def test_sbatch_variables_in_the_environment_do_not_change_the_submitted_array(
    cluster: Cluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leftovers: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_campaign(tmp_path, "directives", n=3, hours=0.25)
    root = tmp_path / "runs"
    ok(["init", str(config), "--root", str(root)], capsys)
    leftovers.append(campaign_dir(config, root, capsys))
    for name, value in HOSTILE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    report = json.loads(
        ok(["submit", str(config), "--root", str(root), "--backend", "slurm", "--json"], capsys)
    )
    (array,) = report["arrays"]
    tasks = scontrol_tasks(array["scheduler_id"])
    token = submissions(leftovers[0])[0]["token"]
    for task in tasks:
        assert task["Requeue"] == "0", task
        assert task["TimeLimit"] == "00:15:00", task
        assert task["JobName"].endswith(token), task
        assert task["StdOut"].startswith(str(array["folder"])), task
    assert sorted(i for t in tasks for i in expand_ranges(t["ArrayTaskId"])) == [0, 1, 2]
    done = monitor_until_done(config, root, capsys)
    assert done["counts"]["completed"] == 3, done
    assert not list(Path("/tmp").glob(f"campaigns-hijacked-{array['scheduler_id']}_*"))
