"""The site a campaign runs on: node types, QOS table and account rules. Pure values.

Read from the `machine:` section of the machine file (or a campaign's override of it).
Every part is optional: a machine file without them (`local`, `slurm`) gives a `Site`
that knows nothing, and nothing is checked against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campaigns.core.yamlsource import Locator

_MEMORY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KkMmGgTt])?[Bb]?\s*$")
_MEMORY_UNITS_MB = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024, None: 1}


def memory_mb(value: int | str) -> int:
    """Parse a memory request (`4G`, `4000M`, 4000) into whole megabytes."""
    if isinstance(value, int):
        return value
    match = _MEMORY_RE.match(value)
    if not match:
        raise ValueError(f"not a memory size: {value!r}")
    number, unit = match.groups()
    return max(1, int(float(number) * _MEMORY_UNITS_MB[unit.lower() if unit else None]))


@dataclass(frozen=True)
class NodeType:
    """One kind of node, as jobs select it with `--constraint`."""

    name: str
    cpus: int  # logical CPUs Slurm schedules per node
    memory_mb: int
    gpus: int = 0

    @property
    def is_gpu(self) -> bool:
        """True for nodes with GPUs: their hours are GPU node-hours."""
        return self.gpus > 0


@dataclass(frozen=True)
class QOS:
    """One quality of service: its limits and how it charges."""

    name: str
    max_walltime_hours: float | None = None
    max_nodes: int | None = None
    max_node_fraction: float | None = None
    max_submitted_jobs: int | None = None
    max_running_jobs: int | None = None
    shared: bool = False
    charge_factor: float = 1.0

    @property
    def max_minutes(self) -> int | None:
        """The walltime limit in whole minutes (None: no limit)."""
        if self.max_walltime_hours is None:
            return None
        return int(round(self.max_walltime_hours * 60))


@dataclass(frozen=True)
class AccountRules:
    """What a valid account looks like at the site."""

    pattern: str | None = None
    placeholders: tuple[str, ...] = ()
    gpu_suffix: str | None = None

    def is_placeholder(self, account: str) -> bool:
        """True for an example account (`mXXXX`), with or without the GPU suffix."""
        suffix = self.gpu_suffix or ""
        return any(account in (p, p + suffix) for p in self.placeholders)

    def is_malformed(self, account: str) -> bool:
        """True when a pattern is given and the account does not match it in full."""
        return self.pattern is not None and re.fullmatch(self.pattern, account) is None


@dataclass(frozen=True)
class Site:
    """Everything the machine file says about the site's limits and charging."""

    node_types: Mapping[str, NodeType] = field(default_factory=dict)
    default_node_type: str | None = None
    qos: Mapping[str, QOS] = field(default_factory=dict)
    default_qos: str | None = None
    accounts: AccountRules = field(default_factory=AccountRules)

    @property
    def known(self) -> bool:
        """True when the machine file models the site at all."""
        return bool(self.node_types or self.qos)

    def node_type(self, constraint: str | None) -> NodeType | None:
        """The node type a job with this constraint runs on (None: unknown or unmodelled)."""
        name = constraint if constraint is not None else self.default_node_type
        return self.node_types.get(name) if name is not None else None

    def qos_of(self, name: str | None) -> QOS | None:
        """The QOS a job asking for `name` runs in (the default QOS when it names none)."""
        chosen = name if name is not None else self.default_qos
        return self.qos.get(chosen) if chosen is not None else None


def parse_site(section: Mapping[str, Any], locate: Locator) -> Site:
    """The `Site` of a schema-valid `machine:` section; unknown defaults or a bad pattern
    are located ConfigErrors."""
    node_types = {
        name: NodeType(
            name=name,
            cpus=int(entry["cpus"]),
            memory_mb=memory_mb(entry["memory"]),
            gpus=int(entry.get("gpus", 0)),
        )
        for name, entry in (section.get("node_types") or {}).items()
    }
    qos = {
        name: QOS(
            name=name,
            max_walltime_hours=entry.get("max_walltime_hours"),
            max_nodes=entry.get("max_nodes"),
            max_node_fraction=entry.get("max_node_fraction"),
            max_submitted_jobs=entry.get("max_submitted_jobs"),
            max_running_jobs=entry.get("max_running_jobs"),
            shared=bool(entry.get("shared", False)),
            charge_factor=float(entry.get("charge_factor", 1.0)),
        )
        for name, entry in (section.get("qos") or {}).items()
    }
    for key, table, what in (
        ("default_node_type", node_types, "node type"),
        ("default_qos", qos, "QOS"),
    ):
        value = section.get(key)
        if value is not None and value not in table:
            raise locate.error(
                f"`machine.{key}` is '{value}', which is not a {what} of this machine "
                f"(known: {', '.join(sorted(table)) or 'none'}).",
                ("machine", key),
            )
    rules = section.get("accounts") or {}
    pattern = rules.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise locate.error(
                f"`machine.accounts.pattern` is not a regular expression: {exc}.",
                ("machine", "accounts", "pattern"),
            ) from None
    return Site(
        node_types=node_types,
        default_node_type=section.get("default_node_type"),
        qos=qos,
        default_qos=section.get("default_qos"),
        accounts=AccountRules(
            pattern=pattern,
            placeholders=tuple(rules.get("placeholders", ())),
            gpu_suffix=rules.get("gpu_suffix"),
        ),
    )
