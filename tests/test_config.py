"""Loading a campaign: three-tier merge, validation and located, readable errors.

Pure tests build specs from inline YAML (`yamlsource.parse` + `config.build_spec`);
file tests go through `config.load_campaign`. Invalid campaigns live as fixtures in
`tests/invalid_configs/` and carry their expected error in their own comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from campaigns.core import config, expand, yamlsource
from campaigns.errors import ConfigError, format_key_path
from campaigns.scheduler import registry

INVALID = Path(__file__).parent / "invalid_configs"
LOCAL_MACHINE = (config.CONFIG_ROOT / "defaults" / "local.yaml").read_text()

# A machine file written for these tests, so that merge results do not depend on
# the shipped defaults.
MACHINE = """\
machine:
  name: testbox
  backend: local
  max_queued_jobs: 500
  setup: ["module load a", "module load b"]
execution:
  batch_size: 50
  max_retries: 4
  timeout_hours: 1
resources:
  job_type: small
  memory_requirement: low
  account: acct0
job_types:
  small: {nodes: 1, ntasks_per_node: 1, cpus_per_task: 2}
  wide: {nodes: 2, ntasks_per_node: 8, cpus_per_task: 1}
memory_levels:
  low: 1G
  medium: 4G
  high: 16G
"""

CAMPAIGN = """\
campaign:
  name: "Tier test"
  version: "v1"
  machine: testbox
parameters:
  realization: {range: [0, 4]}
  redshift: [1.0, 1.5, 2.0]
job:
  command: "run --seed {realization} --z {redshift} --out {output}"
  output: "r{realization:04d}/mock_z{redshift:.3f}.hdf5"
"""


def build(campaign: str, machine: str = MACHINE, machine_path: str = "testbox.yaml"):
    """A spec from inline YAML, as `load_campaign` would build it."""
    return config.build_spec(
        yamlsource.parse(campaign, "campaign.yaml"),
        yamlsource.parse(machine, machine_path, "machine file"),
        config.with_backends(config.load_schema(), registry.names()),
    )


def build_error(campaign: str, machine: str = MACHINE) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        expand.expand(build(campaign, machine))
    assert_reads_well(info.value)
    return info.value


def assert_reads_well(error: ConfigError) -> None:
    """One paragraph, exit code 2, no traceback text, no Python reprs of internals."""
    text = str(error)
    assert error.exit_code == 2
    assert "\n" not in text
    for bad in (
        "Traceback",
        "object at 0x",
        "<class",
        "ValidationError",
        "Error:",
        "None.",
        "OrderedDict",
        "\\n",
    ):
        assert bad not in text, f"{bad!r} in message: {text}"
    assert not re.search(r"\{'\w+': ", text), f"a Python dict in the message: {text}"
    assert text.startswith(error.file or "<config>")


@contextmanager
def memory_cap(extra_bytes: int) -> Iterator[None]:
    """Limit this process to its current size plus `extra_bytes` (Linux): a regression that
    tries to build 10**10 values then fails with MemoryError instead of being OOM-killed."""
    try:
        import resource

        with open("/proc/self/status") as fh:
            size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of `text` containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


# -- three tiers ---------------------------------------------------------------------


def test_machine_values_are_inherited_and_campaign_values_win() -> None:
    spec = build(CAMPAIGN + "execution:\n  max_retries: 1\n  batch_size: 7\n")
    assert spec.execution.max_retries == 1 and spec.execution.batch_size == 7
    assert spec.execution.timeout_hours == 1.0  # from the machine
    assert spec.machine.name == "testbox" and spec.machine.max_queued_jobs == 500
    assert spec.machine.setup == ("module load a", "module load b")
    assert spec.merged["resources"] == {
        "job_type": "small",
        "memory_requirement": "low",
        "account": "acct0",
    }


def test_mappings_merge_deeply_lists_and_scalars_are_replaced() -> None:
    spec = build(
        CAMPAIGN
        + """\
