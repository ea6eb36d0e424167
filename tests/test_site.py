"""The site model: node types, QOS table and account rules read from the machine file."""

from __future__ import annotations

import pytest

from campaigns.core import config, yamlsource
from campaigns.core.expand import expand
from campaigns.core.site import QOS, AccountRules, NodeType
from campaigns.core.site_checks import SiteReview, ceilings, review_site
from campaigns.errors import ConfigError
from campaigns.scheduler import registry

CAMPAIGN = """\
campaign: {name: "Site test", version: "v1", machine: site}
parameters:
  realization: {range: [0, 4]}
job:
  command: "run --seed {realization} --out {output}"
  output: "r{realization:04d}.h5"
"""

SITE = """\
machine:
  name: site
  backend: slurm
  node_types:
    cpu: {cpus: 256, memory: 512G}
    gpu: {cpus: 128, memory: 256G, gpus: 4}
  default_node_type: cpu
  qos:
    regular: {max_walltime_hours: 48, max_nodes: 3072, max_submitted_jobs: 5000}
    debug: {max_walltime_hours: 0.5, max_nodes: 8, max_submitted_jobs: 5, max_running_jobs: 2}
    shared: {max_walltime_hours: 48, max_node_fraction: 0.5, shared: true, charge_factor: 1}
  default_qos: regular
  accounts: {pattern: "^m[0-9]{4}(_g)?$", placeholders: [m0000, mXXXX], gpu_suffix: "_g"}
resources: {constraint: cpu, qos: shared, cpus_per_task: 2, memory: 4G}
"""


def build(campaign: str = CAMPAIGN, machine: str = SITE):
    """A spec from inline YAML."""
    return config.build_spec(
        yamlsource.parse(campaign, "campaign.yaml"),
        yamlsource.parse(machine, "site.yaml", "machine file"),
        config.with_backends(config.load_schema(), registry.names()),
    )


def test_machine_file_describes_the_site() -> None:
    site = build().machine.site
    assert site.node_types["cpu"] == NodeType("cpu", cpus=256, memory_mb=512 * 1024, gpus=0)
    assert site.node_types["gpu"].is_gpu and not site.node_types["cpu"].is_gpu
    assert site.node_type(None) == site.node_types["cpu"]  # the default node type
    assert site.qos["debug"] == QOS(
        "debug", max_walltime_hours=0.5, max_nodes=8, max_submitted_jobs=5, max_running_jobs=2
    )
    assert site.qos["debug"].max_minutes == 30
    assert site.qos["shared"].shared and site.qos_of(None) == site.qos["regular"]
    assert site.accounts == AccountRules("^m[0-9]{4}(_g)?$", ("m0000", "mXXXX"), "_g")
    assert site.known


def test_a_campaign_overrides_one_site_number() -> None:
    campaign = CAMPAIGN + "machine:\n  qos:\n    debug: {max_nodes: 2}\n"
    debug = build(campaign).machine.site.qos["debug"]
    assert (debug.max_nodes, debug.max_walltime_hours) == (2, 0.5)  # merged, not replaced


def test_minimal_machines_model_nothing() -> None:
    machine = (config.CONFIG_ROOT / "defaults" / "local.yaml").read_text()
    site = build(CAMPAIGN.replace("machine: site", "machine: local"), machine).machine.site
    assert not site.known and site.node_type(None) is None and site.qos_of("regular") is None


def test_account_rules() -> None:
    rules = AccountRules("^m[0-9]{4}(_g)?$", ("m0000", "mXXXX"), "_g")
    assert rules.is_placeholder("mXXXX") and rules.is_placeholder("mXXXX_g")
    assert not rules.is_placeholder("m1234")
    assert rules.is_malformed("m12") and not rules.is_malformed("m1234_g")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ("default_qos: regular", ["default_qos", "'premium'", "debug, regular, shared"]),
        ("default_node_type: cpu", ["default_node_type", "'premium'", "cpu, gpu"]),
    ],
)
def test_unknown_defaults_are_located(edit: str, words: list[str]) -> None:
    key = edit.split(":")[0]
    with pytest.raises(ConfigError) as info:
        build(machine=SITE.replace(edit, f"{key}: premium"))
    assert info.value.file == "site.yaml" and info.value.line is not None
    for word in words:
        assert word in str(info.value)


