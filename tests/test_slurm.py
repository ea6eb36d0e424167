"""The Slurm backend on the real cluster (`bash scripts/dev/slurm-cluster.sh up`).

Everything goes through the public CLI (`main(argv)`, or `python -m campaigns` for the
long-running `monitor`), with campaigns written to tmp_path; Slurm's own view is read back
with sacct/squeue. Without a usable cluster these tests skip, except under CI or
CAMPAIGNS_REQUIRE_SLURM=1, where they fail (see slurm_helpers.require_slurm).
"""

from __future__ import annotations

import dataclasses
import filecmp
import json
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import pytest

from campaigns.core.spec import Resources
from campaigns.core.states import TaskState
from campaigns.scheduler.base import ArrayRequest
from campaigns.scheduler.slurm import SlurmScheduler
from campaigns.scheduler.slurm_text import expand_ranges, parse_sacct
from slurm_helpers import (
    EXAMPLE,
    Cluster,
    campaign_dir,
    jobs,
    monitor_until_done,
    ok,
    run,
    sacct,
    sacct_names_like,
    sacct_settled,
    squeue,
    status,
    submissions,
    unique_version,
    write_campaign,
    write_machine,
)

pytestmark = pytest.mark.slurm

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "sbatch_golden.sh"


def start(
    config: Path, root: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path], *extra: str
) -> dict:
    """`init` then `submit --backend slurm --json`; the submit report."""
    ok(["init", str(config), "--root", str(root)], capsys)
    leftovers.append(campaign_dir(config, root, capsys))
    report: dict = json.loads(
        ok(
            ["submit", str(config), "--root", str(root), "--backend", "slurm", "--json", *extra],
            capsys,
        )
    )
    return report


def monitor_process(config: Path, root: Path, *extra: str, timeout: float = 180) -> list[dict]:
    """`python -m campaigns monitor --interval 1 --json ...` to its end; one report per refresh."""
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "campaigns",
                "monitor",
                str(config),
                "--root",
                str(root),
                "--interval",
                "1",
                "--json",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"monitor did not finish within {timeout:.0f} s; last output: "
            f"{(exc.stdout or b'')[-2000:]!r}"
        )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


# -- without the cluster: the script text and sacct parsing --------------------------------


def golden_request() -> ArrayRequest:
    resources = Resources(
        nodes=1,
        ntasks_per_node=2,
        cpus_per_task=4,
        gpus_per_node=1,
        memory_mb=1536,
        time_minutes=90,
        partition="debug",
        qos="normal",
        account="m1234",
        constraint="cpu",
        sbatch_options=(("exclusive", "True"), ("licenses", "scratch")),
    )
    return ArrayRequest(
        token="0123456789ab",
        name="cmp-v1_demo-0123456789ab",
        folder=Path("/scratch/campaigns/v1_demo/logs/array-000001"),
        n_tasks=21,
        resources=resources,
        parallelism=8,
        setup=("module load python", "source /opt/venv/bin/activate"),
        python="/opt/venv/bin/python",
    )


