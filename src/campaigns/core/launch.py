"""How a multi-task job starts its ranks inside the allocation (pure): the machine's
launcher with the job's numbers filled in and what srun no longer inherits added.

Since Slurm 22.05, srun does not inherit the batch script's `--cpus-per-task`: without
`-c` (or `SRUN_CPUS_PER_TASK`, which the sbatch script exports as well) every rank gets one
CPU. GPU jobs get one GPU per task with all of the node's GPUs visible to every task
(`--gpus-per-task=1 --gpu-bind=none`): the layout of NERSC's Perlmutter GPU job example
"1 node, 4 tasks, 4 GPUs, all GPUs visible to all tasks" (docs.nersc.gov/jobs/examples/,
see also docs.nersc.gov/jobs/affinity/), which CUDA-aware MPI needs for peer access.
Checked here on the test cluster only (Slurm 22.05 accepts it in a `--gpus-per-node`
allocation); re-read the NERSC page when its Slurm changes.
A launcher that already says `-c`/`--cpus-per-task` or `--gpus-per-task`/`--gpu-bind` is
left as written; launchers other than srun (mpirun) only get their placeholders filled.
"""

from __future__ import annotations

from campaigns.core.spec import Resources


def launcher_command(template: str, res: Resources) -> str | None:
    """The launcher line for one job of `res`, or None when it runs a single task.

    `{ntasks}` and `{cpus_per_task}` in `template` are filled in."""
    if res.ntasks <= 1:
        return None
    text = template.replace("{ntasks}", str(res.ntasks))
    text = text.replace("{cpus_per_task}", str(res.cpus_per_task))
    words = text.split()
    if not words or words[0].rsplit("/", 1)[-1] != "srun":
        return text
    if not any(w == "-c" or w.startswith(("--cpus-per-task", "-c")) for w in words[1:]):
        words.append(f"--cpus-per-task={res.cpus_per_task}")
    gpus_per_task = res.gpus_per_node // max(1, res.ntasks_per_node)
    if gpus_per_task and not any(w.startswith(("--gpus-per-task", "--gpu-bind")) for w in words):
        words += [f"--gpus-per-task={gpus_per_task}", "--gpu-bind=none"]
    return " ".join(words)