def test_bad_account_pattern_is_located() -> None:
    with pytest.raises(ConfigError, match="not a regular expression") as info:
        build(machine=SITE.replace('"^m[0-9]{4}(_g)?$"', '"m[0-9"'))
    assert info.value.key_path == ("machine", "accounts", "pattern")


# --- validate enforces the site (core/site_checks) -------------------------------------


def review(campaign: str = CAMPAIGN, machine: str = SITE) -> SiteReview:
    """The site review of a campaign built from inline YAML."""
    return review_site(build(campaign, machine))


def refusal(campaign: str, machine: str = SITE) -> ConfigError:
    """The located error the site checks raise for `campaign`."""
    with pytest.raises(ConfigError) as info:
        review(campaign, machine)
    error = info.value
    assert error.exit_code == 2 and "\n" not in str(error) and error.line is not None
    return error


def with_resources(extra: str, execution: str = "") -> str:
    """CAMPAIGN with its own `resources:` (and `execution:`) lines."""
    text = CAMPAIGN + f"resources: {{account: m1234, {extra}}}\n"
    return text + (f"execution: {{{execution}}}\n" if execution else "")


def test_a_campaign_within_the_site_passes() -> None:
    assert review(with_resources("qos: shared")) == SiteReview((), None, 5000)


@pytest.mark.parametrize(
    ("resources", "execution", "key", "words"),
    [
        ("cpus_per_task: 512, qos: regular", "", ("resources", "cpus_per_task"), ["512", "256"]),
        (
            "ntasks_per_node: 64, cpus_per_task: 8, qos: regular",
            "",
            ("resources", "cpus_per_task"),
            ["64 tasks x 8 CPUs = 512", "a cpu node has 256"],
        ),
        ("memory: 600G, qos: regular", "", ("resources", "memory"), ["600 GB", "512 GB"]),
        (
            "constraint: gpu, gpus_per_node: 8, qos: regular",
            "",
            ("resources", "gpus_per_node"),
            ["8 GPUs", "a gpu node has 4"],
        ),
        ("gpus_per_node: 1, qos: regular", "", ("resources", "gpus_per_node"), ["cpu node has 0"]),
        ("constraint: knl", "", ("resources", "constraint"), ["'knl'", "cpu, gpu"]),
        ("qos: premium", "", ("resources", "qos"), ["'premium'", "regular, debug, shared"]),
        ("qos: debug", "timeout_hours: 2", ("execution", "timeout_hours"), ["120", "30 minutes"]),
        (
            "qos: debug, nodes: 16",
            "timeout_hours: 0.25",
            ("resources", "nodes"),
            ["16 nodes", "at most 8"],
        ),
        ("qos: debug", "", ("resources", "qos"), ["60 minutes", "at most 30 minutes"]),
        ("qos: shared, nodes: 2", "", ("resources", "nodes"), ["2 nodes", "0.5 of a node"]),
        ("qos: shared, cpus_per_task: 200", "", ("resources", "cpus_per_task"), ["128 CPUs"]),
        ("qos: shared, memory: 300G", "", ("resources", "memory"), ["300 GB", "256 GB"]),
    ],
)
def test_requests_beyond_the_site_are_refused_with_its_number(
    resources: str, execution: str, key: tuple[str, ...], words: list[str]
) -> None:
    error = refusal(with_resources(resources, execution))
    assert error.key_path == key and error.file == "campaign.yaml"
    for word in words:
        assert word in str(error)