machine:
  setup: ["module load c"]
resources:
  account: mine
job_types:
  huge: {nodes: 4}
  small: {cpus_per_task: 3}
"""
    )
    assert spec.machine.setup == ("module load c",)  # a list is replaced, not appended
    assert spec.machine.name == "testbox" and spec.machine.backend == "local"
    assert spec.merged["resources"]["account"] == "mine"
    assert spec.merged["resources"]["job_type"] == "small"
    assert set(spec.job_types) == {"small", "wide", "huge"}
    assert spec.job_types["small"] == {"nodes": 1, "ntasks_per_node": 1, "cpus_per_task": 3}


def test_deep_merge_does_not_modify_its_inputs() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    over = {"a": {"b": 2}, "e": {"f": 1}}
    merged = config.deep_merge(base, over)
    assert merged == {"a": {"b": 2, "c": [1]}, "d": 1, "e": {"f": 1}}
    merged["a"]["c"].append(2)
    merged["e"]["f"] = 5
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1} and over == {"a": {"b": 2}, "e": {"f": 1}}


def test_override_changes_memory_and_timeout_of_matching_jobs_only() -> None:
    spec = build(
        CAMPAIGN
        + """\
execution:
  timeout_hours: 0.5
overrides:
  - match: {redshift: 2.0}
    resources: {memory_requirement: high}
    execution: {timeout_hours: 3, max_retries: 0}
"""
    )
    expansion = expand.expand(spec)
    assert len(expansion.jobs) == 12 and len(expansion.groups) == 2
    for job in expansion.jobs:
        group = expansion.groups[job.group]
        if job.params["redshift"] == 2.0:
            assert group.resources.memory_mb == 16 * 1024
            assert group.resources.time_minutes == 180
            assert group.max_retries == 0
        else:
            assert group.resources.memory_mb == 1024
            assert group.resources.time_minutes == 30
            assert group.max_retries == 4
        # Everything the override does not name comes from the tiers below it.
        assert group.resources.cpus_per_task == 2 and group.resources.account == "acct0"
    assert sum(1 for j in expansion.jobs if j.params["redshift"] == 2.0) == 4


def test_override_matching_two_axes_selects_the_intersection() -> None:
    spec = build(
        CAMPAIGN
        + """\
overrides:
  - match: {realization: [1, 3], redshift: 1.5}
    resources: {job_type: wide}
"""
    )
    expansion = expand.expand(spec)
    wide = [j.key for j in expansion.jobs if expansion.groups[j.group].resources.nodes == 2]
    assert wide == ["realization=1,redshift=1.5", "realization=3,redshift=1.5"]


def test_overlapping_overrides_apply_in_order() -> None:
    spec = build(
        CAMPAIGN
        + """\
overrides:
  - match: {redshift: [1.5, 2.0]}
    resources: {memory_requirement: medium}
    execution: {timeout_hours: 2}
  - match: {redshift: 2.0}
    resources: {memory_requirement: high}
"""
    )
    expansion = expand.expand(spec)
    seen = {}
    for job in expansion.jobs:
        res = expansion.groups[job.group].resources
        seen[job.params["redshift"]] = (res.memory_mb, res.time_minutes)
    assert seen == {1.0: (1024, 60), 1.5: (4096, 120), 2.0: (16384, 120)}
    assert len(expansion.groups) == 3


def test_override_matches_integer_valued_float_and_never_bool_for_int() -> None:
    spec = build(
        CAMPAIGN + "overrides:\n  - match: {redshift: 2}\n"
        "    resources: {memory_requirement: high}\n"
    )
    expansion = expand.expand(spec)
    assert len(expansion.groups) == 2  # 2 matches 2.0: YAML writes both
    error = build_error(
        CAMPAIGN + "overrides:\n  - match: {realization: true}\n"
        "    resources: {memory_requirement: high}\n"
    )
    assert "matches no job" in error.message


def test_a_later_memory_level_beats_an_earlier_explicit_memory() -> None:
    # The campaign gives an explicit size; an override naming a level must still win.
    spec = build(
        CAMPAIGN
        + """\
