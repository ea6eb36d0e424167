"""Check a campaign against the site its machine file describes. Pure.

`review_site(spec)` looks at every resource group the campaign can produce (overrides
applied, jobs packed per task as they will be submitted) and raises a located
`ConfigError`, with the site's number in it, for the first request the site would
refuse: more CPUs, memory or GPUs per node than the node type has; an unknown
constraint or QOS; a walltime beyond the QOS (also the ceiling of timeout escalation);
more nodes than the QOS allows; a shared-QOS job over its share of a node; a GPU job
charging an account without the site's GPU suffix. What is not an error comes back in
a `SiteReview`: notes (the queue cap lowered to a QOS's submit limit) and a placeholder
or malformed account, which `validate` shows as a warning and `submit` to Slurm refuses.

A machine file that models nothing (no node types, no QOS, no account rules) passes
every check unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from campaigns.core.expand import override_masks, resolve_group
from campaigns.core.planning import task_resources
from campaigns.core.policy import RetryPolicy
from campaigns.core.site import QOS, NodeType, Site
from campaigns.core.spec import CampaignSpec, Resources
from campaigns.core.yamlsource import KeyPath
from campaigns.errors import ConfigError


@dataclass(frozen=True)
class SiteReview:
    """What the site checks found that is not an error."""

    notes: tuple[str, ...] = ()
    account_error: ConfigError | None = None  # a warning in validate; submit to Slurm refuses
    max_queued_jobs: int | None = None  # the machine's cap, lowered to the QOS submit limits
    max_running_jobs: int | None = None  # the smallest running-jobs limit of the QOS in use


def review_site(spec: CampaignSpec) -> SiteReview:
    """Check every resource group against the site; raise the first violation."""
    site = spec.machine.site
    used: dict[str, QOS] = {}
    account_error: ConfigError | None = None
    for mask in override_masks(spec):
        group = resolve_group(spec, mask, 0)
        task = task_resources(group.resources, spec.execution.jobs_per_task)
        where = _Where(spec, mask)
        node = _check_node(spec, site, task, where)
        qos = _check_qos(spec, site, task, node, where, group.max_retries)
        if qos is not None:
            used[qos.name] = qos
        gpu = task.gpus_per_node > 0 or (node is not None and node.is_gpu)
        problem = _check_account(spec, site, task.account, gpu, where)
        account_error = account_error or problem
    cap, notes = _queue_cap(spec.machine.max_queued_jobs, used.values())
    running = [q.max_running_jobs for q in used.values() if q.max_running_jobs is not None]
    return SiteReview(tuple(notes), account_error, cap, min(running, default=None))


def ceilings(site: Site, resources: Resources, policy: RetryPolicy) -> RetryPolicy:
    """`policy` with escalation capped by the QOS walltime and the node's memory."""
    qos, node = site.qos_of(resources.qos), site.node_type(resources.constraint)
    minutes, memory = policy.max_time_minutes, policy.max_memory_mb
    if qos is not None and qos.max_minutes is not None:
        minutes = min(minutes or qos.max_minutes, qos.max_minutes)
    if node is not None:
        memory = min(memory or node.memory_mb, node.memory_mb)
    return replace(policy, max_time_minutes=minutes, max_memory_mb=memory)


class _Where:
    """Which key of which file set a group's resource or execution setting."""

    def __init__(self, spec: CampaignSpec, mask: int) -> None:
        self.tiers: list[tuple[KeyPath, dict[str, object]]] = [
            (("overrides", i, "resources"), dict(o.resources))
            for i, o in reversed(list(enumerate(spec.overrides)))
            if mask & (1 << i)
        ]
        self.tiers.append((("resources",), dict(spec.base_resources)))
        self.executions = [
            ("overrides", i, "execution")
            for i, o in reversed(list(enumerate(spec.overrides)))
            if mask & (1 << i) and "timeout_hours" in o.execution
        ]

    def resource(self, key: str) -> KeyPath:
        for path, section in self.tiers:
            if key in section:
                return path + (key,)
        job_type = self.job_type()
        return ("job_types", job_type, key) if job_type else ("resources",)

    def job_type(self) -> str | None:
        for _path, section in self.tiers:
            if "job_type" in section:
                return str(section["job_type"])
        return None

    def memory(self) -> tuple[KeyPath, str]:
        """Where the memory was set, and how to name it (`memory level 'high'`)."""
        for path, section in self.tiers:
            if "memory" in section:
                return path + ("memory",), "memory"
            if "memory_requirement" in section:
                level = section["memory_requirement"]
                return path + ("memory_requirement",), f"memory level '{level}'"
        return self.resource("memory"), "memory"

    def timeout(self) -> KeyPath:
        return (self.executions[0] if self.executions else ("execution",)) + ("timeout_hours",)


