"""campaigns: many parameterized jobs on Slurm (or this machine) from one YAML file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CampaignManager", "RunsDatabase", "__version__"]

if TYPE_CHECKING:
    from campaigns.ops.catalog import RunsDatabase
    from campaigns.ops.manager import CampaignManager


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m campaigns.node.worker` on a compute node stays light.
    if name == "CampaignManager":
        from campaigns.ops.manager import CampaignManager

        return CampaignManager
    if name == "RunsDatabase":
        from campaigns.ops.catalog import RunsDatabase

        return RunsDatabase
    raise AttributeError(name)
