"""Helpers for the tests that run on the real Slurm cluster (`scripts/dev/slurm-cluster.sh up`).

`require_slurm()` checks that the cluster can take jobs: without it the tests skip with
the reason, except under CI or CAMPAIGNS_REQUIRE_SLURM=1, where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from campaigns.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "examples" / "test_campaign.yaml"
LOCAL_MACHINE = REPO / "config" / "defaults" / "local.yaml"
REQUIRED = os.environ.get("CAMPAIGNS_REQUIRE_SLURM") == "1" or bool(os.environ.get("CI"))


@dataclass(frozen=True)
class Cluster:
    """What the tests need to know about the cluster."""

    max_array_size: int


def _check() -> tuple[Cluster | None, str]:
    for tool in ("sbatch", "sinfo", "sacct", "squeue", "scontrol", "scancel"):
        if shutil.which(tool) is None:
            return None, f"`{tool}` is not on PATH"
    try:
        states = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30
        )
        if states.returncode != 0:
            return None, f"sinfo failed: {states.stderr.strip()}"
        usable = [
            s
            for s in states.stdout.split()
            if s.rstrip("*~#$@").split("+")[0]
            in ("idle", "mixed", "allocated", "alloc", "mix", "completing")
        ]
        if not usable:
            return None, f"no usable node (sinfo says {states.stdout.split()})"
        acct = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-S", "now-1minutes", "-o", "JobID"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if acct.returncode != 0:
            return None, f"sacct failed: {acct.stderr.strip()}"
        config = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        )
        match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config.stdout, re.MULTILINE)
        if not match:
            return None, "`scontrol show config` shows no MaxArraySize"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"Slurm does not answer: {exc}"
    return Cluster(max_array_size=int(match[1])), ""


_CACHE: list[tuple[Cluster | None, str]] = []


def require_slurm() -> Cluster:
    """The cluster, or skip (locally) / fail (CI) with the reason."""
    if not _CACHE:
        _CACHE.append(_check())
    cluster, reason = _CACHE[0]
    if cluster is None:
        message = (
            f"the Slurm cluster is not usable: {reason}. Start it with "
            "`bash scripts/dev/slurm-cluster.sh up`."
        )
        if REQUIRED:
            pytest.fail(message + " (required here: CI or CAMPAIGNS_REQUIRE_SLURM=1)")
        pytest.skip(message)
    return cluster


# -- campaigns ----------------------------------------------------------------------------

TRIVIAL = """\
campaign: {{name: "{title}", version: "{version}", machine: {machine}}}
parameters:
  i: {{range: [0, {n}]}}
job:
  command: {command}
  output: "{output}"
execution:
  batch_size: {batch}
  max_retries: {retries}
  retry_backoff: {backoff}
  timeout_hours: {hours}
  array_parallelism: {parallelism}
{execution}resources:
  job_type: {job_type}
{extra}"""
ECHO = '"echo {i} > {output}"'


def unique_version() -> str:
    """A campaign version no other run shares (Slurm job names include it)."""
    return f"t{uuid.uuid4().hex[:10]}"


def write_machine(folder: Path, **machine: Any) -> str:
    """A copy of the `local` machine file with `machine:` keys changed; its file name."""
    data = yaml.safe_load(LOCAL_MACHINE.read_text())
    data["machine"].update(machine)
    (folder / "machine.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return "machine.yaml"


def write_campaign(
    folder: Path,
    title: str,
    *,
    n: int,
    command: str = ECHO,
    batch: int = 100,
    retries: int = 0,
    hours: float = 0.25,
    parallelism: int = 256,
    job_type: str = "cpu_intensive",
    machine: str = "local",
    output: str = "out/{i:04d}.txt",
    backoff: str = "{base_seconds: 1, factor: 2, max_seconds: 5, jitter: 0.1}",
    execution: str = "",
    extra: str = "",
    prefix: str = "Slurm",
) -> Path:
    """A one-axis campaign of `n` jobs in `folder`; `execution` adds lines to that section
    (indented two spaces), `extra` whole sections at the end."""
    path = folder / "campaign.yaml"
    settings = dict(locals())
    settings.update(title=f"{prefix} {title}", version=unique_version())
    path.write_text(TRIVIAL.format(**settings))
    return path


# -- the command line ---------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`run-campaign ARGV` in this process: (exit code, stdout, stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def ok(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run a command that must succeed; its stdout."""
    code, out, err = run(argv, capsys)
    assert code == 0, f"`{' '.join(argv)}` exited {code}: {err}{out}"
    return out


