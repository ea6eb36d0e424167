"""The autopilot on Slurm: the tick as a `scrontab` entry (Slurm's cron, which NERSC offers
workflow managers), or, where scrontab is missing or disabled, as a small batch job that
queues the next tick before it runs its own.

scrontab replaces the user's whole crontab, so the campaign's lines go between marker
comments and everything else is kept. The batch chain queues tick n+1 (`--begin=now+S`)
before tick n starts, so a tick killed mid-way never ends the chain; `stop` in the
autopilot folder, plus a `scancel` of the queued tick, ends it. A failed `sbatch --begin`
leaves `chain-broken` (what sbatch said) in that folder, and the tick it belongs to queues
the next one again (`keep`); `health` tells `autopilot --status` what it cannot mend: a
broken chain, a tick waiting in the queue behind other jobs.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from campaigns.errors import SchedulerError
from campaigns.scheduler.base import TickJob
from campaigns.scheduler.slurm_cli import query

#: A tick is short; this bounds one that hangs.
TICK_MINUTES = 15
#: Left in the autopilot folder by a batch tick whose `sbatch --begin` failed.
CHAIN_BROKEN = "chain-broken"
#: Why a pending tick is not waiting for anything but its start time.
NOT_WAITING = ("BeginTime", "None")


def cron_schedule(interval: float) -> str:
    """The cron schedule closest to every `interval` seconds (at least every minute)."""
    minutes = max(1, round(interval / 60))
    if minutes == 1:
        return "* * * * *"  # Slurm's cron parser refuses a step of 1
    if minutes < 60:
        return f"*/{minutes} * * * *"
    hours = max(1, min(23, round(minutes / 60)))
    return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"


def job_name(job: TickJob) -> str:
    """The Slurm job name of the campaign's ticks."""
    return f"cmp-auto-{job.tag}"


def crontab_block(job: TickJob) -> list[str]:
    """The campaign's lines in the user's scrontab, between markers (pure)."""
    options = [f"--{k.replace('_', '-')}={v}" for k, v in job.sbatch_options]
    return [
        f"# campaigns autopilot {job.tag} begin",
        f"#SCRON --job-name={job_name(job)} --time={TICK_MINUTES} "
        f"--output={job.folder / 'scrontab.out'} --open-mode=append {' '.join(options)}".rstrip(),
        f"{cron_schedule(job.interval)} {shlex.join(job.argv)}",
        f"# campaigns autopilot {job.tag} end",
    ]


def without_block(lines: Sequence[str], tag: str) -> list[str]:
    """`lines` minus the campaign's block (other entries kept as they are)."""
    out, inside = [], False
    for line in lines:
        if line.strip() == f"# campaigns autopilot {tag} begin":
            inside = True
        elif line.strip() == f"# campaigns autopilot {tag} end":
            inside = False
        elif not inside:
            out.append(line)
    return out


def pinned(job: TickJob, environ: Mapping[str, str]) -> TickJob:
    """The tick with the cluster it was installed on pinned (pure): a `SLURM_CONF` in the
    installing environment (a second cluster on the same host, a site module) is passed
    on explicitly, since a scrontab job does not inherit the environment scrontab ran in."""
    conf = environ.get("SLURM_CONF")
    if not conf or job.argv[:1] == ("env",):
        return job
    return dataclasses.replace(job, argv=("env", f"SLURM_CONF={conf}", *job.argv))


def batch_script(job: TickJob) -> str:
    """The self-queueing batch tick (pure)."""
    script = job.folder / "tick.sbatch"
    options = "".join(f"#SBATCH --{k.replace('_', '-')}={v}\n" for k, v in job.sbatch_options)
    stop = shlex.quote(str(job.stop_file))
    said, broken = (shlex.quote(str(job.folder / name)) for name in ("sbatch.err", CHAIN_BROKEN))
    return (
        "#!/bin/bash\n"
        f"#SBATCH --job-name={job_name(job)}\n"
        f"#SBATCH --time={TICK_MINUTES}\n"
        f"#SBATCH --output={job.folder / 'batch.out'}\n"
        "#SBATCH --open-mode=append\n"
        f"{options}"
        f"[ -e {stop} ] && exit 0\n"
        "# Queue the next tick first: a tick killed mid-way must not end the chain.\n"
        "# If sbatch fails, say so: the tick below queues the next one again.\n"
        f"sbatch --quiet --begin=now+{max(1, round(job.interval))} {shlex.quote(str(script))} "
        f"2>{said} || cp {said} {broken}\n"
        f"exec {shlex.join(job.argv)}\n"
    )


