"""The Perlmutter machine file on the Perlmutter-shaped test cluster
(`bash scripts/dev/slurm-cluster.sh up --profile perlmutter`): node features cpu and gpu,
4 GPUs as GRES, QOS regular/debug/shared with enforced limits, accounts m0001/m0001_g.

Campaigns use `machine: nersc` with test-sized numbers supplied the way a user overrides
them (the campaign file's `machine:`, `job_types:`, `memory_levels:`, `resources:`), and
reach the cluster through `SLURM_CONF` in the environment, which sbatch, sacct, squeue and
scontrol (in this process and in `python -m campaigns` children) inherit.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from perlmutter_helpers import Perlmutter, require_perlmutter, sacct_rows
from slurm_helpers import campaign_dir, jobs, ok, rows, run, status, submissions, unique_version

pytestmark = pytest.mark.perlmutter

CAMPAIGN = """\
campaign: {{name: "Perlmutter {title}", version: "{version}", machine: nersc}}
machine:
  setup: []                  # no modules on the test cluster
  node_types:                # the test nodes: 8 CPUs; 8000 MB (cpu) and 4000 MB (gpu)
    cpu: {{cpus: 8, memory: {cpu_memory}, gpus: 0}}
    gpu: {{cpus: 8, memory: 3G, gpus: 4}}
  qos:
    debug: {{max_submitted_jobs: {debug_submit}}}
job_types:
  cpu_test: {{constraint: cpu, qos: regular, nodes: 1, ntasks_per_node: 1, cpus_per_task: 2}}
  gpu_test: {{constraint: gpu, qos: regular, nodes: 1, ntasks_per_node: 1, cpus_per_task: 2,
             gpus_per_node: 1}}
  gpu_ranks: {{constraint: gpu, qos: regular, nodes: 1, ntasks_per_node: 2, cpus_per_task: 2,
              gpus_per_node: 2}}
memory_levels: {{low: 200M, medium: 12G}}
parameters:
  i: {{range: [0, {n}]}}
job:
  command: "{command}"
  output: "o{{i}}.txt"
execution:
  batch_size: {batch}
  max_retries: 1
  timeout_hours: {hours}
  array_parallelism: 4
  retry_backoff: {{base_seconds: 2, factor: 1.5, max_seconds: 6, jitter: 0}}
resources:
  account: m0001
  job_type: {job_type}
  memory_requirement: {memory}
{extra}"""
GPU_OVERRIDE = """\
overrides:
  - match: {i: 3}
    resources: {job_type: gpu_test, account: m0001_g}
  - match: {i: 2}
    resources: {job_type: gpu_ranks, account: m0001_g}
"""
ECHO = (
    "echo {i} $SLURM_JOB_QOS $SLURM_JOB_ACCOUNT $SLURMD_NODENAME "
    "ranks=${{SLURM_STEP_NUM_TASKS:-1}} cpus=${{SLURM_CPUS_PER_TASK:-?}} > {output}"
)


@pytest.fixture
def perlmutter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Perlmutter]:
    """The profile's cluster, selected for this test (and its child processes) by SLURM_CONF."""
    cluster = require_perlmutter()
    monkeypatch.setenv("SLURM_CONF", cluster.conf)
    yield cluster


@pytest.fixture
def cleanup(perlmutter: Perlmutter) -> Iterator[list[Path]]:
    """Campaign directories whose arrays are cancelled on the profile's cluster afterwards."""
    from slurm_helpers import scancel_campaign

    dirs: list[Path] = []
    yield dirs
    for directory in dirs:
        if (directory / "metadata" / "campaign.db").exists():
            scancel_campaign(directory)  # SLURM_CONF still points at the profile here


def write(tmp_path: Path, title: str, **fields: object) -> Path:
    values: dict[str, object] = {
        "title": title,
        "version": unique_version(),
        "cpu_memory": "7G",
        "debug_submit": 5,
        "n": 4,
        "command": ECHO,
        "batch": 4,
        "hours": 0.1,
        "job_type": "cpu_shared",
        "memory": "low",
        "extra": "",
        **fields,
    }
    config = tmp_path / f"{title.replace(' ', '_')}.yaml"
    config.write_text(CAMPAIGN.format(**values))
    return config