def _written(spec: CampaignSpec, path: KeyPath) -> bool:
    return spec.locate is None or spec.locate.where(path)[1] is not None


def _gb(mb: int) -> str:
    return f"{mb / 1024:g} GB"


def _check_known(
    spec: CampaignSpec,
    key: str,
    name: str | None,
    table: Mapping[str, Any],
    what: str,
    where: _Where,
) -> None:
    """A constraint or QOS the machine does not list (when it lists any) is refused."""
    if table and name is not None and name not in table:
        label = "QOS" if key == "qos" else key
        raise spec.error(
            f"{label} '{name}' is not {what} of machine '{spec.machine.name}' "
            f"(known: {', '.join(table)}).",
            where.resource(key),
        )


def _check_node(spec: CampaignSpec, site: Site, task: Resources, where: _Where) -> NodeType | None:
    _check_known(spec, "constraint", task.constraint, site.node_types, "a node type", where)
    node = site.node_type(task.constraint)
    if node is None:
        return None
    kind = f"a {node.name} node has"
    cpus = task.ntasks_per_node * task.cpus_per_task
    if cpus > node.cpus:
        raise spec.error(
            f"jobs ask for {task.ntasks_per_node} tasks x {task.cpus_per_task} CPUs = {cpus} "
            f"CPUs per node; {kind} {node.cpus} (machine.node_types.{node.name}.cpus).",
            where.resource("cpus_per_task"),
            hint="Lower ntasks_per_node or cpus_per_task, or use more nodes.",
        )
    if task.memory_mb is not None and task.memory_mb > node.memory_mb:
        path, what = where.memory()
        packed = _packed(spec)
        raise spec.error(
            f"jobs ask for {_gb(task.memory_mb)} of memory per node ({what}{packed}); "
            f"{kind} {_gb(node.memory_mb)} (machine.node_types.{node.name}.memory).",
            path,
            hint=f"Ask for at most {_gb(node.memory_mb)}, e.g. `resources: {{memory: "
            f"{node.memory_mb // 1024}G}}` or a smaller memory level.",
        )
    if task.gpus_per_node > node.gpus:
        raise spec.error(
            f"jobs ask for {task.gpus_per_node} GPUs per node; {kind} {node.gpus} "
            f"(machine.node_types.{node.name}.gpus).",
            where.resource("gpus_per_node"),
            hint="GPU jobs need a constraint whose node type has GPUs.",
        )
    return node


def _packed(spec: CampaignSpec) -> str:
    n = spec.execution.jobs_per_task
    return f", for the jobs_per_task {n} jobs packed in one task" if n > 1 else ""


def _check_qos(
    spec: CampaignSpec,
    site: Site,
    task: Resources,
    node: NodeType | None,
    where: _Where,
    max_retries: int,
) -> QOS | None:
    _check_known(spec, "qos", task.qos, site.qos, "a QOS", where)
    qos = site.qos_of(task.qos)
    if qos is None:
        return None
    limit = qos.max_minutes
    if limit is not None and task.time_minutes > limit:
        path = where.timeout()
        if not _written(spec, path):  # the default time limit: point at the QOS chosen
            path = where.resource("qos")
        raise spec.error(
            f"jobs ask for a time limit of {task.time_minutes} minutes{_packed(spec)}; "
            f"the {qos.name} QOS allows at most {limit} minutes "
            f"(machine.qos.{qos.name}.max_walltime_hours: {qos.max_walltime_hours:g}).",
            path,
            hint=f"Set timeout_hours to {limit / 60:g} or less, or use another QOS.",
        )
    ceiling = spec.execution.retry.max_time_minutes
    escalates = spec.execution.retry.timeout_factor > 1 and max_retries > 0
    if limit is not None and ceiling is not None and escalates and ceiling > limit:
        raise spec.error(
            f"timeouts escalate the time limit up to {ceiling} minutes; the {qos.name} QOS "
            f"allows at most {limit} minutes "
            f"(machine.qos.{qos.name}.max_walltime_hours: {qos.max_walltime_hours:g}).",
            ("execution", "retry_policy", "max_time_minutes"),
            hint=f"Set it to {limit} or less (or leave it out: the QOS limit is the ceiling).",
        )
    if qos.max_nodes is not None and task.nodes > qos.max_nodes:
        raise spec.error(
            f"jobs ask for {task.nodes} nodes; the {qos.name} QOS allows at most "
            f"{qos.max_nodes} (machine.qos.{qos.name}.max_nodes).",
            where.resource("nodes"),
        )
    if qos.shared and qos.max_node_fraction is not None and node is not None:
        _check_share(spec, qos, node, task, where)
    return qos