class SlurmAutopilot:
    """scrontab where it works, else the batch chain."""

    def __init__(self) -> None:
        self.method = "scrontab" if shutil.which("scrontab") else "batch"

    def install(self, job: TickJob) -> str:
        """Install the tick; falls back to the batch chain where scrontab refuses."""
        job.folder.mkdir(parents=True, exist_ok=True)
        job = pinned(job, os.environ)
        if job.method == "batch":
            self.method = "batch"
        if self.method == "scrontab":
            try:
                self._write_crontab([*without_block(_crontab(), job.tag), *crontab_block(job)])
                return f"a scrontab entry ({cron_schedule(job.interval)}), job {job_name(job)}"
            except SchedulerError as exc:
                if "disabled" not in str(exc).lower():
                    raise
                self.method = "batch"  # ScronParameters=enable is not set here
        script = job.folder / "tick.sbatch"
        script.write_text(batch_script(job))
        (job.folder / CHAIN_BROKEN).unlink(missing_ok=True)
        if not self._queued(job):
            query(["sbatch", "--quiet", str(script)], "sbatch")
        return f"a self-queueing batch job {job_name(job)} every {round(job.interval)} s"

    def keep(self, job: TickJob) -> str | None:
        """The batch chain: queue the next tick again when none is pending (its `sbatch
        --begin` failed); scrontab keeps its entry by itself."""
        if job.method != "batch" or job.stop_file.exists():
            return None
        broken = job.folder / CHAIN_BROKEN
        said = _said(broken)
        if self._queued(job, besides=os.environ.get("SLURM_JOB_ID")):
            broken.unlink(missing_ok=True)  # another tick is queued: the chain goes on
            return None
        job = pinned(job, os.environ)
        script = job.folder / "tick.sbatch"
        script.write_text(batch_script(job))
        begin = f"--begin=now+{max(1, round(job.interval))}"
        try:
            query(["sbatch", "--quiet", begin, str(script)], "sbatch")
        except SchedulerError as exc:
            broken.write_text(f"{exc}\n")
            raise SchedulerError(
                f"the batch chain is broken: no next tick is queued ({said or exc}); run "
                "`autopilot CONFIG` again once sbatch works"
            ) from exc
        broken.unlink(missing_ok=True)
        why = f"sbatch --begin failed: {said}" if said else "no next tick was queued"
        return f"the batch chain had broken ({why}); queued the next tick again"

    def health(self, job: TickJob, now: datetime) -> list[str]:
        """A broken chain (nothing queued), and ticks that wait in the queue although due."""
        notes = []
        said = _said(job.folder / CHAIN_BROKEN)
        if said:
            notes.append(f"the batch chain broke ({said}); a tick queues it again if one runs")
        out = query(
            [
                "squeue",
                "-h",
                "-u",
                str(os.getuid()),
                "--name",
                job_name(job),
                "-t",
                "PENDING",
                "-O",
                "JobId:|,Reason:|,EligibleTime:|",
            ],
            "squeue",
        )
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) < 3 or fields[1].strip() in NOT_WAITING:
                continue
            since = _local_time(fields[2].strip())
            waited = f" for {_minutes(now - since)}" if since and since <= now else ""
            notes.append(
                f"tick job {fields[0].strip()} has waited in the queue{waited} (Slurm: "
                f"{fields[1].strip()}): nothing is reconciled or retried until it starts"
            )
        return notes

    def remove(self, job: TickJob) -> None:
        """Remove the scrontab entry, stop the chain and cancel a queued tick."""
        job.folder.mkdir(parents=True, exist_ok=True)
        job.stop_file.touch()
        if shutil.which("scrontab"):
            current = _crontab()
            if any(job.tag in line for line in current):
                self._write_crontab(without_block(current, job.tag))
        query(
            [
                "scancel",
                "--quiet",
                "--state=PENDING",
                "--name",
                job_name(job),
                "-u",
                str(os.getuid()),
            ],
            "scancel",
        )

    def active(self, job: TickJob) -> bool:
        """True while an entry or a queued tick exists."""
        if shutil.which("scrontab") and any(
            line.strip() == f"# campaigns autopilot {job.tag} begin" for line in _crontab()
        ):
            return True
        return self._queued(job)

    def _queued(self, job: TickJob, besides: str | None = None) -> bool:
        """A tick of this campaign pending or running (other than the job `besides`)."""
        out = query(
            ["squeue", "-h", "-u", str(os.getuid()), "--name", job_name(job), "-o", "%i"],
            "squeue",
        )
        return bool(set(out.split()) - {besides})

    @staticmethod
    def _write_crontab(lines: list[str]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".cron", delete=False) as fh:
            fh.write("\n".join(lines) + "\n")
        try:
            done = subprocess.run(
                ["scrontab", fh.name], capture_output=True, text=True, check=False, timeout=60
            )
        finally:
            Path(fh.name).unlink(missing_ok=True)
        if done.returncode != 0:
            raise SchedulerError(f"scrontab refused the entry: {done.stderr.strip()}")


def _said(path: Path) -> str:
    """What a failed sbatch left in `path`, on one line ("" when it is not there)."""
    try:
        return " ".join(path.read_text(errors="replace").split())[:300]
    except OSError:
        return ""


def _local_time(text: str) -> datetime | None:
    """A time squeue printed (SLURM_TIME_FORMAT=standard: this host's local time), in UTC."""
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except ValueError:
        return None  # N/A, Unknown


def _minutes(delta: timedelta) -> str:
    """`delta` in minutes and seconds."""
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _crontab() -> list[str]:
    """The user's scrontab lines (none yet: empty)."""
    done = subprocess.run(
        ["scrontab", "-l"], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        said = (done.stderr + done.stdout).strip()
        if "no crontab" in said.lower():
            return []
        raise SchedulerError(f"`scrontab -l` failed: {said}")
    return done.stdout.splitlines()
