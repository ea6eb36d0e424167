"""Values that describe a validated campaign: the output of `config`, the input of everything else.

Pure data: frozen dataclasses and the small pure functions that derive values
from them (resources per job group, memory parsing). No I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campaigns.core.breaker import CircuitBreaker
from campaigns.core.policy import RetryPolicy
from campaigns.core.site import Site
from campaigns.core.site import memory_mb as memory_mb  # re-exported: its old home

ParamValue = str | int | float | bool
Params = Mapping[str, ParamValue]

#: Placeholders the command may use besides the parameter names.
COMMAND_FIELDS = ("output", "job_key", "attempt", "campaign_dir", "compression")
#: Placeholders the output template may use besides the parameter names.
OUTPUT_FIELDS = ("job_key",)


#: A string value that may reach a file path: these characters only, and not `.` or `..`.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.+\-=,:@%]+$")


def is_safe(value: ParamValue) -> bool:
    """True when the value can stand in a file name (every number and bool can)."""
    if not isinstance(value, str):
        return True
    return bool(SAFE_VALUE.match(value)) and value not in (".", "..")


def key_text(value: ParamValue) -> str:
    """The text of a value in job keys: `canonical` for safe values, so keys of existing
    campaigns never change; `h:` and 12 hex digits of the value's hash for any other string
    (a path with slashes or spaces), so a key is always safe in paths and never moves when
    other values are added."""
    if is_safe(value):
        return canonical(value)
    digest = hashlib.blake2b(str(value).encode(), digest_size=6).hexdigest()
    return f"h:{digest}"


def canonical(value: ParamValue) -> str:
    """The text of a value in job keys: ints as written, floats by repr, bools lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Axis:
    """One entry of `parameters`: a single named axis or a zipped group."""

    label: str
    names: tuple[str, ...]
    rows: tuple[tuple[ParamValue, ...], ...]  # one tuple of values per position on the axis


