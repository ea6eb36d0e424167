"""The site's limits through the command line: the seed cases of the Perlmutter machine file.

`validate` refuses what Perlmutter would refuse (exit 2, the site's number in one located
paragraph, nothing created); a placeholder account is a warning in `validate` and a
refusal in `submit` to Slurm only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaigns.cli import main
from campaigns.core.states import TaskState
from fake_scheduler import SharedFake

REPO = Path(__file__).resolve().parents[1]

SEED = """\
campaign: {name: "Seed", version: "v1", machine: nersc}
parameters:
  realization: {range: [0, 2000]}
  snapshot: {range: [0, 20]}
job:
  command: "python -m campaigns.examples.mock --seed {realization} --output {output}"
  output: "r{realization:04d}/s{snapshot:02d}.hdf5"
"""


def small(snapshots: int, sections: str) -> str:
    """SEED cut to 2 realizations x `snapshots`, with more sections."""
    return SEED.replace("[0, 2000]", "[0, 2]").replace("[0, 20]", f"[0, {snapshots}]") + sections


def run(tmp_path: Path, text: str, *command: str) -> tuple[int, str]:
    """Write the campaign file and run one command on it; (exit code, config path)."""
    config = tmp_path / "campaign.yaml"
    config.write_text(text)
    return main([*command, str(config), "--root", str(tmp_path / "root")]), str(config)


def refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> str:
    code, config = run(tmp_path, text, "validate")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {config}, line ") and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / "root").exists()
    return err


def test_40000_jobs_on_debug_at_120_minutes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SEED + "execution: {timeout_hours: 2}\nresources: {account: m1234, qos: debug}\n"
    err = refused(tmp_path, capsys, text)
    assert "key 'execution.timeout_hours'" in err
    assert "120 minutes" in err and "debug QOS allows at most 30 minutes" in err


def test_gpu_job_with_the_old_high_memory_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SEED + (
        "resources: {account: m1234_g, job_type: gpu_intensive, memory_requirement: high}\n"
        "memory_levels: {high: 480G}\n"  # what nersc.yaml said before: a CPU node's memory
    )
    err = refused(tmp_path, capsys, text)
    assert "480 GB" in err and "a gpu node has 256 GB" in err


def test_gpu_intensive_high_fits_a_gpu_node_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        SEED + "resources: {account: m1234_g, job_type: gpu_intensive, memory_requirement: high}\n"
    )
    code, _ = run(tmp_path, text, "validate", "--json")
    out = capsys.readouterr()
    assert code == 0 and out.err == ""
    report = json.loads(out.out)
    assert report["groups"][0]["resources"]["memory_mb"] <= 256 * 1024


def test_a_placeholder_account_warns_in_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSCRATCH", str(tmp_path))  # its base path: $PSCRATCH/campaigns
    example = REPO / "config" / "examples" / "production_campaign.yaml"
    assert main(["validate", str(example), "--json"]) == 0
    out = capsys.readouterr()
    assert out.err.startswith(f"warning: {example}, line ")
    assert "account 'mXXXX' is a placeholder" in out.err
    assert json.loads(out.out)["warnings"] == [out.err.removeprefix("warning: ").strip()]


@pytest.mark.usefixtures("fake_backend")
def test_a_placeholder_account_stops_submit_to_slurm_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = small(2, "resources: {account: mXXXX}\n")
    code, config = run(tmp_path, text, "init")
    assert code == 0
    args = [config, "--root", str(tmp_path / "root")]
    capsys.readouterr()
    assert main(["submit", *args, "--backend", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "account 'mXXXX' is a placeholder" in err and "key 'resources.account'" in err
    assert main(["status", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["pending"] == 4  # nothing changed
    assert main(["submit", *args, "--backend", "fake"]) == 0  # no account needed there


def test_estimate_on_debug_runs_two_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = small(5, "execution: {timeout_hours: 0.5}\nresources: {account: m1234, qos: debug}\n")
    code, _ = run(tmp_path, text, "estimate", "--json")
    report = json.loads(capsys.readouterr().out)
    # 10 jobs of 30 minutes; debug runs 2 of a user's jobs at once: 5 rounds of 0.5 h.
    assert code == 0 and report["expected_wall_hours"] == pytest.approx(2.5)
    assert "2 tasks at once" in report["basis"]


@pytest.mark.usefixtures("fake_backend")
def test_timeout_escalation_stops_at_the_qos_walltime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = small(
        1,
        "execution: {timeout_hours: 0.4, max_retries: 2, retry_backoff: none}\n"
        "resources: {account: m1234, qos: debug}\n",
    )
    code, config = run(tmp_path, text, "init")
    args = [config, "--root", str(tmp_path / "root")]
    assert code == 0 and main(["submit", *args, "--backend", "fake"]) == 0
    fake = SharedFake.instance
    assert fake is not None
    fake.set_all(TaskState.TIMEOUT)
    assert main(["monitor", *args, "--once"]) == 0
    assert main(["retry", *args, "--submit", "--ignore-backoff", "--backend", "fake"]) == 0
    times = [a.request.resources.time_minutes for a in fake.arrays.values()]
    # 24 minutes, then 1.5 x 24 = 36 minutes: beyond debug's 30, so 30.
    assert times == [24, 30]
