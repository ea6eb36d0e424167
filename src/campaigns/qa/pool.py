"""Run the output checks over many files: threads for manifests and checksums, processes
for the HDF5 rules.

Cost at scale: manifests are read and files hashed in a thread pool (hashlib releases
the GIL, and threads hide shared-filesystem latency); h5py serialises every call behind
one global lock, so the HDF5 rules of large campaigns run in worker processes instead:

    python -m campaigns.qa.pool     (JSON request on stdin, JSON answer on stdout)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from campaigns.core.spec import QARules
from campaigns.qa.checks import HDF5_SUFFIXES, Target, check_files, check_hdf5_batch

#: Below this many HDF5 files, processes cost more to start than they save.
PROCESS_THRESHOLD = 1000
#: At most this many worker processes (login nodes are shared).
MAX_PROCESSES = 16


def check_outputs(
    targets: Sequence[Target],
    catalogs: Path,
    config_hash: str,
    rules: QARules,
    *,
    threads: int | None = None,
    processes: int | None = None,
) -> list[dict[str, Any]]:
    """One result row (COLUMNS, problems as a list) per target, in order.

    Manifests and checksums run in a thread pool. The HDF5 rules run meanwhile in this
    thread (h5py serialises all threads anyway) or, for many files on several cores,
    in `processes` worker processes (`python -m campaigns.qa.pool`).
    """
    cpus = os.cpu_count() or 1
    threads = threads or min(32, 4 * cpus)
    hdf5 = [
        (i, str(catalogs / t.output))
        for i, t in enumerate(targets)
        if Path(t.output).suffix.lower() in HDF5_SUFFIXES
    ]
    if processes is None:
        processes = min(cpus, MAX_PROCESSES) if len(hdf5) >= PROCESS_THRESHOLD and cpus > 1 else 0
    with ThreadPoolExecutor(threads, thread_name_prefix="qa") as pool:
        pending = pool.map(lambda t: check_files(t, catalogs, config_hash), targets)
        if processes:
            found = _hdf5_in_processes(hdf5, rules, processes)
        else:
            found = check_hdf5_batch(hdf5, rules)
        rows = list(pending)
    for index, (problems, seconds) in found.items():
        row = rows[index]
        if row["size"]:  # a missing or empty file has said all there is to say
            row["problems"].extend(problems)
        row["seconds"] += seconds
    for row in rows:
        row["ok"] = not row["problems"]
        row["seconds"] = round(row["seconds"], 6)
    return rows


def _hdf5_in_processes(
    paths: Sequence[tuple[int, str]], rules: QARules, processes: int
) -> dict[int, tuple[list[str], float]]:
    """`check_hdf5_batch` split over worker processes; a failed worker's share runs here.

    Plain subprocesses fed JSON on stdin, not multiprocessing: they never re-import the
    caller's __main__ nor fork a process that runs threads.
    """
    shares = [list(paths[k::processes]) for k in range(processes)]  # interleaved: mixed sizes
    env = dict(os.environ)
    source = str(Path(__file__).resolve().parents[2])  # the folder holding `campaigns`
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    rules_json = asdict(rules)

    def run(share: list[tuple[int, str]]) -> dict[int, tuple[list[str], float]]:
        payload = json.dumps({"rules": rules_json, "paths": share})
        try:
            done = subprocess.run(
                [sys.executable, "-m", "campaigns.qa.pool"],
                input=payload,
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode == 0:
                answer = json.loads(done.stdout)
                return {int(k): (list(v[0]), float(v[1])) for k, v in answer.items()}
        except (OSError, ValueError):
            pass
        return check_hdf5_batch(share, rules)  # the worker could not run: do its share here

    found: dict[int, tuple[list[str], float]] = {}
    with ThreadPoolExecutor(processes) as feeders:
        for part in feeders.map(run, [s for s in shares if s]):
            found.update(part)
    return found


def _worker_main() -> int:
    """`python -m campaigns.qa.pool`: check the HDF5 files named on stdin; answer on stdout."""
    request = json.load(sys.stdin)
    given = request["rules"]
    rules = QARules(
        required_datasets=tuple(given["required_datasets"]),
        min_rows=int(given["min_rows"]),
        finite_datasets=tuple(given["finite_datasets"]),
        required_attributes=tuple(given["required_attributes"]),
    )
    found = check_hdf5_batch([(int(i), str(p)) for i, p in request["paths"]], rules)
    json.dump({str(i): [problems, seconds] for i, (problems, seconds) in found.items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main())