def _check_share(
    spec: CampaignSpec, qos: QOS, node: NodeType, task: Resources, where: _Where
) -> None:
    fraction = qos.max_node_fraction or 1.0
    limit = f"the {qos.name} QOS allows at most {fraction:g} of a node"
    source = f"(machine.qos.{qos.name}.max_node_fraction)"
    if task.nodes > 1:
        raise spec.error(
            f"jobs ask for {task.nodes} nodes; {limit} {source}.",
            where.resource("nodes"),
            hint="Use an exclusive QOS (e.g. regular) for multi-node jobs.",
        )
    cpus = task.ntasks_per_node * task.cpus_per_task
    if cpus > fraction * node.cpus:
        raise spec.error(
            f"jobs ask for {cpus} of a {node.name} node's {node.cpus} CPUs; {limit} "
            f"({int(fraction * node.cpus)} CPUs) {source}.",
            where.resource("cpus_per_task"),
            hint="Use fewer CPUs, or an exclusive QOS (e.g. regular) for whole nodes.",
        )
    if task.memory_mb is not None and task.memory_mb > fraction * node.memory_mb:
        path, what = where.memory()
        raise spec.error(
            f"jobs ask for {_gb(task.memory_mb)} of a {node.name} node's "
            f"{_gb(node.memory_mb)} ({what}); {limit} "
            f"({_gb(int(fraction * node.memory_mb))}) {source}.",
            path,
            hint="Use less memory, or an exclusive QOS (e.g. regular) for whole nodes.",
        )


def _check_account(
    spec: CampaignSpec, site: Site, account: str | None, gpu: bool, where: _Where
) -> ConfigError | None:
    rules = site.accounts
    if account is None:
        return None
    path = where.resource("account")
    suffix = rules.gpu_suffix
    if rules.is_placeholder(account):
        gpu_form = f" (for GPU jobs the one ending in '{suffix}')" if gpu and suffix else ""
        return _warning(
            spec,
            f"account '{account}' is a placeholder: Slurm would refuse it.",
            path,
            hint=f"Set `resources.account` to your project's account{gpu_form} before "
            "submitting; `submit` to Slurm refuses a placeholder.",
        )
    if gpu and suffix and not account.endswith(suffix):
        raise spec.error(
            f"GPU jobs charge an account ending in '{suffix}' at this site "
            f"(machine.accounts.gpu_suffix), e.g. '{account}{suffix}'; '{account}' is not one.",
            path,
            hint=f"Set `resources.account: {account}{suffix}` for the GPU jobs "
            "(in an override if only some jobs use GPUs).",
        )
    if rules.is_malformed(account):
        return _warning(
            spec,
            f"account '{account}' does not look like an account of machine "
            f"'{spec.machine.name}' (machine.accounts.pattern: {rules.pattern}).",
            path,
            hint="Check the spelling; `submit` to Slurm refuses it.",
        )
    return None


def _warning(spec: CampaignSpec, message: str, path: KeyPath, hint: str) -> ConfigError:
    error = spec.error(message, path, hint)
    assert isinstance(error, ConfigError)
    return error


def _queue_cap(max_queued: int, used: Iterable[QOS]) -> tuple[int, list[str]]:
    """The machine's queue cap, lowered to the smallest submit limit of the QOS in use."""
    limits = [q for q in used if q.max_submitted_jobs is not None]
    if not limits:
        return max_queued, []
    tightest = min(limits, key=lambda q: q.max_submitted_jobs or 0)
    submit_limit = tightest.max_submitted_jobs or 0
    if max_queued <= submit_limit:
        return max_queued, []
    return submit_limit, [
        f"machine.max_queued_jobs {max_queued} is capped to {submit_limit}, the "
        f"{tightest.name} QOS's max_submitted_jobs: at most {submit_limit} array tasks of "
        "this campaign are queued or running at once (each array task counts as a job)."
    ]
