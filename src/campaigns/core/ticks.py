"""Where the autopilot's tick runs on Slurm: decided here and nowhere else (pure).

A tick is a small, short job (one task, one CPU, at most a quarter of an hour) that must
start when it is due, even while the campaign's own tasks fill the partition: a tick that
waits behind them reconciles and retries nothing meanwhile. A site that offers a QOS or
partition for such recurring jobs (NERSC's `cron` QOS for scrontab) names it in the machine
file's `tick:` setting, which then places the tick alone (the account is the campaign's
unless `tick:` names one). Without it the tick asks for what the campaign's first job group
asks for, and `autopilot --status` says when a tick waits in the queue.
"""

from __future__ import annotations

from campaigns.core.spec import Machine, Resources

#: The placement options a tick takes, in `#SBATCH` order.
PLACEMENT = ("account", "partition", "qos", "constraint")


def tick_options(machine: Machine, resources: Resources) -> tuple[tuple[str, str], ...]:
    """The tick's Slurm placement: `machine.tick` where the machine file sets it, else the
    account, partition, QOS and constraint of `resources` (the campaign's first group)."""
    site = dict(machine.tick)
    if site:
        site.setdefault("account", resources.account or "")
        return tuple((name, site[name]) for name in PLACEMENT if site.get(name))
    chosen = ((name, getattr(resources, name)) for name in PLACEMENT)
    return tuple((name, str(value)) for name, value in chosen if value)