def start(config: Path, root: Path, capsys: pytest.CaptureFixture[str], dirs: list[Path]) -> Path:
    ok(["init", str(config), "--root", str(root)], capsys)
    directory = campaign_dir(config, root, capsys)
    dirs.append(directory)
    return directory


def cycles(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str], timeout: float = 240
) -> list[dict]:
    """`monitor --once --submit --json` every second until the campaign is finished."""
    reports = []
    deadline = time.monotonic() + timeout
    while True:
        argv = ["monitor", str(config), "--root", str(root), "--once", "--submit", "--json"]
        reports.append(json.loads(ok(argv, capsys)))
        if reports[-1]["finished"]:
            return reports
        assert time.monotonic() < deadline, f"not finished: {reports[-1]['counts']}"
        time.sleep(1)


def test_scripts_are_accepted_on_cpu_and_gpu_nodes(
    perlmutter: Perlmutter, tmp_path: Path, capsys: pytest.CaptureFixture[str], cleanup: list[Path]
) -> None:
    config = write(tmp_path, "accepted", extra=GPU_OVERRIDE)
    root = tmp_path / "runs"
    directory = start(config, root, capsys, cleanup)
    report = json.loads(
        ok(["submit", str(config), "--root", str(root), "--backend", "slurm", "--json"], capsys)
    )
    assert report["submitted_jobs"] == 4 and report["held"] is None
    final = cycles(config, root, capsys)[-1]
    assert final["counts"]["completed"] == 4, final["counts"]
    ids = [a["scheduler_id"] for a in report["arrays"]]
    seen = {
        (row[1], row[2], row[3], row[4])
        for row in sacct_rows(ids, "JobID,QOS,Account,NodeList,State", 4)
    }
    assert seen == {
        ("shared", "m0001", "pm-cpu", "COMPLETED"),
        ("regular", "m0001_g", "pm-gpu", "COMPLETED"),
    }, seen
    outputs = {
        p.read_text().split()[0]: p.read_text().split()[1:] for p in directory.rglob("o*.txt")
    }
    assert outputs["3"] == ["regular", "m0001_g", "pm-gpu", "ranks=1", "cpus=2"]
    assert outputs["0"] == ["shared", "m0001", "pm-cpu", "ranks=1", "cpus=2"]
    # Two ranks through the launcher (srun ... --cpus-per-task=2 --gpus-per-task=1
    # --gpu-bind=none): each rank has its 2 CPUs, as srun no longer inherits them.
    assert outputs["2"] == ["regular", "m0001_g", "pm-gpu", "ranks=2", "cpus=2"]
    ranks = next(a for a in report["arrays"] if "2 gpu/node" in a["resources"])
    header = json.loads((Path(ranks["folder"]) / "array.json").read_text())
    assert header["launcher"] == (
        "srun --cpu-bind=cores --cpus-per-task=2 --gpus-per-task=1 --gpu-bind=none"
    )
    assert (
        "export SRUN_CPUS_PER_TASK=2"
        in next(Path(ranks["folder"]).glob("*_submission.sh")).read_text()
    )
    gpu_array = next(a for a in report["arrays"] if "1 gpu/node" in a["resources"])
    script = next(Path(gpu_array["folder"]).glob("*_submission.sh")).read_text()
    for directive in (
        "--constraint=gpu",
        "--gpus-per-node=1",
        "--account=m0001_g",
        "--qos=regular",
    ):
        assert f"#SBATCH {directive}\n" in script