resources: {memory: 3G}
overrides:
  - match: {redshift: 2.0}
    resources: {memory_requirement: high}
"""
    )
    expansion = expand.expand(spec)
    memory = {
        expansion.groups[j.group].resources.memory_mb
        for j in expansion.jobs
        if j.params["redshift"] == 2.0
    }
    other = {
        expansion.groups[j.group].resources.memory_mb
        for j in expansion.jobs
        if j.params["redshift"] != 2.0
    }
    assert memory == {16384} and other == {3072}
    # Same between the machine file (explicit size) and the campaign (a level).
    machine = MACHINE.replace("  memory_requirement: low\n", "  memory: 7G\n")
    assert expand.expand(build(CAMPAIGN, machine)).groups[0].resources.memory_mb == 7 * 1024
    spec = build(CAMPAIGN + "resources: {memory_requirement: medium}\n", machine)
    assert expand.expand(spec).groups[0].resources.memory_mb == 4096


def test_shipped_examples_load() -> None:
    root = Path(__file__).resolve().parents[1] / "config" / "examples"
    small = config.load_campaign(root / "test_campaign.yaml")
    assert small.job_count == 30 and small.machine.name == "local"
    assert small.execution.retry.backoff.base_seconds == 5 and small.execution.max_retries == 2
    big = config.load_campaign(root / "production_campaign.yaml")
    assert big.job_count == 40_000 and big.machine.name == "nersc"
    assert big.machine.setup == ("module load python", "module load cray-hdf5")


# -- files ---------------------------------------------------------------------------


def test_load_campaign_with_machine_by_name(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN.replace("machine: testbox", "machine: local"))
    spec = config.load_campaign(path)
    assert spec.machine.name == "local" and spec.machine.backend == "local"
    assert spec.source == str(path)
    assert Path(spec.machine.source or "").name == "local.yaml"
    # The shipped local machine's memory level `low` is 512M.
    assert expand.expand(spec).groups[0].resources.memory_mb == 512


def test_machine_defaults_to_local_when_not_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN.replace("  machine: testbox\n", ""))
    assert config.load_campaign(path).machine.name == "local"


def test_load_campaign_with_machine_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "box.yaml").write_text(MACHINE)
    (tmp_path / "campaigns").mkdir()
    path = tmp_path / "campaigns" / "c.yaml"
    path.write_text(CAMPAIGN.replace("machine: testbox", "machine: ../site/box.yaml"))
    spec = config.load_campaign(path)
    assert spec.machine.name == "testbox" and spec.execution.batch_size == 50
    assert Path(spec.machine.source or "") == (tmp_path / "site" / "box.yaml").resolve()


def test_missing_campaign_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        config.load_campaign(missing)
    assert_reads_well(info.value)
    assert info.value.file == str(missing) and "not found" in str(info.value)


def test_campaign_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load_campaign(tmp_path)
    assert_reads_well(info.value)
    assert "directory" in str(info.value)


def test_campaign_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"campaign:\n  name: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        config.load_campaign(path)
    assert_reads_well(info.value)
    assert info.value.line == 2 and "UTF-8" in str(info.value)


def test_machine_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN.replace("machine: testbox", "machine: site/"))
    with pytest.raises(ConfigError) as info:
        config.load_campaign(path)
    assert_reads_well(info.value)
    assert info.value.key_path == ("campaign", "machine") and info.value.line == 4


def test_empty_machine_file_names_the_machine_file(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("# nothing yet\n")
    path = tmp_path / "c.yaml"
    path.write_text(CAMPAIGN.replace("machine: testbox", "machine: m.yaml"))
    with pytest.raises(ConfigError) as info:
        config.load_campaign(path)
    assert_reads_well(info.value)
    assert Path(info.value.file or "").name == "m.yaml"
    assert "machine file is empty" in str(info.value)


# -- invalid fixtures ------------------------------------------------------------------


def _fixtures() -> list[Path]:
    return sorted(INVALID.glob("*.yaml"))


def test_there_are_invalid_fixtures() -> None:
    assert len(_fixtures()) >= 30


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.stem)
def test_invalid_fixture(path: Path) -> None:
    text = path.read_text()
    expects = dict(re.findall(r"^# expect-(file|key|line): (.+)$", text, re.M))
    says = re.findall(r"^# expect-text: (.+)$", text, re.M)
    assert says, "a fixture must say what the message contains"
    with pytest.raises(ConfigError) as info:
        expand.expand(config.load_campaign(path))
    error = info.value
    message = str(error)
    assert_reads_well(error)
    where = (path.parent / expects["file"]).resolve() if "file" in expects else path.resolve()
    assert Path(error.file or "").resolve() == where, message
    assert message.startswith(f"{error.file}")
    if expects.get("line") == "none":
        assert error.line is None, message
    else:
        assert error.line == line_of(where.read_text(), "# <- here"), message
        assert f"line {error.line}" in message
    if "key" in expects:
        assert format_key_path(error.key_path) == expects["key"], message
        assert f"key '{expects['key']}'" in message
    for words in says:
        assert words in message, message


# -- inline bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "placeholder",
    ["{a.b}", "{0}", "{}", "{realization!r}", "{a[0]}", "{realization", "realization}"],
)
def test_malformed_placeholder(placeholder: str) -> None:
    error = build_error(CAMPAIGN.replace("--seed {realization}", f"--seed {placeholder}"))
    assert error.key_path == ("job", "command")
    assert error.line == line_of(CAMPAIGN, "command:")
    assert "bad placeholder in command" in error.message


@pytest.mark.parametrize(
    "value",
    ["a; rm -rf ~", "$(x)", "a b", "`id`", "x|y", "../x", "..", "a/b", "'q'", 'a"b', "~", "*"],
)
def test_unsafe_parameter_values(value: str) -> None:
    text = CAMPAIGN.replace("redshift: [1.0, 1.5, 2.0]", f"redshift:\n    - 1.0\n    - {value!r}")
    error = build_error(text)
    assert error.key_path == ("parameters", "redshift", 1)
    assert error.line == line_of(CAMPAIGN, "redshift: [") + 2
    assert "is not allowed" in error.message


@pytest.mark.parametrize("value", ["a-b", "v1.2", "x_y", "p+q", "k=v", "50%", "user@host", "1e-5"])
def test_safe_parameter_values(value: str) -> None:
    spec = build(
        CAMPAIGN.replace("redshift: [1.0, 1.5, 2.0]", f"model: [{value!r}]")
        .replace("{redshift}", "{model}")
        .replace("_z{redshift:.3f}", "_{model}")
    )
    assert [j.params["model"] for j in expand.expand(spec).jobs][:1] == [value]


@pytest.mark.parametrize(
    "template",
    [
        "../{realization}_{redshift}.h5",
        "/abs/{realization}_{redshift}.h5",
        "a/./{realization}_{redshift}.h5",
        "a//{realization}_{redshift}.h5",
        "a/{realization}_{redshift}/",
        ".hidden/{realization}_{redshift}.h5",
        "a b/{realization}_{redshift}.h5",
    ],
)
def test_output_must_stay_inside_catalogs(template: str) -> None:
    error = build_error(CAMPAIGN.replace("r{realization:04d}/mock_z{redshift:.3f}.hdf5", template))
    assert error.key_path == ("job", "output") and error.line == line_of(CAMPAIGN, "output:")


def test_output_may_use_job_key() -> None:
    spec = build(CAMPAIGN.replace("r{realization:04d}/mock_z{redshift:.3f}.hdf5", "{job_key}.h5"))
    assert expand.expand(spec).jobs[0].output == "realization=0,redshift=1.0.h5"


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "the campaign file is empty"),
        ("# only a comment\n", "the campaign file is empty"),
        ("- a\n- b\n", "not a list"),
        ("just text\n", "not plain text"),
        ("42\n", "not a number"),
    ],
)
def test_degenerate_documents(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        yamlsource.parse(text, "campaign.yaml")
    assert_reads_well(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "text, line",
    [
        ("campaign:\n  name: x\n  version: [1\n", 3),
        ('a: "x\x07y"\n', 1),
        ("a: 1\nb: 2\n\tc: 3\n", 3),
        ("a:\n  - 1\n  -2: [\n", 3),
    ],
)
def test_yaml_errors_have_a_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        yamlsource.parse(text, "campaign.yaml")
    assert_reads_well(info.value)
    assert info.value.line is not None and abs(info.value.line - line) <= 1


def test_yaml_error_names_where_an_unclosed_bracket_began() -> None:
    text = "campaign:\n  name: x\nparameters:\n  r: [1, 2\n"
    with pytest.raises(ConfigError) as info:
        yamlsource.parse(text, "campaign.yaml")
    assert "starts on line 4" in str(info.value)


def test_yaml_keys_keep_their_lines_and_types() -> None:
    doc = yamlsource.parse("a:\n  b: 1\n  c:\n    - x\n    - y\n'1': s\n2: n\n", "f.yaml")
    assert doc.lines[("a", "b")] == 2 and doc.lines[("a", "c", 1)] == 5
    assert doc.lines[("1",)] == 6 and doc.lines[(2,)] == 7
    assert doc.line_of(("a", "c", 1, "zz")) == 5


def test_yaml_merge_keys_are_followed_and_explicit_keys_win() -> None:
    text = "base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n"
    doc = yamlsource.parse(text, "f.yaml")
    assert doc.data["other"] == {"x": 1, "y": 3}
    assert doc.lines[("other", "y")] == 4 and doc.lines[("other", "x")] == 1


def test_recursive_alias_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as info:
        yamlsource.parse("a: &x [1, *x]\n", "f.yaml")
    assert_reads_well(info.value)


def test_complex_key_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as info:
        yamlsource.parse("? [a, b]\n: 1\n", "f.yaml")
    assert_reads_well(info.value)


def test_numeric_keys_are_fine_under_science_only() -> None:
    spec = build(CAMPAIGN + "science:\n  1: first\n  b: {2: x}\n")
    assert spec.merged["science"][1] == "first"
    error = build_error(CAMPAIGN + "job_types:\n  7: {nodes: 1}\n")
    assert error.key_path == ("job_types", "7") and "is not text" in error.message
    assert error.line == line_of(CAMPAIGN + "job_types:\n  7: {nodes: 1}\n", "7: {")


#: (snippet appended to the campaign, key path named, words in the message)
SCHEMA_ERRORS = [
    ("execution: {batch_size: 0}", "execution.batch_size", "must be at least 1, got 0"),
    ("execution: {timeout_hours: 0}", "execution.timeout_hours", "must be greater than 0"),
    ("execution: {retry_backoff: {jitter: 2}}", "execution.retry_backoff.jitter", "at most 1"),
    ("execution: {backend: pbs}", "execution.backend", "choose one of"),
    ("execution:", "execution", "has no value"),
    ("resources: {memory: lots}", "resources.memory", "'lots' is not in the expected form"),
    ("resources: {nodes: 1.5}", "resources.nodes", "expected an integer, got the number 1.5"),
    ("outputs: {compression: zip}", "outputs.compression", "did you mean 'gzip'"),
    ("overrides: [{resources: {nodes: 2}}]", "overrides[0].match", "missing required key"),
    ("overrides: [{match: {}}]", "overrides[0].match", "must not be empty"),
    (
        "overrides: [{match: {redshift: 2.0}, execution: {batch_size: 3}}]",
        "overrides[0].execution.batch_size",
        "unknown key 'batch_size' in 'overrides[0].execution'",
    ),
    ("qa: {min_rows: -1}", "qa.min_rows", "must be at least 0"),
    (
        "execution: {retry_backoff: {max_seconds: 1e20}}",
        "execution.retry_backoff.max_seconds",
        "must be at most 31536000",
    ),
]


@pytest.mark.parametrize("snippet, key, words", SCHEMA_ERRORS)
def test_schema_errors_are_explained(snippet: str, key: str, words: str) -> None:
    text = CAMPAIGN + snippet + "\n"
    error = build_error(text)
    assert format_key_path(error.key_path) == key, str(error)
    assert words in str(error), str(error)
    assert error.line is not None and error.line > line_of(CAMPAIGN, "output:")


@pytest.mark.parametrize(
    "axis, key, words",
    [
        ("{range: [0, 3.5]}", "parameters.realization.range[1]", "expected an integer"),
        ("{range: [0, 3, 0]}", "parameters.realization.range", "step must not be 0"),
        ("{range: [3]}", "parameters.realization.range", "needs at least 2 items"),
        ("{rang: [0, 3]}", "parameters.realization", "did you mean 'range'"),
        ("[1, null]", "parameters.realization[1]", "got nothing"),
        ("[1, [2]]", "parameters.realization[1]", "got a list"),
        ("5", "parameters.realization", "must be a list of values"),
        ("{zip: {}}", "parameters.realization.zip", "must not be empty"),
        ("[.inf]", "parameters.realization[0]", "not a finite number"),
        ("[1, '1']", "parameters.realization[1]", "different types that read the same"),
        ("{range: [0, 10000000000]}", "parameters.realization.range", "more than the"),
    ],
)
def test_bad_axes(axis: str, key: str, words: str) -> None:
    text = CAMPAIGN.replace("{range: [0, 4]}", axis)
    with memory_cap(2 * 1024**3):  # a range of 10**10 values must be refused, not built
        error = build_error(text)
    assert format_key_path(error.key_path) == key, str(error)
    assert words in str(error), str(error)
    assert error.line == line_of(CAMPAIGN, "realization: {range")


def test_parameter_defined_twice() -> None:
    error = build_error(
        CAMPAIGN.replace("redshift: [1.0, 1.5, 2.0]", "zz: {zip: {realization: [1], other: [2]}}")
    )
    assert "defined twice" in error.message


def test_parameter_name_must_be_an_identifier() -> None:
    error = build_error(CAMPAIGN.replace("redshift: [1.0", "red-shift: [1.0"))
    assert "valid identifier" in error.message
    assert error.line == line_of(CAMPAIGN, "redshift: [")


def test_string_values_that_mimic_the_key_separators_cannot_collide() -> None:
    text = (
        CAMPAIGN.replace("realization: {range: [0, 4]}", "a: ['1,b=2', '1']")
        .replace("redshift: [1.0, 1.5, 2.0]", "b: ['3', '2,b=3']")
        .replace("--seed {realization} --z {redshift}", "{a} {b}")
        .replace("r{realization:04d}/mock_z{redshift:.3f}.hdf5", "{a}_{b}.h5")
    )
    error = build_error(text)
    assert "same key 'a=1,b=2,b=3'" in error.message


def test_all_errors_report_the_first_problem_and_count_the_rest() -> None:
    error = build_error(CAMPAIGN + "execution:\n  batch_size: x\n  max_retries: y\n")
    assert error.key_path == ("execution", "batch_size")
    assert "1 more problem" in str(error)


def test_campaign_file_problems_come_before_machine_file_problems() -> None:
    machine = MACHINE.replace("batch_size: 50", "batch_size: fifty")
    error = build_error(CAMPAIGN + "execution:\n  max_retries: x\n", machine)
    assert error.file == "campaign.yaml" and error.key_path == ("execution", "max_retries")
    error = build_error(CAMPAIGN, machine)
    assert error.file == "testbox.yaml" and error.line == line_of(machine, "batch_size")


def test_a_campaign_value_hides_a_bad_machine_value() -> None:
    machine = MACHINE.replace("batch_size: 50", "batch_size: fifty")
    spec = build(CAMPAIGN + "execution:\n  batch_size: 5\n", machine)
    assert spec.execution.batch_size == 5


# -- naming_scheme alias -----------------------------------------------------------------


def test_naming_scheme_alone_is_the_output_template() -> None:
    text = CAMPAIGN.replace('  output: "r{realization:04d}/mock_z{redshift:.3f}.hdf5"\n', "")
    spec = build(text + 'outputs:\n  naming_scheme: "n{realization}_{redshift}.h5"\n')
    assert spec.output == "n{realization}_{redshift}.h5"
    assert expand.expand(spec).jobs[1].output == "n0_1.5.h5"


def test_naming_scheme_equal_to_output_is_accepted() -> None:
    spec = build(
        CAMPAIGN + 'outputs:\n  naming_scheme: "r{realization:04d}/mock_z{redshift:.3f}.hdf5"\n'
    )
    assert spec.output == "r{realization:04d}/mock_z{redshift:.3f}.hdf5"


def test_naming_scheme_different_from_output_is_an_error() -> None:
    text = CAMPAIGN + 'outputs:\n  naming_scheme: "x{realization}_{redshift}.h5"\n'
    error = build_error(text)
    assert error.key_path == ("outputs", "naming_scheme")
    assert error.line == line_of(text, "naming_scheme")


def test_no_output_template_at_all_is_an_error() -> None:
    line = '  output: "r{realization:04d}/mock_z{redshift:.3f}.hdf5"\n'
    error = build_error(CAMPAIGN.replace(line, ""))
    assert "no output template" in error.message and error.key_path == ("job",)


# -- config hash -------------------------------------------------------------------------


def test_config_hash_is_stable() -> None:
    first = build(CAMPAIGN).config_hash
    assert first == build(CAMPAIGN).config_hash
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    # Comments, spacing and key order do not change the configuration.
    reordered = CAMPAIGN.replace(
        '  name: "Tier test"\n  version: "v1"\n',
        "  version: v1   # the version\n  name: Tier test\n",
    )
    assert build(reordered).config_hash == first


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t + "execution:\n  batch_size: 51\n",
        lambda t: t.replace("[1.0, 1.5, 2.0]", "[1.0, 1.5, 2.5]"),
        lambda t: t.replace("--out {output}", "--output {output}"),
        lambda t: t + "science:\n  note: x\n",
        lambda t: t.replace("[1.0, 1.5, 2.0]", "[1, 1.5, 2.0]"),
    ],
)
def test_config_hash_changes_with_the_config(change) -> None:
    assert build(change(CAMPAIGN)).config_hash != build(CAMPAIGN).config_hash


def test_config_hash_changes_with_the_machine_file() -> None:
    machine = MACHINE.replace("max_queued_jobs: 500", "max_queued_jobs: 501")
    assert build(CAMPAIGN, machine).config_hash != build(CAMPAIGN).config_hash


def test_config_hash_tolerates_mixed_key_types_in_science() -> None:
    spec = build(CAMPAIGN + "science:\n  1: a\n  b: 2\n")
    assert spec.config_hash == config.config_hash(spec.merged)


@pytest.mark.parametrize(
    "command, words",
    [
        ("run {realization", "a '{' that is never closed"),
        ("run realization} {output}", "a '}' that closes no '{'"),
        ("run {realization {output}", "not closed before the next '{'"),
    ],
)
def test_broken_braces_are_explained_in_plain_words(command: str, words: str) -> None:
    error = build_error(
        CAMPAIGN.replace("run --seed {realization} --z {redshift} --out {output}", command)
    )
    assert words in error.message and "{{" in str(error)