def test_render_matches_golden_file() -> None:
    """The sbatch script is a pure function of the request (CAMPAIGNS_UPDATE_GOLDEN=1 rewrites)."""
    text = SlurmScheduler().render(golden_request())
    if os.environ.get("CAMPAIGNS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_sbatch_options_cannot_break_tracking() -> None:
    from campaigns.errors import InputError

    request = golden_request()
    bad = Resources(sbatch_options=(("array", "0-3"),))
    with pytest.raises(InputError, match="sbatch_options.array"):
        SlurmScheduler().render(dataclasses.replace(request, resources=bad))


def test_parse_sacct_rows_recorded_on_the_cluster() -> None:
    tasks = parse_sacct((FIXTURES / "sacct_rows.txt").read_text())
    assert tasks["129"][2].state == TaskState.FAILED and tasks["129"][2].exit_code == 3
    assert tasks["130"][0].exit_code == 128 + 9  # killed by SIGKILL: 0:9
    assert tasks["127"][0].started_at == datetime(2026, 11, 23, 20, 14, 7, tzinfo=timezone.utc)
    assert tasks["127"][0].node == "vm"
    # Tasks cancelled while pending share one row: `128_[1-5%1]`, `143_[1,3,5-7%4]`.
    assert sorted(tasks["128"]) == [0, 1, 2, 3, 4, 5]
    assert {t.state for t in tasks["128"].values()} == {TaskState.CANCELLED}
    assert tasks["128"][3].started_at is None and tasks["128"][3].node is None
    assert sorted(tasks["143"]) == list(range(8))
    assert tasks["143"][5].state == TaskState.CANCELLED
    assert tasks["143"][4].state == TaskState.COMPLETED
    live = parse_sacct((FIXTURES / "sacct_live.txt").read_text())
    assert live["128"][0].state == TaskState.RUNNING and live["128"][0].ended_at is None
    assert {i: live["128"][i].state for i in range(1, 6)} == dict.fromkeys(
        range(1, 6), TaskState.PENDING
    )
    assert [i for i, t in live["143"].items() if t.state == TaskState.PENDING] == [1, 3, 5, 6, 7]
    assert expand_ranges("1,3,5-7%4") == [1, 3, 5, 6, 7]


# -- on the cluster -------------------------------------------------------------------------


def test_example_campaign_runs_as_submitit_arrays(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    text = EXAMPLE.read_text().replace("--n-galaxies 5000", "--n-galaxies 500")
    text = text.replace('version: "v0.1"', f'version: "{unique_version()}"')
    config = tmp_path / "test_campaign.yaml"
    config.write_text(text)
    root = tmp_path / "runs"
    report = start(config, root, capsys, leftovers)
    assert report["submitted_jobs"] == 30 and len(report["arrays"]) == 3
    ids = [a["scheduler_id"] for a in report["arrays"]]
    assert all(re.fullmatch(r"\d+", sid) for sid in ids), ids
    assert [a["n_tasks"] for a in report["arrays"]] == [10, 10, 10]

    reports = monitor_process(config, root)
    assert reports[-1]["counts"]["completed"] == 30, reports[-1]

    directory = campaign_dir(config, root, capsys)
    catalogs = sorted((directory / "catalogs").rglob("*.hdf5"))
    assert len(catalogs) == 30
    for path in catalogs:
        with h5py.File(path, "r") as fh:
            assert fh["galaxies/x"].shape == (500,)
    # One array folder per sbatch: the submitit script, one log and one manifest per task.
    for array in report["arrays"]:
        folder = Path(array["folder"])
        sid = array["scheduler_id"]
        script = (folder / f"{sid}_submission.sh").read_text()
        assert "#SBATCH --array=0-9%10" in script and "#SBATCH --no-requeue" in script
        assert "#SBATCH --signal=B:USR2@90" in script
        assert re.search(r"^exec \S+ -u -m campaigns\.node\.worker ", script, re.MULTILINE)
        files = sorted(p.name for p in folder.iterdir())
        assert files == sorted(
            [
                "array.json",
                "tasks.jsonl",
                "manifests",
                f"{sid}_submission.sh",
                *[f"{sid}_{i}_0_log.out" for i in range(10)],
            ]
        ), files
        assert len(list((folder / "manifests").iterdir())) == 10
    assert not list(directory.rglob("*.pkl"))
    # Job rows carry `<array>_<task>` ids and the log path submitit really wrote.
    verbose = status(config, root, capsys, "--verbose")
    for job in verbose["jobs"]:
        assert re.fullmatch(r"\d+_\d+", job["scheduler_id"]), job
        assert job["scheduler_id"].split("_")[0] in ids
        log = Path(job["log"])
        assert log.name == f"{job['scheduler_id']}_0_log.out"
        assert f"job {job['key']} attempt 1 completed" in log.read_text()
    # Slurm's accounting agrees: 30 completed tasks under the submissions' tokens.
    rows = sacct_settled(ids, 30)
    assert {r[2] for r in rows} == {"COMPLETED"}, rows
    tokens = {s["scheduler_id"]: s["token"] for s in submissions(directory)}
    for job_id, name, _state, _code in rows:
        assert name.endswith("-" + tokens[job_id.split("_")[0]])


def test_campaign_larger_than_max_array_size_is_split(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    limit = cluster.max_array_size
    n = 2 * limit + 8
    config = write_campaign(tmp_path, "split", n=n, batch=100)
    report = start(config, tmp_path, capsys, leftovers)
    sizes = [a["n_tasks"] for a in report["arrays"]]
    assert sum(sizes) == n and max(sizes) <= limit and len(sizes) == math.ceil(n / limit), sizes
    final = monitor_until_done(config, tmp_path, capsys)
    assert final["counts"]["completed"] == n, final["counts"]
    directory = campaign_dir(config, tmp_path, capsys)
    subs = submissions(directory)
    assert max(s["n_tasks"] for s in subs) <= limit
    rows = sacct_settled([s["scheduler_id"] for s in subs], n)
    per_array: dict[str, list[int]] = {}
    for job_id, *_ in rows:
        array, index = job_id.split("_")
        per_array.setdefault(array, []).append(int(index))
    assert all(len(v) <= limit and max(v) < limit for v in per_array.values()), per_array


def test_queue_cap_then_monitor_submit_tops_up(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    machine = write_machine(tmp_path, max_queued_jobs=10)
    config = write_campaign(
        tmp_path, "cap", n=25, batch=4, machine=machine, command='"sleep 1; echo {i} > {output}"'
    )
    report = start(config, tmp_path, capsys, leftovers)
    assert report["submitted_jobs"] == 10 and report["waiting_jobs"] == 15, report
    first = status(config, tmp_path, capsys)["counts"]
    assert first["pending"] == 15 and first["queued"] + first["running"] == 10, first
    reports = monitor_process(config, tmp_path, "--submit")
    for refresh in reports:
        assert refresh["counts"]["queued"] + refresh["counts"]["running"] <= 10, refresh["counts"]
    assert reports[-1]["counts"]["completed"] == 25, reports[-1]["counts"]
    subs = submissions(campaign_dir(config, tmp_path, capsys))
    assert sum(s["n_tasks"] for s in subs) == 25 and len(subs) > 3


def test_dry_run_prints_the_script_and_submits_nothing(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = write_campaign(tmp_path, "dry run", n=5, batch=100)
    report = start(config, tmp_path, capsys, leftovers, "--dry-run")
    assert report["dry_run"] and [a["scheduler_id"] for a in report["arrays"]] == [None]
    script = report["arrays"][0]["script"]
    assert script.startswith("#!/bin/bash") and "#SBATCH --array=0-4%5" in script
    assert "campaigns.node.worker" in script
    code, out, err = run(
        ["submit", str(config), "--root", str(tmp_path), "--backend", "slurm", "--dry-run"], capsys
    )
    assert code == 0, err
    assert "#SBATCH --array=0-4%5" in out and "campaigns.node.worker" in out
    directory = campaign_dir(config, tmp_path, capsys)
    assert status(config, tmp_path, capsys)["counts"]["pending"] == 5
    assert not [s for s in submissions(directory) if s["scheduler_id"]]
    assert sacct_names_like(f"cmp-{directory.name[:40]}-") == []


def test_failing_job_fails_with_its_exit_code(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = write_campaign(
        tmp_path, "exit", n=2, command='"test {i} -ne 1 && echo {i} > {output} || exit 3"'
    )
    start(config, tmp_path, capsys, leftovers)
    final = monitor_until_done(config, tmp_path, capsys)
    assert final["counts"]["completed"] == 1 and final["counts"]["failed"] == 1, final
    failed = [j for j in jobs(campaign_dir(config, tmp_path, capsys)) if j["state"] == "failed"]
    assert len(failed) == 1
    assert failed[0]["failure_class"] == "exit_code" and failed[0]["exit_code"] == 3, failed[0]
    # Slurm saw the task fail too (the worker exits 1 when a job of its task failed).
    rows = sacct_settled([failed[0]["scheduler_id"]], 1)
    assert [r[2:] for r in rows] == [["FAILED", "1:0"]], rows


@pytest.mark.slow
def test_job_past_its_time_limit_ends_as_timeout(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = write_campaign(tmp_path, "timeout", n=1, hours=0.016, command='"sleep 600"')
    report = start(config, tmp_path, capsys, leftovers)
    assert (
        "#SBATCH --time=1"
        in (
            Path(report["arrays"][0]["folder"])
            / f"{report['arrays'][0]['scheduler_id']}_submission.sh"
        ).read_text()
    )
    final = monitor_until_done(config, tmp_path, capsys, timeout=200, interval=3)
    assert final["counts"]["failed"] == 1, final["counts"]
    job = jobs(campaign_dir(config, tmp_path, capsys))[0]
    assert job["failure_class"] == "timeout", job
    assert [r[2] for r in sacct_settled([job["scheduler_id"]], 1)] == ["TIMEOUT"]
    log = Path(status(config, tmp_path, capsys, "--verbose")["jobs"][0]["log"]).read_text()
    assert "time limit is near" in log  # B:USR2 reached the worker: `exec` made it the batch shell
    assert "DUE TO TIME LIMIT" in log


def test_cancel_running_and_pending_tasks(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = write_campaign(tmp_path, "cancel", n=6, parallelism=2, command='"sleep 300"')
    report = start(config, tmp_path, capsys, leftovers)
    sid, folder = report["arrays"][0]["scheduler_id"], Path(report["arrays"][0]["folder"])
    deadline = time.monotonic() + 60
    while True:
        counts = json.loads(
            ok(["monitor", str(config), "--root", str(tmp_path), "--once", "--json"], capsys)
        )["counts"]
        if counts["running"] == 2:
            break
        assert time.monotonic() < deadline, f"2 tasks should run (throttle %2): {counts}"
        time.sleep(1)
    assert counts["queued"] == 4
    cancelled = json.loads(ok(["cancel", str(config), "--root", str(tmp_path), "--json"], capsys))
    assert cancelled
    assert status(config, tmp_path, capsys)["counts"]["cancelled"] == 6
    # Slurm agrees: nothing left in the queue; accounting shows every task cancelled,
    # the four that never started in one combined row like `123_[2-5%2]`.
    deadline = time.monotonic() + 60
    while True:
        polled = SlurmScheduler().poll({sid: folder})[sid]
        states = {i: t.state for i, t in polled.tasks.items()}
        if not squeue([sid]) and states == dict.fromkeys(range(6), TaskState.CANCELLED):
            break
        assert time.monotonic() < deadline, f"not all cancelled in Slurm: {states} {squeue([sid])}"
        time.sleep(1)
    assert any("[" in r[0] for r in sacct([sid])), sacct([sid])
    # A later refresh changes nothing.
    again = json.loads(
        ok(["monitor", str(config), "--root", str(tmp_path), "--once", "--json"], capsys)
    )
    assert again["counts"]["cancelled"] == 6


@pytest.mark.mpi
def test_two_rank_mpi_job_matches_one_rank(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    machine = write_machine(tmp_path, launcher="srun --mpi=pmix")
    mock = "python -m campaigns.examples.mock --seed {i} --redshift 1.5 --n-galaxies 20000"
    config = write_campaign(
        tmp_path,
        "mpi",
        n=1,
        job_type="mpi_small",
        machine=machine,
        command=f'"{mock} --output {{output}}"',
        output="r{i:04d}.hdf5",
    )
    report = start(config, tmp_path, capsys, leftovers)
    script = (
        Path(report["arrays"][0]["folder"]) / f"{report['arrays'][0]['scheduler_id']}_submission.sh"
    ).read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "srun" not in script
    final = monitor_until_done(config, tmp_path, capsys)
    assert final["counts"]["completed"] == 1, final
    job = status(config, tmp_path, capsys, "--verbose")["jobs"][0]
    assert "with 2 rank(s)" in Path(job["log"]).read_text()
    serial = tmp_path / "serial.hdf5"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "OMPI_", "PMI", "PMIX_", "MV2_"))
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "campaigns.examples.mock",
            "--seed",
            "0",
            "--redshift",
            "1.5",
            "--n-galaxies",
            "20000",
            "--output",
            str(serial),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    produced = campaign_dir(config, tmp_path, capsys) / "catalogs" / "r0000.hdf5"
    assert filecmp.cmp(serial, produced, shallow=False)


def test_rejected_sbatch_is_a_clear_error_and_leaves_jobs_pending(
    cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path]
) -> None:
    config = write_campaign(tmp_path, "bad partition", n=3)
    config.write_text(
        config.read_text().replace(
            "  job_type: cpu_intensive", "  job_type: cpu_intensive\n  partition: nosuch"
        )
    )
    ok(["init", str(config), "--root", str(tmp_path)], capsys)
    leftovers.append(campaign_dir(config, tmp_path, capsys))
    started = time.monotonic()
    code, _out, err = run(
        ["submit", str(config), "--root", str(tmp_path), "--backend", "slurm"], capsys
    )
    assert code == 1, err
    assert time.monotonic() - started < 10  # a permanent error: no retries
    assert "sbatch refused" in err and "invalid partition" in err.lower(), err
    assert "resources.partition" in err, err
    assert "Traceback" not in err
    directory = campaign_dir(config, tmp_path, capsys)
    assert status(config, tmp_path, capsys)["counts"]["pending"] == 3
    assert [s["state"] for s in submissions(directory)] == ["abandoned"]
    assert not list((directory / "logs").rglob(".submission_file_*"))


def test_crash_after_sbatch_is_recovered_by_token(
    cluster: Cluster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    leftovers: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """sbatch succeeded but the id was never recorded: the next run finds the array by name."""
    from campaigns.ops.manager import CampaignManager
    from campaigns.store import Store

    config = write_campaign(tmp_path, "recover", n=4)
    ok(["init", str(config), "--root", str(tmp_path)], capsys)
    directory = campaign_dir(config, tmp_path, capsys)
    leftovers.append(directory)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("simulated crash between sbatch and recording the id")

    monkeypatch.setattr(Store, "mark_submitted", crash)
    manager = CampaignManager(config, root=tmp_path)
    with pytest.raises(RuntimeError, match="simulated crash"):
        manager.submit_campaign(backend="slurm")
    manager.close()
    monkeypatch.undo()
    [intent] = submissions(directory)
    assert intent["state"] == "intent" and intent["scheduler_id"] is None

    report = json.loads(
        ok(["submit", str(config), "--root", str(tmp_path), "--backend", "slurm", "--json"], capsys)
    )
    assert report["submitted_jobs"] == 0, report  # nothing submitted twice
    assert any("had reached the scheduler" in line for line in report["recovered"]), report
    final = monitor_until_done(config, tmp_path, capsys)
    assert final["counts"]["completed"] == 4, final["counts"]
    [sub] = submissions(directory)
    rows = sacct_settled([sub["scheduler_id"]], 4)
    assert all(r[1].endswith(sub["token"]) for r in rows)
    assert [j["attempts"] for j in jobs(directory)] == [1, 1, 1, 1]
    assert not (Path(sub["log_dir"]) / "abandoned").exists()


def test_array_of_an_abandoned_submission_runs_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """An sbatch still in flight when recovery gave up must not run the jobs a second time."""
    folder = tmp_path / "array-000001"
    folder.mkdir()
    scheduler = SlurmScheduler()
    token = unique_version()
    assert scheduler.find(token, folder, datetime.now(timezone.utc)) is None
    assert (folder / "abandoned").exists()
    request = small_request(folder, token, "late", n_tasks=2)
    sid = scheduler.submit(request)
    try:
        deadline = time.monotonic() + 60
        while True:
            tasks = scheduler.poll({sid: folder})[sid].tasks
            if len(tasks) == 2 and all(t.state.is_final for t in tasks.values()):
                break
            assert time.monotonic() < deadline, tasks
            time.sleep(1)
        assert {t.state for t in tasks.values()} == {TaskState.COMPLETED}
        for index in range(2):
            log = scheduler.log_path(folder, sid, index).read_text()
            assert "submission abandoned; not running" in log
        assert not (folder / "manifests").exists()
    finally:
        scheduler.cancel([sid])


def small_request(folder: Path, token: str, label: str, n_tasks: int) -> ArrayRequest:
    """A two-minute array of `n_tasks` tasks, all at once, made without a campaign."""
    resources = Resources(time_minutes=2)
    return ArrayRequest(token, f"cmp-{label}-{token}", folder, n_tasks, resources, n_tasks)


def shim(folder: Path, name: str, body: str) -> Path:
    """A stand-in for one Slurm command, first on PATH (the real ones stay reachable)."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)
    return folder


def test_sbatch_timeout_that_reached_slurm_is_not_submitted_twice(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch reports a socket timeout although the array was queued: look it up, never resubmit."""
    import shutil

    real = shutil.which("sbatch")
    shims = shim(
        tmp_path / "bin",
        "sbatch",
        f'{real} "$@" > /dev/null\n'
        'echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv '
        'operation" >&2\nexit 1',
    )
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / "array-000001"
    folder.mkdir()
    (folder / "abandoned").write_text("the test needs no worker\n")  # tasks exit at once
    token = unique_version()
    request = small_request(folder, token, "shim", n_tasks=1)
    sid = SlurmScheduler().submit(request)
    try:
        assert re.fullmatch(r"\d+", sid)
        # The controller knows at once every job submitted (and keeps an ended one for
        # MinJobAge): a second array, had submit made one, is there already.
        queued = subprocess.run(
            ["squeue", "-h", "-t", "all", "--name", f"cmp-shim-{token}", "-o", "%F"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert set(queued) == {sid}, queued
        deadline = time.monotonic() + 30
        while not (rows := sacct_names_like(f"cmp-shim-{token}")):
            assert time.monotonic() < deadline, "the array never showed in sacct"
            time.sleep(1)
        assert [r[0] for r in rows] == [f"{sid}_0"], rows
        assert not list(folder.glob(".submission_file_*"))
    finally:
        SlurmScheduler().cancel([sid])


@pytest.mark.usefixtures("cluster")
def test_sacct_down_means_status_unknown_and_nothing_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], leftovers: list[Path], monkeypatch
) -> None:
    import campaigns.scheduler.slurm_cli as slurm_backend

    config = write_campaign(tmp_path, "sacct down", n=2, command='"sleep 30"')
    start(config, tmp_path, capsys, leftovers)
    before = status(config, tmp_path, capsys)["counts"]
    shims = shim(
        tmp_path / "bin",
        "sacct",
        'echo "sacct: error: Problem talking to the database: Connection refused" >&2\nexit 1',
    )
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(slurm_backend, "ATTEMPTS", 2)
    code, out, err = run(
        ["monitor", str(config), "--root", str(tmp_path), "--once", "--json"], capsys
    )
    assert code == 0, err
    report = json.loads(out)
    assert "status unknown" in report["scheduler_error"], report
    assert "Connection refused" in report["scheduler_error"]
    assert report["counts"] == before
    code, out, err = run(["cancel", str(config), "--root", str(tmp_path)], capsys)
    assert code == 0, err
