"""The site model: node types, QOS table and account rules read from the machine file."""

from __future__ import annotations

import pytest

from campaigns.core import config, yamlsource
from campaigns.core.site import QOS, AccountRules, NodeType
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
