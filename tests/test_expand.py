"""Expansion: parameter space -> jobs with deterministic keys, uids, outputs and groups."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.core import config, expand, yamlsource
from campaigns.core.expand import CommandTemplate, iter_chunks, job_uid
from campaigns.errors import ConfigError
from campaigns.scheduler import registry

ROOT = Path(__file__).resolve().parents[1]
LOCAL_MACHINE = (ROOT / "config" / "defaults" / "local.yaml").read_text()
HEAD = 'campaign: {name: "Expand test", version: "v1", machine: local}\n'


def spec_of(parameters: str, output: str, command: str = "run {output}", extra: str = ""):
    text = f"{HEAD}parameters:\n{parameters}job:\n  command: {command!r}\n  output: {output!r}\n"
    return config.build_spec(
        yamlsource.parse(text + extra, "campaign.yaml"),
        yamlsource.parse(LOCAL_MACHINE, "local.yaml", "machine file"),
        config.with_backends(config.load_schema(), registry.names()),
    )


def spec_from_mapping(parameters: dict, output: str):
    body = yaml.safe_dump({"parameters": parameters}, default_flow_style=None, sort_keys=False)
    text = f"{HEAD}{body}job:\n  command: 'run {{output}}'\n  output: {output!r}\n"
    return config.build_spec(
        yamlsource.parse(text, "campaign.yaml"),
        yamlsource.parse(LOCAL_MACHINE, "local.yaml", "machine file"),
        config.with_backends(config.load_schema(), registry.names()),
    )


# -- order, ranges, zips, types -------------------------------------------------------


def test_cartesian_product_in_written_order_last_axis_fastest() -> None:
    spec = spec_of("  a: [2, 1]\n  b: [x, y, z]\n", "{a}_{b}.txt")
    jobs = expand.expand(spec).jobs
    assert [j.key for j in jobs] == [
        "a=2,b=x",
        "a=2,b=y",
        "a=2,b=z",
        "a=1,b=x",
        "a=1,b=y",
        "a=1,b=z",
    ]
    assert [j.index for j in jobs] == list(range(6))
    assert spec.parameter_names == ("a", "b") and spec.job_count == 6


@pytest.mark.parametrize(
    "axis, values",
    [
        ("{range: [0, 4]}", [0, 1, 2, 3]),
        ("{range: [2, 11, 3]}", [2, 5, 8]),
        ("{range: [3, 0, -1]}", [3, 2, 1]),
        ("{range: [-2, 1]}", [-2, -1, 0]),
        ("[5, 3, 4]", [5, 3, 4]),
    ],
)
def test_axis_forms(axis: str, values: list[int]) -> None:
    jobs = expand.expand(spec_of(f"  n: {axis}\n", "n{n}.txt")).jobs
    assert [j.params["n"] for j in jobs] == values
    assert all(type(j.params["n"]) is int for j in jobs)


def test_zip_entry_label_is_not_a_parameter() -> None:
    spec = spec_of(
        "  r: {range: [0, 2]}\n  snaps:\n    zip:\n      snapshot: [0, 5]\n"
        "      redshift: [3.0, 0.5]\n",
        "r{r}/s{snapshot}.h5",
        command="run {snapshot} {redshift} {output}",
    )
    jobs = expand.expand(spec).jobs
    assert spec.parameter_names == ("r", "snapshot", "redshift")
    assert [j.params for j in jobs] == [
        {"r": 0, "snapshot": 0, "redshift": 3.0},
        {"r": 0, "snapshot": 5, "redshift": 0.5},
        {"r": 1, "snapshot": 0, "redshift": 3.0},
        {"r": 1, "snapshot": 5, "redshift": 0.5},
    ]
    assert all("snaps" not in j.params for j in jobs)
    assert jobs[1].key == "r=0,snapshot=5,redshift=0.5"


def test_zip_label_as_a_placeholder_is_unknown() -> None:
    with pytest.raises(ConfigError) as info:
        spec_of("  snaps: {zip: {snapshot: [0, 1]}}\n", "{snaps}.h5")
    assert "unknown placeholder '{snaps}'" in str(info.value)


def test_values_keep_their_yaml_types() -> None:
    spec = spec_of(
        "  i: [1]\n  f: [1.0]\n  e: [1e3]\n  b: [true]\n  s: ['1', abc]\n",
        "{i}_{f}_{e}_{b}_{s}.txt",
    )
    jobs = expand.expand(spec).jobs
    params = jobs[0].params
    assert params == {"i": 1, "f": 1.0, "e": 1000.0, "b": True, "s": "1"}
    assert [type(params[k]) for k in "ifebs"] == [int, float, float, bool, str]
    assert jobs[0].key == "i=1,f=1.0,e=1000.0,b=true,s=1"
    assert jobs[0].output == "1_1.0_1000.0_True_1.txt"
    assert jobs[1].params["s"] == "abc"


# -- keys and uids ----------------------------------------------------------------------


def test_keys_are_deterministic_and_unique() -> None:
    spec = spec_of(
        "  realization: {range: [0, 20]}\n  redshift: [1.0, 1.5]\n", "r{realization}/z{redshift}.h5"
    )
    first, second = expand.expand(spec), expand.expand(spec)
    assert [j.key for j in first.jobs] == [j.key for j in second.jobs]
    assert len({j.key for j in first.jobs}) == len({j.uid for j in first.jobs}) == 40
    assert first.jobs[15].key == "realization=7,redshift=1.5"


def test_uids_are_stable() -> None:
    # Computed once from this implementation: a change here orphans every stored campaign.
    assert job_uid({"realization": 7, "redshift": 1.5}) == "809e273cbcc80b99"
    assert job_uid({"realization": 0, "snapshot": 0, "redshift": 0.0}) == "436141e144a01554"
    spec = spec_of(
        "  realization: {range: [0, 8]}\n  redshift: [1.0, 1.5]\n", "r{realization}/z{redshift}.h5"
    )
    job = next(j for j in expand.expand(spec).jobs if j.key == "realization=7,redshift=1.5")
    assert job.uid == "809e273cbcc80b99"


def test_uid_of_a_job_equals_job_uid_of_its_params() -> None:
    spec = spec_of(
        "  a: {range: [0, 3]}\n  z: {zip: {b: [x, y], c: [0.5, 2]}}\n  d: [true, false]\n",
        "{a}/{b}/{d}.h5",
    )
    for job in expand.expand(spec).jobs:
        assert job.uid == job_uid(job.params)
        assert len(job.uid) == 16 and int(job.uid, 16) >= 0


def test_uid_depends_on_value_types() -> None:
    uids = {job_uid({"x": 1}), job_uid({"x": 1.0}), job_uid({"x": "1"}), job_uid({"x": True})}
    assert len(uids) == 4
    assert job_uid({"x": 1}) == job_uid({"x": 1})
    assert job_uid({"x": 1, "y": 2}) != job_uid({"y": 2, "x": 1})  # order is part of the key
    assert job_uid({"x": 1}) != job_uid({"y": 1})


def test_int_and_float_values_are_different_jobs() -> None:
    jobs = expand.expand(spec_of("  x: [1, 1.0]\n", "x{x}.txt")).jobs
    assert [j.key for j in jobs] == ["x=1", "x=1.0"]
    assert jobs[0].uid != jobs[1].uid and jobs[0].output != jobs[1].output


def test_same_text_values_of_different_types_are_rejected() -> None:
    with pytest.raises(ConfigError):
        spec_of("  x: [1, '1']\n", "x{x}.txt")
    with pytest.raises(ConfigError):
        spec_of("  x: [true, 'true']\n", "x{x}.txt")


# -- outputs ----------------------------------------------------------------------------


def test_output_paths_use_format_specs() -> None:
    spec = spec_of(
        "  realization: {range: [0, 2]}\n  redshift: [1.0, 0.25]\n",
        "r{realization:04d}/mock_z{redshift:.3f}.hdf5",
    )
    outputs = [j.output for j in expand.expand(spec).jobs]
    assert outputs == [
        "r0000/mock_z1.000.hdf5",
        "r0000/mock_z0.250.hdf5",
        "r0001/mock_z1.000.hdf5",
        "r0001/mock_z0.250.hdf5",
    ]


def test_outputs_with_job_key() -> None:
    spec = spec_of("  a: [1, 2]\n", "k/{job_key}.h5")
    assert [j.output for j in expand.expand(spec).jobs] == ["k/a=1.h5", "k/a=2.h5"]


def test_two_jobs_with_one_output_are_an_error() -> None:
    spec = spec_of("  a: [1, 2]\n  b: [x, y]\n", "{a}.h5")
    with pytest.raises(ConfigError) as info:
        expand.expand(spec)
    assert "would both write '1.h5'" in str(info.value)
    assert info.value.key_path == ("job", "output") and info.value.line == 7


def test_negative_values_in_paths_are_fine() -> None:
    jobs = expand.expand(spec_of("  t: [-1.5, 2]\n", "t{t}.h5")).jobs
    assert [j.output for j in jobs] == ["t-1.5.h5", "t2.h5"]


# -- command rendering ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "a; rm -rf ~",
        "$(touch pwned)",
        "`touch pwned`",
        "x && touch pwned",
        "'; touch pwned; '",
        'a"b',
        "*",
        "~",
        "plain",
        "with space",
        "$HOME",
        "new\nline",
    ],
)
def test_command_values_reach_the_shell_literally(tmp_path: Path, value: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep").write_text("x")
    work = tmp_path / "work"
    work.mkdir()
    command = CommandTemplate.parse("printf '%s' {v}").render({"v": value})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    result = subprocess.run(
        ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == value
    assert list(work.iterdir()) == [] and (home / "keep").exists()


def test_command_template_formats_then_quotes() -> None:
    template = CommandTemplate.parse("run --z {redshift:.2f} --seed {seed} --out {output} {{x}}")
    assert (
        template.render({"redshift": 1.0, "seed": 7, "output": "r/o.h5"})
        == "run --z 1.00 --seed 7 --out r/o.h5 {x}"
    )
    assert (
        template.render({"redshift": 2, "seed": 0, "output": "a b"})
        == "run --z 2.00 --seed 0 --out 'a b' {x}"
    )


@pytest.mark.parametrize("bad", ["{a.b}", "{0}", "{}", "{a!r}", "{a", "a}"])
def test_command_template_rejects_malformed_placeholders(bad: str) -> None:
    with pytest.raises(ValueError):
        CommandTemplate.parse(f"echo {bad}")


def test_iter_chunks() -> None:
    assert list(iter_chunks(list(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(iter_chunks([], 3)) == []


# -- groups -----------------------------------------------------------------------------


def test_resources_from_job_type_level_and_explicit_keys() -> None:
    spec = spec_of(
        "  a: [1, 2]\n",
        "{a}.h5",
        extra="""\
