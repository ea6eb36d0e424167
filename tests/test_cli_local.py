"""End-to-end tests through the CLI (`main(argv)`) on the local backend: real processes.

Tests that take the `database` fixture run twice: with each campaign in its own SQLite
file, and with the campaigns in a real PostgreSQL (CAMPAIGNS_DB_URL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from axes import campaign_head
from campaigns.cli import main
from waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "examples" / "test_campaign.yaml"

SMALL = (
    campaign_head("Local e2e", "t1")
    + """\
job:
  command: {command}
  output: "r{{realization:04d}}/out_z{{redshift:.1f}}.txt"
execution:
  batch_size: {batch}
  max_retries: 2
  retry_backoff: {{base_seconds: 1, factor: 2, max_seconds: 5, jitter: 0.1}}
"""
)
ECHO = '"echo {realization} {redshift} > {output}"'


def write_campaign(tmp_path: Path, n: int = 3, command: str = ECHO, batch: int = 4) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(SMALL.format(n=n, command=command, batch=batch))
    return path


def counting_command(tmp_path: Path) -> tuple[Path, str]:
    """A folder, and a command that appends each run's attempt to a file per job there."""
    runs = tmp_path / "runs"
    runs.mkdir()
    return runs, (
        f"'echo $CAMPAIGNS_ATTEMPT >> {runs}/{{realization}}_{{redshift}}; echo x > {{output}}'"
    )


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def status_json(config: Path, root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code, out, _ = run(["status", str(config), "--root", str(root), "--json", *extra], capsys)
    assert code == 0
    return json.loads(out)


def monitor_until_done(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str], timeout: float = 120, *extra: str
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = run(
            ["monitor", str(config), "--root", str(root), "--once", "--json", *extra], capsys
        )
        assert code == 0, err
        report = json.loads(out)
        counts = report["counts"]
        if counts["queued"] + counts["running"] == 0 and (
            "--submit" not in extra or report["finished"]
        ):
            return report
        assert time.monotonic() < deadline, f"campaign not done after {timeout}s: {counts}"
        time.sleep(0.3)


def test_example_campaign_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    root = tmp_path / "runs"
    code, out, err = run(["init", str(EXAMPLE), "--root", str(root)], capsys)
    assert code == 0, err
    assert "30 pending jobs" in out
    code, out, err = run(
        ["submit", str(EXAMPLE), "--root", str(root), "--backend", "local"], capsys
    )
    assert code == 0, err
    assert "submitted 30 jobs in 3 arrays" in out
    report = monitor_until_done(EXAMPLE, root, capsys)
    assert report["counts"]["completed"] == 30, report
    campaign_dir = Path(report["campaign"]["path"])
    assert campaign_dir == root / "v0.1_mock-catalog-test"
    for folder in ("metadata", "catalogs", "logs", "qa/validation_reports", "qa/summary_plots"):
        assert (campaign_dir / folder).is_dir(), folder
    catalogs = sorted((campaign_dir / "catalogs").rglob("*.hdf5"))
    assert len(catalogs) == 30
    assert (campaign_dir / "catalogs" / "r0000" / "mock_z1.000.hdf5") in catalogs
    for path in catalogs:
        with h5py.File(path, "r") as fh:
            assert fh["galaxies/x"].shape[0] > 0
            assert fh.attrs["seed"] == int(path.parent.name[1:])
    # No temporary outputs left behind.
    assert not list((campaign_dir / "catalogs").rglob(".*"))
    # Re-running init with the same config is a no-op.
    code, out, _ = run(["init", str(EXAMPLE), "--root", str(root)], capsys)
    assert code == 0 and "nothing to do" in out
    final = status_json(EXAMPLE, root, capsys, "--verbose")
    assert final["total"] == 30
    job = final["jobs"][0]
    assert set(job) >= {
        "key",
        "params",
        "state",
        "attempts",
        "next_retry_at",
        "scheduler_id",
        "output",
        "error",
    }
    assert job["params"] == {"realization": 0, "redshift": 1.0}
    assert isinstance(job["params"]["realization"], int)
    assert job["state"] == "completed" and job["attempts"] == 1 and job["next_retry_at"] is None


def test_status_json_contract(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    config = write_campaign(tmp_path)
    assert run(["init", str(config), "--root", str(tmp_path)], capsys)[0] == 0
    report = status_json(config, tmp_path, capsys)
    assert report["campaign"] == {
        "name": "Local e2e",
        "version": "t1",
        "path": str(tmp_path / "t1_local-e2e"),
    }
    assert report["total"] == 6
    assert report["counts"] == {
        "pending": 6,
        "queued": 0,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert "jobs" not in report
    metadata = tmp_path / "t1_local-e2e" / "metadata"
    if database == "sqlite":
        assert report["database"] == f"sqlite:///{metadata / 'campaign.db'}"
        assert not (metadata / "database.json").exists()
    else:  # the campaign lives in PostgreSQL; its directory records where, without password
        assert not (metadata / "campaign.db").exists()
        recorded = json.loads((metadata / "database.json").read_text())["url"]
        assert recorded.startswith("postgresql+psycopg://campaigns@127.0.0.1")
        assert report["database"] == recorded  # later commands use the record


def test_failed_job_retries_after_backoff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    # Fails on attempt 1, succeeds on attempt 2.
    command = (
        "'if [ \"$CAMPAIGNS_ATTEMPT\" = 1 ]; then echo boom >&2; exit 4; fi; echo ok > {output}'"
    )
    config = write_campaign(tmp_path, n=1, command=command)
    root = tmp_path
    assert run(["init", str(config), "--root", str(root)], capsys)[0] == 0
    assert run(["submit", str(config), "--root", str(root), "--backend", "local"], capsys)[0] == 0
    report = monitor_until_done(config, root, capsys)
    assert report["counts"]["failed"] == 2
    jobs = status_json(config, root, capsys, "--verbose")["jobs"]
    assert all(j["attempts"] == 1 and j["next_retry_at"] for j in jobs)
    assert all("exit code 4" in j["error"] for j in jobs)
    log = Path(report["logs"])
    assert "boom" in "".join(p.read_text() for p in log.rglob("task-*.log"))
    # monitor --submit resubmits due retries and runs them to completion.
    report = monitor_until_done(config, root, capsys, 120, "--submit")
    assert report["counts"]["completed"] == 2, report
    jobs = status_json(config, root, capsys, "--verbose")["jobs"]
    assert [j["attempts"] for j in jobs] == [2, 2]


def test_missing_output_is_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    config = write_campaign(tmp_path, n=1, command="'echo forgot to write'")
    assert run(["init", str(config), "--root", str(tmp_path)], capsys)[0] == 0
    assert (
        run(["submit", str(config), "--root", str(tmp_path), "--backend", "local"], capsys)[0] == 0
    )
    monitor_until_done(config, tmp_path, capsys)
    jobs = status_json(config, tmp_path, capsys, "--verbose")["jobs"]
    assert {j["state"] for j in jobs} == {"failed"}
    assert all("output" in j["error"] for j in jobs)


def test_changed_config_is_refused_then_adopted_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    config = write_campaign(tmp_path, n=2)
    assert run(["init", str(config), "--root", str(tmp_path)], capsys)[0] == 0
    before = (tmp_path / "t1_local-e2e" / "metadata" / "campaign_config.yaml").read_text()
    config.write_text(
        config.read_text()
        .replace("range: [0, 2]", "range: [0, 3]")
        .replace("max_retries: 2", "max_retries: 5")
    )
    code, _, err = run(["init", str(config), "--root", str(tmp_path)], capsys)
    assert code == 2
    assert "max_retries: 2 -> 5" in err and "--force" in err
    assert (tmp_path / "t1_local-e2e" / "metadata" / "campaign_config.yaml").read_text() == before
    code, out, _ = run(["init", str(config), "--root", str(tmp_path), "--force"], capsys)
    assert code == 0 and "2 jobs added" in out
    assert status_json(config, tmp_path, capsys)["total"] == 6


BAD_CONFIGS = {
    "unknown_key": ("execution:\n  batchsize: 10\n", "did you mean 'batch_size'"),
    "yaml_syntax": ("execution: {batch_size: 10\n", "YAML syntax error"),
    "bad_value": ("parameters:\n  realization: ['a; rm -rf ~']\n", "not allowed"),
    "escape": ("job:\n  output: '../{realization}.txt'\n", "inside catalogs"),
    "unknown_machine": ("campaign: {name: x, version: v, machine: perlmuter}\n", "unknown machine"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    patch, expected = BAD_CONFIGS[name]
    base = SMALL.format(n=2, command=ECHO, batch=4)
    import yaml

    if name == "yaml_syntax":
        text = base + patch
    else:
        merged = yaml.safe_load(base)
        for section, values in yaml.safe_load(patch).items():
            merged[section] = (
                {**merged.get(section, {}), **values} if section != "parameters" else values
            )
        text = yaml.safe_dump(merged, sort_keys=False)
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    root = tmp_path / "root"
    for command in ("validate", "init", "submit", "status", "monitor", "retry", "cancel"):
        code, out, err = run([command, str(config), "--root", str(root)], capsys)
        assert code == 2, (command, out, err)
        assert err.startswith("error: "), err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        if command in ("validate", "init", "submit"):
            assert str(config) in err and expected in err, err
    assert not root.exists()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["init", str(tmp_path / "nope.yaml"), "--root", str(tmp_path / "r")], capsys)
    assert code == 2 and "not found" in err and "nope.yaml" in err
    assert not (tmp_path / "r").exists()


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["submit", str(EXAMPLE), "--backend", "pbs"], capsys)
    assert code == 2 and "invalid choice" in err
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2


def test_status_before_init_says_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_campaign(tmp_path)
    code, _, err = run(["status", str(config), "--root", str(tmp_path)], capsys)
    assert code == 2 and "Run `init" in err


def test_local_runs_survive_the_submit_process(tmp_path: Path, database: str) -> None:
    """`submit` returns at once; the detached runner keeps going after the process exited."""
    config = write_campaign(tmp_path, n=2, command="'sleep 1; echo {realization} > {output}'")
    cli = [sys.executable, str(REPO / "scripts" / "run_campaign.py")]
    subprocess.run(
        [*cli, "init", str(config), "--root", str(tmp_path)], check=True, capture_output=True
    )
    started = time.monotonic()
    subprocess.run(
        [*cli, "submit", str(config), "--root", str(tmp_path), "--backend", "local"],
        check=True,
        capture_output=True,
    )
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        outputs = list((tmp_path / "t1_local-e2e" / "catalogs").rglob("*.txt"))
        if len(outputs) == 4:
            break
        time.sleep(0.2)
    assert len(outputs) == 4


def test_cancel_stops_local_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    import random

    nap = f"sleep {30 + random.random():.6f}"  # unique, so pgrep sees only this test's jobs
    config = write_campaign(tmp_path, n=2, command=f"'{nap}; echo x > {{output}}'")
    assert run(["init", str(config), "--root", str(tmp_path)], capsys)[0] == 0
    assert (
        run(["submit", str(config), "--root", str(tmp_path), "--backend", "local"], capsys)[0] == 0
    )
    wait_for(lambda: naps(nap), timeout=60, what="the jobs to start")
    code, out, _ = run(["cancel", str(config), "--root", str(tmp_path)], capsys)
    assert code == 0 and "cancelled 4 jobs" in out
    report = status_json(config, tmp_path, capsys)
    assert report["counts"]["cancelled"] == 4
    # The runner and its jobs are gone: no sleep 30 left behind.
    wait_for(lambda: not naps(nap), timeout=60, what="the cancelled jobs to end")


def naps(nap: str) -> str:
    """The pids of processes running `nap` (a unique sleep command)."""
    return subprocess.run(["pgrep", "-f", nap], capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("seed", range(6))
def test_submit_killed_at_random_points_runs_every_job_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int, database: str
) -> None:
    import random

    runs, command = counting_command(tmp_path)
    config = write_campaign(tmp_path, n=10, command=command, batch=3)
    cli = [sys.executable, str(REPO / "scripts" / "run_campaign.py")]
    subprocess.run([*cli, "init", str(config), "--root", str(tmp_path)], check=True)
    delay = random.Random(seed).uniform(0.05, 0.9)
    proc = subprocess.Popen(
        [*cli, "submit", str(config), "--root", str(tmp_path), "--backend", "local"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # A second submit recovers what the first left unknown and submits the rest.
    code, out, err = run(
        ["submit", str(config), "--root", str(tmp_path), "--backend", "local"], capsys
    )
    assert code == 0, err
    report = monitor_until_done(config, tmp_path, capsys)
    assert report["counts"]["completed"] == 20, report
    counts = {p.name: p.read_text().split() for p in runs.iterdir()}
    assert len(counts) == 20
    assert all(lines == ["1"] for lines in counts.values()), counts


def test_a_second_manager_is_told_who_holds_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from campaigns.ops.lock import CampaignLock

    config = write_campaign(tmp_path)
    assert run(["init", str(config), "--root", str(tmp_path)], capsys)[0] == 0
    lock_file = tmp_path / "t1_local-e2e" / "metadata" / "manager.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; sys.path.insert(0, {!r})\n"
                "from campaigns.ops.lock import CampaignLock\n"
                "from pathlib import Path\n"
                "with CampaignLock(Path({!r})):\n"
                "    print('held', flush=True); time.sleep(30)\n"
            ).format(str(REPO / "src"), str(lock_file)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, _, err = run(
            ["submit", str(config), "--root", str(tmp_path), "--backend", "local"], capsys
        )
        assert code == 1
        assert "another campaigns manager" in err and f'"pid": {holder.pid}' in err
    finally:
        holder.kill()
        holder.wait()
    with CampaignLock(lock_file):
        pass
    assert os.path.exists(lock_file)


def test_reset_gives_an_exhausted_job_a_fresh_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], database: str
) -> None:
    """A job that failed for good runs again after `retry --reset KEY --submit`."""
    flag = tmp_path / "fixed"
    command = f"'test -e {flag} || exit 5; echo ok > {{output}}'"
    config = write_campaign(tmp_path, n=1, command=command)
    config.write_text(config.read_text().replace("max_retries: 2", "max_retries: 0"))
    args = ["--root", str(tmp_path)]
    assert run(["init", str(config), *args], capsys)[0] == 0
    assert run(["submit", str(config), *args, "--backend", "local"], capsys)[0] == 0
    monitor_until_done(config, tmp_path, capsys)
    report = status_json(config, tmp_path, capsys)
    assert report["counts"]["failed"] == 2 and report["failures"]["exhausted"] == 2
    code, out, _ = run(["retry", str(config), *args, "--submit"], capsys)
    assert code == 0 and "failed for good" in out and "0 failed jobs" in out
    flag.touch()
    code, out, err = run(
        ["retry", str(config), *args, "--reset", "realization=0,redshift=1.0", "--submit"], capsys
    )
    assert code == 0, err
    report = monitor_until_done(config, tmp_path, capsys)
    jobs = {j["key"]: j for j in status_json(config, tmp_path, capsys, "--verbose")["jobs"]}
    assert jobs["realization=0,redshift=1.0"]["state"] == "completed"
    assert jobs["realization=0,redshift=1.0"]["attempts"] == 2
    assert jobs["realization=0,redshift=2.0"]["state"] == "failed"
    code, _, err = run(["retry", str(config), *args, "--reset", "realization=9"], capsys)
    assert code == 2 and "no such job" in err


@pytest.mark.slow
def test_local_backend_enforces_the_time_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like Slurm, the local backend ends a task at its limit: class timeout, limit escalated."""
    command = "'if [ \"$CAMPAIGNS_ATTEMPT\" = 1 ]; then sleep 600; fi; echo ok > {output}'"
    config = write_campaign(tmp_path, n=1, command=command)
    text = config.read_text().replace("max_retries: 2", "max_retries: 1")
    config.write_text(text + "  timeout_hours: 0.0166\n")
    args = ["--root", str(tmp_path)]
    assert run(["init", str(config), *args], capsys)[0] == 0
    assert run(["submit", str(config), *args, "--backend", "local", "--limit", "1"], capsys)[0] == 0
    started = time.monotonic()
    monitor_until_done(config, tmp_path, capsys, 150)
    assert 55 < time.monotonic() - started < 120
    (job,) = [
        j for j in status_json(config, tmp_path, capsys, "--verbose")["jobs"] if j["attempts"]
    ]
    assert job["state"] == "failed" and job["failure_class"] == "timeout"
    assert "interrupted" in Path(job["log"]).read_text()
    report = monitor_until_done(config, tmp_path, capsys, 120, "--submit")
    assert report["counts"]["completed"] == 2


def test_provenance_and_qa_round_trip_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Config hash agrees across metadata, store and manifests; qa finds exactly the two
    broken catalogs (exit 1), --requeue plus retry --submit restores a valid campaign."""
    import sqlite3

    args = ["--root", str(tmp_path)]
    assert run(["init", str(EXAMPLE), *args], capsys)[0] == 0
    assert run(["submit", str(EXAMPLE), *args, "--backend", "local"], capsys)[0] == 0
    report = monitor_until_done(EXAMPLE, tmp_path, capsys)
    assert report["counts"]["completed"] == 30
    directory = Path(report["campaign"]["path"])
    metadata = directory / "metadata"
    provenance = json.loads((metadata / "provenance.json").read_text())
    for name in ("campaign_source.yaml", "machine.yaml", "campaign_config.yaml"):
        assert (metadata / name).is_file()
    assert (metadata / "campaign_source.yaml").read_text() == EXAMPLE.read_text()
    assert provenance["versions"]["h5py"] and provenance["python"]
    db = sqlite3.connect(metadata / "campaign.db")
    stored = db.execute("select config_hash from campaigns").fetchone()[0]
    job_hashes = {h for (h,) in db.execute("select config_hash from jobs")}
    manifests = [json.loads(p.read_text()) for p in (directory / "logs").rglob("manifests/*.json")]
    db.close()
    assert len(manifests) == 30
    assert provenance["config_hash"] == stored and job_hashes == {stored}
    assert {m["config_hash"] for m in manifests} == {stored}
    assert all(m["outputs"][0]["sha256"] and m["outputs"][0]["size"] > 0 for m in manifests)

    code, out, err = run(["qa", str(EXAMPLE), *args], capsys)
    assert code == 0, err
    corrupt = directory / "catalogs" / "r0003" / "mock_z1.500.hdf5"
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64
    corrupt.write_bytes(bytes(data))
    (directory / "catalogs" / "r0007" / "mock_z2.000.hdf5").unlink()
    code, out, err = run(["qa", str(EXAMPLE), *args], capsys)
    assert code == 3  # the campaign is incomplete: invalid outputs
    assert "2 invalid outputs" in err
    assert "realization=3,redshift=1.5" in err and "realization=7,redshift=2.0" in err
    latest = json.loads((directory / "qa" / "validation_reports" / "latest.json").read_text())
    assert sorted(j["key"] for j in latest["invalid"]) == [
        "realization=3,redshift=1.5",
        "realization=7,redshift=2.0",
    ]
    assert len(list((directory / "qa" / "summary_plots").glob("*.png"))) == 4
    code, out, err = run(["qa", str(EXAMPLE), *args, "--requeue"], capsys)
    assert code == 3 and "marked 2 jobs failed" in out
    code, out, err = run(["retry", str(EXAMPLE), *args, "--submit"], capsys)
    assert code == 0 and "reset 2 failed jobs" in out
    assert monitor_until_done(EXAMPLE, tmp_path, capsys)["counts"]["completed"] == 30
    code, out, err = run(["qa", str(EXAMPLE), *args], capsys)
    assert code == 0 and "all 30 completed outputs valid" in out