def status(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, Any]:
    """`status --json` (with `extra` options)."""
    result: dict[str, Any] = json.loads(
        ok(["status", str(config), "--root", str(root), "--json", *extra], capsys)
    )
    return result


def monitor_until_done(
    config: Path,
    root: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    timeout: float = 180,
    interval: float = 1.0,
    submit: bool = False,
) -> dict[str, Any]:
    """Loop `monitor --once --json` until nothing is queued or running (bounded).

    With `submit`, loop `monitor --once --submit --json` until the campaign is finished
    (due retries and pending jobs submitted as it goes).
    """
    deadline = time.monotonic() + timeout
    extra = ["--submit"] if submit else []
    while True:
        report: dict[str, Any] = json.loads(
            ok(["monitor", str(config), "--root", str(root), "--once", *extra, "--json"], capsys)
        )
        counts = report["counts"]
        done = report["finished"] if submit else counts["queued"] + counts["running"] == 0
        if done:
            return report
        if report.get("scheduler_error"):
            print(f"monitor: {report['scheduler_error']}")
        assert time.monotonic() < deadline, f"campaign not done after {timeout:.0f} s: {counts}"
        time.sleep(interval)


def campaign_dir(config: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The campaign's directory, as `status` reports it."""
    return Path(status(config, root, capsys)["campaign"]["path"])


def rows(directory: Path, table: str, order: str = "id") -> list[dict[str, Any]]:
    """Rows of one table of the campaign's database (read-only)."""
    db = sqlite3.connect(f"file:{directory / 'metadata' / 'campaign.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(f"select * from {table} order by {order}")]
    finally:
        db.close()


def submissions(directory: Path) -> list[dict[str, Any]]:
    """Rows of the campaign's `submissions` table."""
    return rows(directory, "submissions")


def jobs(directory: Path) -> list[dict[str, Any]]:
    """Rows of the campaign's `jobs` table."""
    return rows(directory, "jobs")


def attempts(directory: Path) -> list[dict[str, Any]]:
    """Rows of the campaign's `attempts` table, by job then attempt number."""
    return rows(directory, "attempts", "job_id, number")


#: Loop `monitor --once --submit --json` until the campaign is finished (bounded).
run_until_finished = functools.partial(monitor_until_done, submit=True)


# -- Slurm's own view ---------------------------------------------------------------------


def sacct(ids: list[str], fields: str = "JobID,JobName,State,ExitCode") -> list[list[str]]:
    """sacct's rows (one per task, or per combined pending range) for array ids."""
    if not ids:
        return []
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-1days", "-j", ",".join(ids), "-o", fields],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SLURM_TIME_FORMAT": "standard"},
        check=True,
    ).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def sacct_names_like(prefix: str) -> list[list[str]]:
    """sacct rows of the last hour whose job name starts with `prefix`."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-1hours", "-o", "JobID,JobName,State"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return [r for r in rows if r[1].startswith(prefix)]


def squeue(ids: list[str]) -> list[str]:
    """squeue's task rows (`id|state`) for array ids still in the controller."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%i|%T"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def scancel_campaign(directory: Path) -> None:
    """Cancel whatever a failed test left on the cluster."""
    ids = [s["scheduler_id"] for s in submissions(directory) if s["scheduler_id"]]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


def sacct_settled(ids: list[str], n: int, timeout: float = 30) -> list[list[str]]:
    """sacct's rows once it shows `n` of them, none pending or running (accounting lags)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = sacct(ids)
        if len(rows) == n and not {r[2] for r in rows} & {"PENDING", "RUNNING", "COMPLETING"}:
            return rows
        assert time.monotonic() < deadline, f"sacct shows {len(rows)} of {n} rows: {rows}"
        time.sleep(1)
