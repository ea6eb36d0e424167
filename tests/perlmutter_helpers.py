"""The Perlmutter-shaped test cluster (`scripts/dev/slurm-cluster.sh up --profile perlmutter`):
a second Slurm cluster beside the default one, selected by `SLURM_CONF`.

`require_perlmutter()` checks that it takes jobs; without it the tests skip with the reason,
except under CI or CAMPAIGNS_REQUIRE_SLURM=1, where they fail (as the default cluster's).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

import pytest

from slurm_helpers import REQUIRED

PM_CONF = "/etc/slurm-perlmutter/slurm.conf"
UP = "bash scripts/dev/slurm-cluster.sh up --profile perlmutter"


@dataclass(frozen=True)
class Perlmutter:
    """What the tests need to know about the profile."""

    conf: str
    debug_max_submit: int  # the debug QOS's MaxSubmitJobsPerUser, as Slurm enforces it


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLURM_CONF": PM_CONF}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def _check() -> tuple[Perlmutter | None, str]:
    if not os.path.exists(PM_CONF):
        return None, f"{PM_CONF} does not exist"
    try:
        nodes = _run(["sinfo", "-h", "-N", "-o", "%N|%T|%f"])
        if nodes.returncode != 0:
            return None, f"sinfo failed: {nodes.stderr.strip()}"
        usable = {
            line.split("|")[2]
            for line in nodes.stdout.splitlines()
            if line.count("|") == 2
            and line.split("|")[1].rstrip("*~#$@").split("+")[0]
            in ("idle", "mixed", "allocated", "completing")
        }
        if not {"cpu", "gpu"} <= usable:
            return None, f"no usable cpu and gpu nodes (sinfo: {nodes.stdout.split()})"
        acct = _run(["sacct", "-X", "-n", "-P", "-S", "now-1minutes", "-o", "JobID"])
        if acct.returncode != 0:
            return None, f"sacct failed: {acct.stderr.strip()}"
        qos = _run(["sacctmgr", "-n", "-P", "show", "qos", "debug", "format=MaxSubmitJobsPU"])
        limit = qos.stdout.strip()
        if qos.returncode != 0 or not limit.isdigit():
            return None, f"the debug QOS has no submit limit ({qos.stdout}{qos.stderr})"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"Slurm does not answer: {exc}"
    return Perlmutter(PM_CONF, int(limit)), ""


_CACHE: list[tuple[Perlmutter | None, str]] = []


def require_perlmutter() -> Perlmutter:
    """The profile's cluster, or skip (locally) / fail (CI) with the reason."""
    if not _CACHE:
        _CACHE.append(_check())
    cluster, reason = _CACHE[0]
    if cluster is None:
        message = f"the Perlmutter-shaped cluster is not usable: {reason}. Start it with `{UP}`."
        if REQUIRED:
            pytest.fail(message + " (required here: CI or CAMPAIGNS_REQUIRE_SLURM=1)")
        pytest.skip(message)
    return cluster


def sacct_rows(ids: list[str], fields: str, n: int, timeout: float = 60) -> list[list[str]]:
    """sacct's `n` task rows on the profile's cluster for array ids, once accounting has
    caught up (just after the end, rows can be missing or show the QOS as `Unknown`)."""
    deadline = time.monotonic() + timeout
    while True:
        argv = ["sacct", "-X", "-n", "-P", "-S", "now-1days", "-j", ",".join(ids), "-o", fields]
        out = _run(argv)
        assert out.returncode == 0, out.stderr
        rows = [line.split("|") for line in out.stdout.splitlines() if line.strip()]
        if len(rows) == n and not any("Unknown" in row for row in rows):
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(1)
