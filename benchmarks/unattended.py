"""A campaign with injected faults, run to the end by the autopilot on the real Slurm.

N jobs (200 by default) of which 10% fail once (a transient failure), three outlive
their time limit once (the retry gets 1.5x the limit), two exit with a permanent code;
while the campaign runs, slurmctld is restarted once and one tick is killed with SIGKILL.
The only commands are `init` and `autopilot`; everything after is observation. Every
run of every job appends a line to a ledger, so jobs run twice or never are counted.

    .venv/bin/python benchmarks/unattended.py [--jobs 200] [--no-faults] [--compare]

Prints manual commands needed, jobs completed, failed for good, run twice, lost, and the
wall time (with --compare, also the same campaign without faults, and the ratio).
`tests/test_slurm_unattended.py` runs the same scenario in CI. Needs root (to restart
slurmctld) and the cluster of `scripts/dev/slurm-cluster.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PERMANENT = (11, 111)  # these exit 64: failed for good at once
TIMEOUTS = (7, 77, 177)  # attempt 1 outlives the one-minute limit
CAMPAIGN = """\
campaign: {{name: "Unattended {label}", version: "{version}", machine: local}}
parameters:
  i: {{range: [0, {n}]}}
job:
  command: {command}
  output: "out/{{i:04d}}.txt"
execution:
  batch_size: 50
  max_retries: 2
  timeout_hours: {hours}
  retry_backoff: {{base_seconds: 5, factor: 2, max_seconds: 30, jitter: 0.1}}
  retry_policy: {{permanent_exit_codes: [64], infrastructure_delay_seconds: 5}}
  circuit_breaker: false
"""
#: Each run appends "i attempt"; then the job's faults, if any, for its attempt 1.
FAULTY = (
    "'echo {{i}} $CAMPAIGNS_ATTEMPT >> {ledger}; "
    "case {{i}} in 11|111) exit 64;; esac; "
    'if [ "$CAMPAIGNS_ATTEMPT" = 1 ]; then '
    "case {{i}} in 7|77|177) sleep 400;; esac; "
    "[ $(( {{i}} % 10 )) = 3 ] && exit 1; fi; "
    "echo {{i}} > {{output}}'"
)
CLEAN = "'echo {{i}} $CAMPAIGNS_ATTEMPT >> {ledger}; echo {{i}} > {{output}}'"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m campaigns ...` and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "campaigns", *args], capture_output=True, text=True, check=False
    )


def restart_slurmctld() -> None:
    """Stop slurmctld (as an admin's restart does: it saves its state), then let the
    project's script bring it back. A SIGKILL instead can lose jobs it had just accepted:
    those are found lost after `reconcile.LOST_GRACE` and retried, which only takes longer."""
    pid = int(Path("/var/run/slurmctld.pid").read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(
        ["bash", str(REPO / "scripts" / "dev" / "slurm-cluster.sh"), "up"],
        capture_output=True,
        check=True,
    )


def kill_one_tick(config: str, stop: threading.Event) -> list[int]:
    """SIGKILL the first tick of this campaign that is seen running; its pid."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--tick" in argv and config.encode() in argv:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except ProcessLookupError:
                    continue
                return [int(entry.name)]
        time.sleep(0.05)
    return []


def run_scenario(root: Path, n_jobs: int = 200, faults: bool = True, timeout: float = 1800) -> dict:
    """Run the campaign under autopilot; the figures."""
    label = "faults" if faults else "clean"
    ledger = root / f"ledger-{label}.txt"
    command = (FAULTY if faults else CLEAN).format(ledger=ledger)
    config = root / f"{label}.yaml"
    config.write_text(
        CAMPAIGN.format(
            label=label,
            version=f"u{uuid.uuid4().hex[:8]}",
            n=n_jobs,
            command=command,
            hours=1 / 60,
        )
    )
    args = [str(config), "--root", str(root)]
    started = time.monotonic()
    commands = [
        cli("init", *args),
        cli("autopilot", *args, "--backend", "slurm", "--interval", "60"),
    ]
    assert all(c.returncode == 0 for c in commands), [c.stderr for c in commands]
    killed: list[int] = []
    restarted = False
    stop = threading.Event()
    killer = threading.Thread(target=lambda: killed.extend(kill_one_tick(str(config), stop)))
    if faults:
        killer.start()
    while True:  # observation only: status reads the store, asks no scheduler
        report = json.loads(cli("status", *args, "--json").stdout)
        if faults and not restarted and report["counts"]["completed"] >= n_jobs // 4:
            restart_slurmctld()
            restarted = True
        if (
            report["finished"]
            and not json.loads(cli("autopilot", *args, "--status", "--json").stdout)["active"]
        ):
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not finished after {timeout:.0f} s: {report['counts']}")
        time.sleep(5)
    stop.set()
    if faults:
        killer.join()
    wall = time.monotonic() - started
    runs = Counter(tuple(line.split()) for line in ledger.read_text().splitlines())
    jobs = json.loads(cli("status", *args, "--json", "--verbose").stdout)["jobs"]
    states = Counter(j["state"] for j in jobs)
    expected_failed = {f"i={i}" for i in PERMANENT if i < n_jobs} if faults else set()
    failed = {j["key"] for j in jobs if j["state"] == "failed"}
    ran = {i for i, _ in runs}
    return {
        "jobs": n_jobs,
        "faults": faults,
        "manual_commands": 0,  # nothing but `init` and `autopilot` was run
        "completed": states["completed"],
        "failed_for_good": len(failed),
        "failed_as_expected": failed == expected_failed,
        "run_twice": sum(1 for n in runs.values() if n > 1),  # one attempt, two runs
        "lost": n_jobs
        - len(ran)
        + sum(1 for j in jobs if j["state"] not in ("completed", "failed")),
        "slurmctld_restarted": restarted,
        "ticks_killed": len(killed),
        "wall_seconds": round(wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--no-faults", action="store_true", help="the clean run only")
    parser.add_argument("--compare", action="store_true", help="also the clean run, and the ratio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unattended-") as folder:
        results = [run_scenario(Path(folder), args.jobs, faults=not args.no_faults)]
        if args.compare and not args.no_faults:
            results.append(run_scenario(Path(folder), args.jobs, faults=False))
    for result in results:
        print(json.dumps(result))
    if len(results) == 2:
        ratio = results[0]["wall_seconds"] / results[1]["wall_seconds"]
        print(f"wall time with faults / without: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