def test_walltime_is_checked_after_overrides() -> None:
    campaign = with_resources("qos: debug", "timeout_hours: 0.25") + (
        "overrides:\n  - match: {realization: 3}\n    execution: {timeout_hours: 1}\n"
    )
    error = refusal(campaign)
    assert error.key_path == ("overrides", 0, "execution", "timeout_hours")
    assert "60 minutes" in str(error) and "at most 30 minutes" in str(error)


def test_walltime_is_checked_for_packed_tasks() -> None:
    # Single-task jobs of a packed task run one per CPU: 4 jobs on 4 CPUs take one 20-minute
    # wave; 8 jobs take two waves, 40 minutes, beyond debug's 30.
    campaign = with_resources(
        "qos: debug, cpus_per_task: 4", "timeout_hours: 0.3333, jobs_per_task: 4"
    )
    assert review(campaign).max_queued_jobs == 5
    error = refusal(campaign.replace("jobs_per_task: 4", "jobs_per_task: 8"))
    assert "40 minutes" in str(error) and "jobs_per_task 8" in str(error)


def test_timeout_escalation_ceiling_within_the_qos() -> None:
    campaign = with_resources(
        "qos: debug", "timeout_hours: 0.25, retry_policy: {max_time_minutes: 60}"
    )
    error = refusal(campaign)
    assert error.key_path == ("execution", "retry_policy", "max_time_minutes")
    assert "60 minutes" in str(error) and "at most 30" in str(error)
    # Without a ceiling of its own, escalation stops at the QOS limit and the node's memory.
    spec = build(with_resources("qos: debug", "timeout_hours: 0.25"))
    group = expand(spec).groups[0]
    policy = ceilings(spec.machine.site, group.resources, spec.execution.retry)
    assert (policy.max_time_minutes, policy.max_memory_mb) == (30, 512 * 1024)


def test_memory_level_of_the_machine_file_is_located_where_chosen() -> None:
    machine = SITE + (
        "memory_levels: {high: 480G}\n"
        "job_types:\n  gpu_big: {constraint: gpu, gpus_per_node: 4, qos: regular}\n"
    )
    campaign = (
        CAMPAIGN + "resources: {account: m1234_g, job_type: gpu_big, memory_requirement: high}\n"
    )
    error = refusal(
        campaign,
        machine.replace(
            "resources: {constraint: cpu, qos: shared, cpus_per_task: 2, memory: 4G}\n", ""
        ),
    )
    assert error.key_path == ("resources", "memory_requirement")
    assert "memory level 'high'" in str(error) and "256 GB" in str(error)


def test_gpu_jobs_need_the_gpu_account() -> None:
    error = refusal(with_resources("constraint: gpu, gpus_per_node: 4, qos: regular"))
    assert error.key_path == ("resources", "account")
    assert "'_g'" in str(error) and "m1234_g" in str(error)
    fine = with_resources("constraint: gpu, gpus_per_node: 4, qos: regular").replace(
        "m1234", "m1234_g"
    )
    assert review(fine).account_error is None


@pytest.mark.parametrize(
    ("account", "word"),
    [("mXXXX", "placeholder"), ("m0000_g", "placeholder"), ("myproj", "does not look like")],
)
def test_doubtful_accounts_are_warnings_not_errors(account: str, word: str) -> None:
    found = review(with_resources("qos: shared").replace("m1234", account)).account_error
    assert found is not None and word in str(found) and found.key_path == ("resources", "account")


def test_queue_cap_lowered_to_the_qos_submit_limit_with_a_note() -> None:
    found = review(with_resources("qos: debug", "timeout_hours: 0.25"))
    assert (found.max_queued_jobs, found.max_running_jobs) == (5, 2)
    assert "capped to 5" in found.notes[0] and "debug" in found.notes[0]


def test_a_machine_without_a_site_model_checks_nothing() -> None:
    machine = (
        "machine: {name: site, backend: slurm}\nresources: {cpus_per_task: 9999, memory: 99T}\n"
    )
    assert review(CAMPAIGN + "execution: {timeout_hours: 100}\n", machine) == SiteReview(
        (), None, 5000
    )