execution: {timeout_hours: 0.3}
resources:
  job_type: mpi_small
  memory_requirement: medium
  cpus_per_task: 3
  partition: debug
  sbatch_options: {licenses: scratch, exclusive: true}
""",
    )
    expansion = expand.expand(spec)
    assert len(expansion.groups) == 1
    res = expansion.groups[0].resources
    assert (res.nodes, res.ntasks_per_node, res.cpus_per_task) == (1, 2, 3)
    assert res.memory_mb == 1024 and res.time_minutes == 18 and res.partition == "debug"
    assert res.sbatch_options == (("exclusive", "True"), ("licenses", "scratch"))
    assert expansion.groups[0].max_retries == 3


def test_explicit_memory_wins_over_level_in_the_same_section() -> None:
    spec = spec_of(
        "  a: [1]\n", "{a}.h5", extra="resources: {memory_requirement: high, memory: 300M}\n"
    )
    assert expand.expand(spec).groups[0].resources.memory_mb == 300


def test_override_on_a_zipped_parameter_groups_correctly() -> None:
    spec = spec_of(
        "  r: {range: [0, 3]}\n  s: {zip: {snap: [0, 1, 2], z: [2.0, 1.0, 0.0]}}\n",
        "r{r}/s{snap}.h5",
        extra="""\
