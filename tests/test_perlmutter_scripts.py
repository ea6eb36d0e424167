"""Scripts Perlmutter accepts, checked without a scheduler: the Perlmutter machine file's job
types rendered by `submit --dry-run` (the sbatch directives), and the launcher line a
multi-task job runs its ranks with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.launch import launcher_command
from campaigns.core.spec import Resources

CAMPAIGN = """\
campaign: {{name: "Perlmutter scripts", version: "p1", machine: nersc}}
parameters:
  realization: {{range: [0, 3]}}
job:
  command: "python -m campaigns.examples.mock --seed {{realization}} --output {{output}}"
  output: "r{{realization}}.h5"
execution: {{timeout_hours: {hours}}}
resources:
  account: {account}
  job_type: {job_type}
  memory_requirement: low
"""


def directives(script: str) -> dict[str, str]:
    """`#SBATCH --key=value` lines as a mapping (flags map to '')."""
    out = {}
    for match in re.finditer(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, re.MULTILINE):
        out[match[1]] = match[2] or ""
    return out


def rendered(tmp_path: Path, capsys: pytest.CaptureFixture[str], **fields: object) -> str:
    values = {"hours": 2, "account": "m0001", "job_type": "cpu_shared", **fields}
    config = tmp_path / f"{values['job_type']}.yaml"
    config.write_text(CAMPAIGN.format(**values))
    root = str(tmp_path / "runs")
    assert main(["init", str(config), "--root", root]) == 0
    capsys.readouterr()
    argv = ["submit", str(config), "--root", root, "--backend", "slurm", "--dry-run", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    script: str = report["arrays"][0]["script"]
    return script


def test_a_shared_cpu_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = rendered(tmp_path, capsys)
    d = directives(script)
    assert d["qos"] == "shared" and d["constraint"] == "cpu" and d["account"] == "m0001"
    assert d["time"] == "120" and d["mem"] == "4096M" and d["cpus-per-task"] == "2"
    assert d["ntasks-per-node"] == "1" and "gpus-per-node" not in d
    assert "SRUN_CPUS_PER_TASK" not in script  # one task: the worker runs it without srun


def test_a_multi_task_gpu_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = rendered(tmp_path, capsys, job_type="gpu_intensive", account="m0001_g")
    d = directives(script)
    assert d["qos"] == "regular" and d["constraint"] == "gpu" and d["account"] == "m0001_g"
    assert d["gpus-per-node"] == "4" and d["ntasks-per-node"] == "4"
    assert d["cpus-per-task"] == "32"
    setup = script.split("# setup\n", 1)[1]
    assert setup.startswith("export SRUN_CPUS_PER_TASK=32\n")  # before the machine's setup
    folder = Path(re.search(r"--output=(.*)/%A", script)[1])  # type: ignore[index]
    header = json.loads((folder / "array.json").read_text())
    assert header["launcher"] == (
        "srun --cpu-bind=cores --cpus-per-task=32 --gpus-per-task=1 --gpu-bind=none"
    )


def test_a_debug_job_asks_for_the_debug_qos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = directives(rendered(tmp_path, capsys, job_type="debug", hours=0.25))
    assert d["qos"] == "debug" and d["time"] == "15" and d["constraint"] == "cpu"


def test_the_launcher_line() -> None:
    one = Resources(ntasks_per_node=1, cpus_per_task=8)
    assert launcher_command("srun --cpu-bind=cores", one) is None
    mpi = Resources(nodes=2, ntasks_per_node=4, cpus_per_task=8)
    assert launcher_command("srun --cpu-bind=cores", mpi) == (
        "srun --cpu-bind=cores --cpus-per-task=8"
    )
    assert launcher_command("srun -c 4 --mpi=pmix", mpi) == "srun -c 4 --mpi=pmix"
    assert launcher_command("mpirun -n {ntasks}", mpi) == "mpirun -n 8"
    two_gpus = Resources(ntasks_per_node=2, cpus_per_task=16, gpus_per_node=4)
    assert launcher_command("/usr/bin/srun", two_gpus) == (
        "/usr/bin/srun --cpus-per-task=16 --gpus-per-task=2 --gpu-bind=none"
    )
    mine = "srun --gpu-bind=closest -c {cpus_per_task}"
    assert launcher_command(mine, two_gpus) == "srun --gpu-bind=closest -c 16"