@dataclass(frozen=True)
class Resources:
    """What one array task asks the scheduler for (hashable: jobs group by it)."""

    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    memory_mb: int | None = None
    time_minutes: int = 60
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    constraint: str | None = None
    sbatch_options: tuple[tuple[str, str], ...] = ()

    @property
    def ntasks(self) -> int:
        """Total tasks (MPI ranks) of one job."""
        return self.nodes * self.ntasks_per_node

    def describe(self) -> str:
        """A short human summary, e.g. `1 node x 2 tasks x 1 cpu, 1024 MB, 60 min`."""
        parts = [f"{self.nodes} node x {self.ntasks_per_node} task x {self.cpus_per_task} cpu"]
        if self.gpus_per_node:
            parts.append(f"{self.gpus_per_node} gpu/node")
        if self.memory_mb:
            parts.append(f"{self.memory_mb} MB")
        parts.append(f"{self.time_minutes} min")
        for name in ("partition", "qos", "constraint", "account"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value}")
        return ", ".join(parts)

    def short(self) -> str:
        """A compact summary for tables, e.g. `1x2x1cpu 1024M 60m`."""
        text = f"{self.nodes}x{self.ntasks_per_node}x{self.cpus_per_task}cpu"
        if self.gpus_per_node:
            text += f"+{self.gpus_per_node}gpu"
        if self.memory_mb:
            text += f" {self.memory_mb}M"
        return f"{text} {self.time_minutes}m"

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping for JSON (store, reports)."""
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "nodes",
                "ntasks_per_node",
                "cpus_per_task",
                "gpus_per_node",
                "memory_mb",
                "time_minutes",
                "partition",
                "qos",
                "account",
                "constraint",
            )
        }
        out["sbatch_options"] = dict(self.sbatch_options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        """Inverse of `as_dict`."""
        kwargs = dict(data)
        kwargs["sbatch_options"] = tuple(sorted((kwargs.get("sbatch_options") or {}).items()))
        return cls(**kwargs)


@dataclass(frozen=True)
class JobGroup:
    """Jobs that share resources and retry limits; arrays never mix groups."""

    index: int
    resources: Resources
    max_retries: int


@dataclass(frozen=True)
class Override:
    """One `overrides:` entry: which jobs it selects and what it changes."""

    match: Mapping[str, tuple[ParamValue, ...]]
    resources: Mapping[str, Any]
    execution: Mapping[str, Any]

    def selects(self, params: Params) -> bool:
        """True when every matched parameter has one of the listed values."""
        return all(_same_value(params[name], allowed) for name, allowed in self.match.items())

    def admits(self, params: Params) -> bool:
        """True unless a parameter in `params` that this override matches on has another value.

        Parameters the override does not mention, and matched ones absent from `params`,
        do not rule it out: this judges one axis of the product at a time.
        """
        return all(
            _same_value(value, self.match[name])
            for name, value in params.items()
            if name in self.match
        )


def _same_value(value: ParamValue, allowed: tuple[ParamValue, ...]) -> bool:
    # 2 and 2.0 match (YAML writes both), but True never matches 1.
    return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed)


@dataclass(frozen=True)
class Machine:
    """Facts about where jobs run, from the machine file."""

    name: str
    backend: str = "auto"
    max_array_size: int | None = None
    max_queued_jobs: int = 5000
    launcher: str = "srun --mpi=pmix"
    setup: tuple[str, ...] = ()
    python: str | None = None
    poll_interval_seconds: float = 30.0
    source: str | None = None  # the machine file's path
    site: Site = field(default_factory=Site)  # node types, QOS table, account rules
    tick: tuple[tuple[str, str], ...] = ()  # `tick:`: where the autopilot's tick runs


@dataclass(frozen=True)
class Execution:
    """Campaign-wide execution settings."""

    batch_size: int = 100
    max_retries: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # retry_backoff + retry_policy
    timeout_hours: float = 1.0
    array_parallelism: int = 256
    jobs_per_task: int = 1
    backend: str | None = None
    local_workers: int = 0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)


@dataclass(frozen=True)
class Notify:
    """`notify:` the command told about the campaign (None: nobody), and how often."""

    command: str | None = None
    every_hours: float | None = None


@dataclass(frozen=True)
class QARules:
    """What `qa` checks in each HDF5 output."""

    required_datasets: tuple[str, ...] = ()
    min_rows: int = 0
    finite_datasets: tuple[str, ...] = ()
    required_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignSpec:
    """A loaded, merged and validated campaign."""

    name: str
    version: str
    source: str  # path of the campaign file
    machine: Machine
    axes: tuple[Axis, ...]
    command: str
    output: str
    atomic_output: bool
    env: Mapping[str, str]
    execution: Execution
    base_resources: Mapping[str, Any]
    job_types: Mapping[str, Mapping[str, Any]]
    memory_levels: Mapping[str, int | str]
    overrides: tuple[Override, ...]
    compression: str
    metadata_format: str
    base_path: str
    db_url: str | None
    qa: QARules
    notify: Notify
    merged: Mapping[str, Any]  # the merged document, as saved in metadata/
    config_hash: str
    locate: Any = field(default=None, compare=False, repr=False)  # yamlsource.Locator

    def error(
        self, message: str, key_path: tuple[str | int, ...], hint: str | None = None
    ) -> Exception:
        """A ConfigError located at `key_path` of this campaign's files."""
        from campaigns.errors import ConfigError

        if self.locate is None:
            return ConfigError(message, file=self.source, key_path=key_path, hint=hint)
        return self.locate.error(message, key_path, hint)  # type: ignore[no-any-return]

    @property
    def slug(self) -> str:
        """The campaign directory name: `<version>_<name-slug>`."""
        return f"{slugify(self.version)}_{slugify(self.name)}"

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """All parameter names in axis order."""
        return tuple(name for axis in self.axes for name in axis.names)

    @property
    def job_count(self) -> int:
        """Number of jobs the parameter space expands to."""
        count = 1
        for axis in self.axes:
            count *= len(axis.rows)
        return count


def slugify(text: str) -> str:
    """Lower-case, keep letters/digits/dot/dash, others become single dashes."""
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")
    return slug or "campaign"