def test_a_qos_submit_limit_is_hit_and_recovered_from(
    perlmutter: Perlmutter, tmp_path: Path, capsys: pytest.CaptureFixture[str], cleanup: list[Path]
) -> None:
    # The machine file allows 8 queued debug jobs; Slurm's debug QOS allows 5 per user, so
    # the second array of 3 is refused by Slurm itself.
    limit = perlmutter.debug_max_submit
    n = 4 * limit
    config = write(
        tmp_path,
        "limit",
        n=n,
        batch=3,
        job_type="debug",
        debug_submit=limit + 3,
        command="sleep 1; " + ECHO,
    )
    root = tmp_path / "runs"
    directory = start(config, root, capsys, cleanup)
    code, out, err = run(
        ["submit", str(config), "--root", str(root), "--backend", "slurm", "--json"], capsys
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["submitted_jobs"] == 3 and "QOSMaxSubmitJobPerUserLimit" in report["held"]
    reports = cycles(config, root, capsys)
    final = reports[-1]
    assert final["counts"]["completed"] == n and final["counts"]["failed"] == 0, final["counts"]
    # Every job ran exactly once, on its first attempt, though sbatch said no several times.
    assert {j["attempts"] for j in jobs(directory)} == {1}
    assert all(j["state"] == "completed" for j in jobs(directory))
    events = rows(directory, "events")
    held = [e for e in events if e["kind"] == "submit_held"]
    assert held and all("QOSMaxSubmitJobPerUserLimit" in e["message"] for e in held)
    subs = submissions(directory)
    accepted = [s for s in subs if s["state"] != "abandoned"]
    assert sum(s["n_jobs"] for s in accepted) == n
    assert len(subs) - len(accepted) == len(held)  # each refusal left one abandoned intent
    tasks = sacct_rows([s["scheduler_id"] for s in accepted], "JobID,State,QOS", n)
    assert len(tasks) == n and {(t[1], t[2]) for t in tasks} == {("COMPLETED", "debug")}


def test_a_walltime_beyond_the_qos_is_refused_before_slurm_sees_it(
    perlmutter: Perlmutter, tmp_path: Path, capsys: pytest.CaptureFixture[str], cleanup: list[Path]
) -> None:
    config = write(tmp_path, "too long", job_type="debug", hours=1)
    root = tmp_path / "runs"
    code, out, err = run(["validate", str(config), "--root", str(root)], capsys)
    assert code == 2, out + err
    assert "0.5" in err and "debug" in err, err
    code, out, err = run(["submit", str(config), "--root", str(root), "--backend", "slurm"], capsys)
    assert code == 2 and not root.exists()  # nothing created, nothing sent


def test_a_request_the_site_cannot_run_stops_with_the_fix(
    perlmutter: Perlmutter, tmp_path: Path, capsys: pytest.CaptureFixture[str], cleanup: list[Path]
) -> None:
    # The machine file believes the cpu nodes hold 16 GB; the cluster's have 8000 MB, so
    # validate passes and sbatch refuses: a configuration refusal, exit 1, nothing failed.
    config = write(tmp_path, "too big", cpu_memory="16G", memory="medium", job_type="cpu_test")
    root = tmp_path / "runs"
    directory = start(config, root, capsys, cleanup)
    code, out, err = run(["submit", str(config), "--root", str(root), "--backend", "slurm"], capsys)
    assert code == 1, out + err
    assert "sbatch refused --mem=12288M" in err and "memory_requirement" in err
    assert (
        "The machine file lists QOS regular, debug, shared; node types cpu (8 CPUs, 16384 MB)"
        in err
    )
    assert status(config, root, capsys)["counts"]["pending"] == 4
    assert [s["state"] for s in submissions(directory)] == ["abandoned"]
    code, out, err = run(
        ["monitor", str(config), "--root", str(root), "--once", "--submit"], capsys
    )
    assert code == 1 and "sbatch refused --mem=12288M" in err and "submit --resume" in err
    # Later cycles (the autopilot's ticks) do not ask sbatch again: the breaker is open.
    ok(["monitor", str(config), "--root", str(root), "--once", "--submit"], capsys)
    assert len(submissions(directory)) == 2
    assert {j["state"] for j in jobs(directory)} == {"pending"}
    assert {j["attempts"] for j in jobs(directory)} == {0}


def test_the_tools_in_child_processes_see_the_profile(perlmutter: Perlmutter) -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", "import subprocess; subprocess.run(['scontrol', 'show', 'config'])"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert re.search(r"^ClusterName\s*=\s*perlmutter$", out, re.MULTILINE), out[:500]
