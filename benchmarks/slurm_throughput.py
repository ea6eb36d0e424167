"""Throughput of N short jobs on the real Slurm: campaigns (unpacked, packed) vs raw sbatch.

The same trivial command per job in all three ways; the wall time runs from the first
submission to the moment the last job is known to be done, polled once a second in every
case. Called by `bench.py --slurm`, or alone:

    .venv/bin/python benchmarks/slurm_throughput.py --jobs 200
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
CAMPAIGN = """\
campaign: {{name: "Throughput {label}", version: "{version}", machine: local}}
parameters:
  i: {{range: [0, {n}]}}
job:
  command: "echo {{i}} > {{output}}"
  output: "out/{{i:05d}}.txt"
execution: {{batch_size: 1000, jobs_per_task: {per_task}, max_retries: 0, timeout_hours: 0.25}}
resources: {{job_type: {job_type}}}
job_types:
  packed: {{nodes: 1, ntasks_per_node: 1, cpus_per_task: {cpus}}}
"""


def max_array_size() -> int:
    text = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", text, re.MULTILINE)
    return int(match[1]) if match else 1001


def raw_sbatch(n: int, work: Path) -> float:
    """Baseline: the same commands as plain `sbatch --array` scripts, no campaigns at all."""
    out = work / "raw"
    out.mkdir()
    per_array = max_array_size()
    script = work / "raw.sh"
    script.write_text(
        f"#!/bin/bash\ni=$((OFFSET + SLURM_ARRAY_TASK_ID))\necho $i > {out}/$(printf %05d $i).txt\n"
    )
    start = time.perf_counter()
    ids = []
    for offset in range(0, n, per_array):
        size = min(per_array, n - offset)
        result = subprocess.run(
            [
                "sbatch",
                "--parsable",
                f"--array=0-{size - 1}",
                "--time=15",
                f"--output={work}/raw-%A_%a.out",
                f"--export=ALL,OFFSET={offset}",
                str(script),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        ids.append(result.stdout.strip().split(";")[0])
    while subprocess.run(
        ["squeue", "-h", "-j", ",".join(ids)], capture_output=True, text=True
    ).stdout.strip():
        time.sleep(1)
    elapsed = time.perf_counter() - start
    done = len(list(out.iterdir()))
    assert done == n, f"raw sbatch: {done} of {n} outputs"
    return elapsed


def through_campaigns(n: int, work: Path, per_task: int, cpus: int) -> float:
    """`init`, `submit --backend slurm`, then `monitor --once` every second until done."""
    label = f"k{per_task}"
    config = work / f"{label}.yaml"
    config.write_text(
        CAMPAIGN.format(
            label=label,
            version=f"b{int(time.time())}{label}",
            n=n,
            per_task=per_task,
            cpus=cpus,
            job_type="packed" if per_task > 1 else "cpu_intensive",
        )
    )
    cli = [PYTHON, "-m", "campaigns"]
    root = ["--root", str(work / label)]
    subprocess.run([*cli, "init", str(config), *root], check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(
        [*cli, "submit", str(config), *root, "--backend", "slurm"], check=True, capture_output=True
    )
    while True:
        report = json.loads(
            subprocess.run(
                [*cli, "monitor", str(config), *root, "--once", "--json"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        if report["counts"]["queued"] + report["counts"]["running"] == 0:
            break
        time.sleep(1)
    elapsed = time.perf_counter() - start
    assert report["counts"]["completed"] == n, report["counts"]
    return elapsed


def report_throughput(n: int) -> dict[str, float]:
    """Run all three and print figures and ratios."""
    if shutil.which("sbatch") is None:
        print("\nSlurm throughput: skipped (no sbatch on PATH)")
        return {}
    with tempfile.TemporaryDirectory(prefix="campaigns-tput-", dir=Path.cwd()) as tmp:
        work = Path(tmp)
        raw = raw_sbatch(n, work)
        unpacked = through_campaigns(n, work, per_task=1, cpus=1)
        packed = through_campaigns(n, work, per_task=10, cpus=1)
    print(f"\nSlurm throughput, {n} sub-second jobs (MaxArraySize {max_array_size()}):")
    print(f"  raw sbatch --array, 1 job per task      {raw:7.1f} s  {n / raw:6.1f} jobs/s")
    print(
        f"  campaigns, 1 job per task               {unpacked:7.1f} s  {n / unpacked:6.1f} jobs/s"
        f"  ({unpacked / raw:.2f}x the raw time)"
    )
    print(
        f"  campaigns, 10 jobs per task (1 CPU)     {packed:7.1f} s  {n / packed:6.1f} jobs/s"
        f"  ({unpacked / packed:.1f}x faster than unpacked, {raw / packed:.1f}x faster than raw)"
    )
    return {"raw_s": raw, "unpacked_s": unpacked, "packed_s": packed}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    report_throughput(parser.parse_args().jobs)