overrides:
  - match: {snap: 0, z: 2.0}
    execution: {timeout_hours: 2}
""",
    )
    expansion = expand.expand(spec)
    slow = [
        j.key for j in expansion.jobs if expansion.groups[j.group].resources.time_minutes == 120
    ]
    assert slow == ["r=0,snap=0,z=2.0", "r=1,snap=0,z=2.0", "r=2,snap=0,z=2.0"]


def test_production_example() -> None:
    spec = config.load_campaign(ROOT / "config" / "examples" / "production_campaign.yaml")
    expansion = expand.expand(spec)
    assert len(expansion.jobs) == 40_000 and len(expansion.groups) == 2
    assert len({j.key for j in expansion.jobs}) == 40_000
    assert len({j.uid for j in expansion.jobs}) == 40_000
    assert len({j.output for j in expansion.jobs}) == 40_000
    sizes = [sum(1 for j in expansion.jobs if j.group == g.index) for g in expansion.groups]
    assert sorted(sizes) == [6_000, 34_000]
    heavy = next(g for g in expansion.groups if g.resources.time_minutes == 60)
    assert heavy.resources.memory_mb == 32 * 1024  # nersc `medium`
    light = next(g for g in expansion.groups if g is not heavy)
    assert light.resources.memory_mb == 4 * 1024 and light.resources.time_minutes == 30
    for job in expansion.jobs[:40]:
        assert (expansion.groups[job.group] is heavy) == (job.params["snapshot"] in (0, 1, 2))
    last = expansion.jobs[-1]
    assert last.key == "realization=1999,snapshot=19,redshift=8.0"
    assert last.output == "r1999/mock_z8.000.hdf5"


# -- properties -------------------------------------------------------------------------

_values = st.one_of(
    st.lists(st.integers(-50, 50), min_size=1, max_size=4, unique=True),
    st.lists(st.text("abcxyz", min_size=1, max_size=3), min_size=1, max_size=4, unique=True),
    st.lists(
        st.floats(-10, 10, allow_nan=False).map(lambda x: round(x, 2)),
        min_size=1,
        max_size=4,
        unique=True,
    ),
)


@st.composite
def parameter_spaces(draw):
    n_axes = draw(st.integers(1, 3))
    parameters: dict = {}
    lengths = []
    for i in range(n_axes):
        kind = draw(st.sampled_from(["list", "range", "zip"]))
        if kind == "list":
            values = draw(_values)
            parameters[f"p{i}"] = values
            lengths.append(len(values))
        elif kind == "range":
            start = draw(st.integers(-5, 5))
            stop = start + draw(st.integers(1, 5))
            parameters[f"p{i}"] = {"range": [start, stop]}
            lengths.append(stop - start)
        else:
            n = draw(st.integers(1, 3))
            parameters[f"z{i}"] = {
                "zip": {f"p{i}": list(range(n)), f"q{i}": [f"v{k}" for k in range(n)]}
            }
            lengths.append(n)
    return parameters, lengths


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parameter_spaces())
def test_job_count_is_the_product_and_keys_are_unique(space) -> None:
    parameters, lengths = space
    names = [
        n
        for entry in parameters.values()
        if isinstance(entry, dict) and "zip" in entry
        for n in entry["zip"]
    ] + [n for n, e in parameters.items() if not (isinstance(e, dict) and "zip" in e)]
    spec = spec_from_mapping(parameters, "/".join(f"{{{n}}}" for n in sorted(names)) + ".h5")
    first = expand.expand(spec)
    assert len(first.jobs) == math.prod(lengths) == spec.job_count
    assert len({j.key for j in first.jobs}) == len(first.jobs)
    assert len({j.uid for j in first.jobs}) == len(first.jobs)
    assert len({j.output for j in first.jobs}) == len(first.jobs)
    second = expand.expand(spec)
    assert first == second
    for job in first.jobs:
        assert job.uid == job_uid(job.params)
        assert list(job.params) == list(spec.parameter_names)


def test_exponent_floats_are_numbers() -> None:
    # YAML 1.1 (PyYAML) reads `1e-5` as text; campaigns reads it as YAML 1.2 does.
    jobs = expand.expand(spec_of("  m: [1e12, 2.5e-3, -1E+2, '1e3']\n", "m{m}.h5")).jobs
    assert [j.params["m"] for j in jobs] == [1e12, 2.5e-3, -100.0, "1e3"]
    assert [type(j.params["m"]) for j in jobs] == [float, float, float, str]
