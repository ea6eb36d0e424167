"""Paths as parameters: any text in values used only by the command (always shell-quoted),
the safe-character rule for values that reach the output path, job keys that stay put, and
`$VAR` / `~` in `outputs.base_path` expanded at `init`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core import expand
from campaigns.core.expand import CommandTemplate
from campaigns.core.layout import Layout, expand_path
from campaigns.core.spec import key_text
from campaigns.errors import ConfigError
from test_cli_local import monitor_until_done
from test_config import CAMPAIGN, build

ICS = ["/data/ics/ic 0001.h5", "a; rm -rf ~", 'it\'s "quoted" $HOME `id`', "..", "plain"]


def with_ics(output: str = "r{realization:04d}/ic{n}.h5") -> str:
    """CAMPAIGN with a zipped (n, ic) axis whose ic values are paths and worse."""
    ics = "\n".join(f"      - {json.dumps(v)}" for v in ICS)
    return (
        CAMPAIGN.replace("redshift: [1.0, 1.5, 2.0]", "")
        .replace(
            "parameters:\n",
            f"parameters:\n  ics:\n    zip:\n      n: [0, 1, 2, 3, 4]\n      ic:\n{ics}\n",
        )
        .replace("--z {redshift}", "--ic {ic}")
        .replace('output: "r{realization:04d}/mock_z{redshift:.3f}.hdf5"', f'output: "{output}"')
    )


def test_values_used_only_in_the_command_may_be_any_text() -> None:
    jobs = expand.expand(build(with_ics())).jobs[::4]  # realization 0 of each (n, ic)
    assert [j.params["ic"] for j in jobs] == ICS
    template = CommandTemplate.parse(build(with_ics()).command)
    for job in jobs:
        command = template.render({**job.params, "output": "o.h5"})
        words = shlex.split(command)
        assert words[words.index("--ic") + 1] == job.params["ic"]  # one word, verbatim: data


def test_keys_of_safe_values_never_change() -> None:
    # Job identity is stored: these are the keys campaigns made before paths were allowed.
    jobs = expand.expand(build(CAMPAIGN)).jobs
    assert jobs[4].key == "realization=1,redshift=1.5"
    assert jobs[4].uid == expand.job_uid(jobs[4].params)


def test_an_unsafe_value_gets_a_short_stable_hash_in_the_key() -> None:
    jobs = expand.expand(build(with_ics())).jobs
    assert jobs[0].key == f"n=0,ic={key_text(ICS[0])},realization=0"
    assert key_text(ICS[0]).startswith("h:") and len(key_text(ICS[0])) == 14
    assert key_text(ICS[0]) == key_text("/data/ics/ic 0001.h5")  # stable: the value decides
    assert jobs[16].key == "n=4,ic=plain,realization=0"  # a safe value keeps its text
    assert len({j.key for j in jobs}) == len(jobs) and all("/" not in j.key for j in jobs)
    assert len({j.uid for j in jobs}) == len(jobs)


def test_job_key_in_the_output_path_stays_safe() -> None:
    jobs = expand.expand(build(with_ics("{job_key}.h5"))).jobs
    assert jobs[0].output == f"n=0,ic={key_text(ICS[0])},realization=0.h5"


def test_values_in_the_output_path_keep_the_safe_rule() -> None:
    with pytest.raises(ConfigError) as info:
        build(with_ics("r{realization:04d}/{ic}.h5"))
    error = info.value
    assert error.key_path == ("parameters", "ics", "zip", "ic", 0)  # the first bad one
    assert "is part of the output path" in error.message and error.line is not None
    assert "job.command may be any text" in (error.hint or "")


def test_base_path_variables_expand_from_the_environment() -> None:
    env = {"PSCRATCH": "/pscratch/sd/u/user", "HOME": "/home/user"}
    assert expand_path("$PSCRATCH/campaigns", env) == "/pscratch/sd/u/user/campaigns"
    assert expand_path("${PSCRATCH}/c", env) == "/pscratch/sd/u/user/c"
    assert expand_path("~/campaigns", env) == "/home/user/campaigns"
    assert expand_path("./campaigns", {}) == "./campaigns"
    with pytest.raises(KeyError, match="CFS"):
        expand_path("$CFS/m1234", env)
    layout = Layout.for_campaign("v1_x", "$PSCRATCH/campaigns", None, env)
    assert layout.root == Path("/pscratch/sd/u/user/campaigns/v1_x")


def test_init_expands_and_records_the_base_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "campaign.yaml"
    text = CAMPAIGN.replace("machine: testbox", "machine: local")
    config.write_text(text + "outputs: {base_path: $SCRATCHY/campaigns}\n")
    monkeypatch.delenv("SCRATCHY", raising=False)
    assert main(["init", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: {config}, line " in err and "key 'outputs.base_path'" in err
    assert "$SCRATCHY" in err and not list(tmp_path.glob("*/"))
    assert main(["validate", str(config)]) == 0  # validate only warns
    assert "$SCRATCHY, which is not set here" in capsys.readouterr().err
    monkeypatch.setenv("SCRATCHY", str(tmp_path / "scratch"))
    assert main(["init", str(config)]) == 0
    root = tmp_path / "scratch" / "campaigns" / "v1_tier-test"
    assert (root / "metadata" / "campaign_config.yaml").is_file()
    record = json.loads((root / "metadata" / "provenance.json").read_text())
    assert record["base_path"] == "$SCRATCHY/campaigns" and record["campaign_dir"] == str(root)
    capsys.readouterr()
    assert main(["status", str(config), "--json"]) == 0  # found again through the variable
    assert json.loads(capsys.readouterr().out)["campaign"]["path"] == str(root)


def test_input_file_paths_run_end_to_end_on_the_local_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.yaml"
    ics = "\n".join(f"      - {json.dumps(v)}" for v in ICS)
    config.write_text(
        f"""\
campaign: {{name: "Input files", version: "v1", machine: local}}
parameters:
  ics:
    zip:
      n: [0, 1, 2, 3, 4]
      ic:
{ics}
job:
  command: "printf '%s\\\\n' {{ic}} > {{output}}"
  output: "ic{{n}}.txt"
execution: {{batch_size: 5, max_retries: 0}}
"""
    )
    args = [str(config), "--root", str(tmp_path)]
    assert main(["init", *args]) == 0
    assert main(["submit", *args, "--backend", "local"]) == 0
    capsys.readouterr()
    report = monitor_until_done(config, tmp_path, capsys)
    assert report["counts"]["completed"] == 5, report
    catalogs = tmp_path / "v1_input-files" / "catalogs"
    for n, value in enumerate(ICS):
        assert (catalogs / f"ic{n}.txt").read_text() == value + "\n"
    assert not (tmp_path / "id").exists()  # nothing ran but printf
