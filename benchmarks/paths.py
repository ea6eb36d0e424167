"""The recurring paths of bench.py: one reconciliation, one tick, incremental QA, and the
signac baseline; plus the profile and import-time summaries printed beside them.

Every in-process figure runs on a real store and real files; only the scheduler is a
fake at its seam (`FakeScheduler`), which reports every task in one state.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

#: Rows of the profile summaries (the functions with the most cumulative time).
PROFILE_ROWS = 8


class FakeScheduler:
    """A scheduler at the seam that reports every task of every open array in `state`."""

    name = "bench"

    def __init__(self, state: str) -> None:
        self.state = state
        self.poll_seconds = 0.0  # the "scheduler query", kept apart from our own time

    def render(self, request: Any) -> str:
        return ""

    def submit(self, request: Any) -> str:
        return f"B{request.token}"

    def find(self, token: Any, folder: Any, since: Any) -> None:
        return None

    def poll(self, arrays: dict[str, Path]) -> dict[str, Any]:
        from campaigns.core.states import TaskState
        from campaigns.scheduler.base import ArrayStatus, TaskStatus

        started = time.perf_counter()
        out = {}
        state = TaskState(self.state)
        for sid, folder in arrays.items():
            n_tasks = json.loads((Path(folder) / "array.json").read_text())["n_tasks"]
            out[sid] = ArrayStatus({i: TaskStatus(state, 0) for i in range(n_tasks)})
        self.poll_seconds += time.perf_counter() - started
        return out

    def cancel(self, ids: Any) -> None:
        pass

    def max_array_size(self) -> None:
        return None

    def log_path(self, folder: Any, sid: Any, index: int) -> Path:
        return Path(folder) / f"task-{index}.log"


def manager_with(config: Path, root: Path, scheduler: FakeScheduler, db_url: str | None) -> Any:
    from campaigns.ops.manager import CampaignManager

    return CampaignManager(config, root=root, db_url=db_url, schedulers={"local": scheduler})


def write_manifests(manager: Any) -> None:
    """A manifest for every submitted job, as its worker would leave it (no outputs)."""
    for sub in manager.store.submissions(states=["submitted"]):
        folder = Path(sub["log_dir"])
        for line_text in (folder / "tasks.jsonl").read_text().splitlines():
            for job in json.loads(line_text)["jobs"]:
                Path(job["manifest"]).write_text(json.dumps(manifest(job["attempt"])))


def manifest(attempt: int, **extra: Any) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "exit_code": 0,
        "failure": None,
        "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": "2026-01-01T00:01:00+00:00",
        "host": "bench",
        "outputs": [],
        **extra,
    }


def profiled(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """`fn()` under cProfile: its result and the top functions by cumulative time."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        result = fn()
    finally:
        profile.disable()
    stats = pstats.Stats(profile)
    rows = []
    for (file, lineno, name), (_cc, calls, _tt, cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = file.split("site-packages/")[-1].split("src/")[-1]
        if short.startswith("campaigns/") or name in ("executemany", "execute", "loads"):
            rows.append((cum, f"{cum:6.2f} s {calls:>7} calls  {short}:{lineno}({name})"))
    rows.sort(reverse=True)
    return result, [text for _, text in rows[1 : PROFILE_ROWS + 1]]


def reconcile_all_done(
    config: Path, root: Path, db_url: str | None = None, profile: bool = False
) -> tuple[float, list[str]]:
    """One reconciliation in which every job finished: (seconds, profile).

    Every job is submitted to a fake that reports all tasks COMPLETED, and each job has
    its manifest. With `profile`, the same step runs once more on a second, identical
    campaign under cProfile (the timed run is never profiled).
    """

    def once(folder: Path, fn: Callable[[Callable[[], Any]], Any]) -> Any:
        manager = manager_with(config, folder, FakeScheduler("COMPLETED"), db_url)
        manager.submit_campaign(backend="local")
        write_manifests(manager)
        try:
            return fn(manager.monitor_progress)
        finally:
            manager.close()

    def timed(step: Callable[[], Any]) -> float:
        start = time.perf_counter()
        report = step()
        assert report.counts["completed"] == report.total, report.counts
        return time.perf_counter() - start

    twin = root.with_name(root.name + "_profiled")
    if profile and db_url is None:  # an identical campaign, copied before the timed run
        shutil.copytree(root, twin, dirs_exist_ok=True)
    elapsed = once(root, timed)
    if not profile or db_url is not None:
        return elapsed, []
    return elapsed, once(twin, lambda step: profiled(step)[1])


def tick_nothing_new(
    config: Path, root: Path, db_url: str | None = None, repeat: int = 3
) -> tuple[float, float, list[str]]:
    """`monitor --once --submit` with every job queued and nothing new: (ours, poll, profile).

    Every job is submitted; the fake reports every task PENDING, so a tick finds no
    change, nothing to retry and nothing left to submit. Best of `repeat` ticks; the
    scheduler query (the fake's poll) is measured apart.
    """
    fake = FakeScheduler("PENDING")
    manager = manager_with(config, root, fake, db_url)
    manager.submit_campaign(backend="local")
    best, poll = float("inf"), 0.0
    for _ in range(repeat):
        fake.poll_seconds = 0.0
        start = time.perf_counter()
        report = manager.monitor_progress(resubmit=True, backend="local")
        elapsed = time.perf_counter() - start
        assert report.counts["queued"] == report.total, report.counts
        if elapsed - fake.poll_seconds < best:
            best, poll = elapsed - fake.poll_seconds, fake.poll_seconds
    _, profile = profiled(lambda: manager.monitor_progress(resubmit=True, backend="local"))
    manager.close()
    return best, poll, profile


def prepare_qa(config: Path, root: Path) -> Any:
    """A finished campaign for QA: every job completed with an HDF5 output and its manifest."""
    import hashlib

    import h5py
    import numpy as np

    fake = FakeScheduler("COMPLETED")
    manager = manager_with(config, root, fake, None)
    manager.submit_campaign(backend="local")
    write_manifests(manager)
    manager.monitor_progress()
    template = root / "template.h5"
    with h5py.File(template, "w") as fh:
        fh.attrs["seed"] = 1
        fh.create_dataset("galaxies/x", data=np.arange(200, dtype="f8"))
    content = template.read_bytes()
    config_hash = manager.store.campaign()["config_hash"]
    for row in manager.store.qa_targets():
        write_output(manager, row, content, config_hash, hashlib.sha256(content).hexdigest())
    return manager


def write_output(
    manager: Any, row: dict[str, Any], content: bytes, config_hash: str, digest: str
) -> None:
    path = manager.layout.output(row["output"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    entry = {"path": row["output"], "size": len(content), "sha256": digest}
    data = manifest(row["attempt"], uid=row["uid"], config_hash=config_hash, outputs=[entry])
    Path(row["manifest_path"]).write_text(json.dumps(data))


def qa_incremental(
    config: Path, root: Path, new: int, run: Callable[[list[str]], float]
) -> dict[str, Any]:
    """Full QA, then `new` outputs rewritten (new files, new manifests), then `qa` again.

    `run(extra_args)` times one whole `qa` command. Returns the figures and the profile of
    the incremental run (in process).
    """
    import hashlib

    manager = prepare_qa(config, root)
    figures: dict[str, Any] = {"outputs": len(manager.store.qa_targets())}
    figures["first_s"] = run([])  # nothing stored yet: every output is opened
    figures["unchanged_s"] = run([])  # nothing new at all
    content = (root / "template.h5").read_bytes() + b"\0" * 16  # another file, same rules
    digest = hashlib.sha256(content).hexdigest()
    config_hash = manager.store.campaign()["config_hash"]
    rows = manager.store.qa_targets()
    step = max(1, len(rows) // new)
    for row in rows[::step][:new]:
        write_output(manager, row, content, config_hash, digest)
    manager.close()
    figures["incremental_s"] = run([])
    figures["full_s"] = run(["--full"])
    for row in rows[::step][:new]:  # once more, for the profile
        write_output(
            manager, row, content + b"\0", config_hash, hashlib.sha256(content + b"\0").hexdigest()
        )
    manager = manager_with(config, root, FakeScheduler("COMPLETED"), None)
    from campaigns.ops.qa import run_qa

    report, figures["profile"] = profiled(lambda: run_qa(manager))
    figures["opened"] = report.opened
    manager.close()
    return figures


def signac_init(n: int, work: Path, rows: Sequence[dict[str, Any]]) -> float | None:
    """Baseline: a signac 2.4 project with the same `n` jobs (statepoints), whole process."""
    folder = work / f"signac_{n}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "points.json").write_text(json.dumps(list(rows)))
    script = (
        "import json, signac\n"
        "project = signac.init_project('.')\n"
        "for point in json.load(open('points.json')):\n"
        "    project.open_job(point).init()\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=folder, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    if done.returncode != 0:
        if "No module named 'signac'" in done.stderr:
            return None
        raise RuntimeError(done.stderr)
    return elapsed


def import_summary(argv: Sequence[str], cwd: Path, top: int = 8) -> list[str]:
    """`python -X importtime` of one command: total import time by top-level package."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
    by_package: dict[str, int] = {}
    for text in done.stderr.splitlines():
        if not text.startswith("import time:") or "self [us]" in text:
            continue
        self_us, _cumulative, name = text.removeprefix("import time:").split("|")
        words = name.strip().split(".")
        package = ".".join(words[:2]) if words[0] == "campaigns" else words[0]
        by_package[package] = by_package.get(package, 0) + int(self_us)
    total = sum(by_package.values())
    ranked = sorted(by_package.items(), key=lambda kv: -kv[1])[:top]
    return [f"all imports {total / 1e6:.3f} s"] + [
        f"{us / 1e6:.3f} s {name}" for name, us in ranked
    ]
