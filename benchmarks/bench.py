#!/usr/bin/env python3
"""Benchmarks of campaigns at 40,000 and 100,000 jobs: figures and ratios from one run.

    .venv/bin/python benchmarks/bench.py                 # store-side figures (no scheduler needed)
    .venv/bin/python benchmarks/bench.py --slurm         # plus throughput on the real Slurm
    .venv/bin/python benchmarks/bench.py --sizes 40000   # only one size
    .venv/bin/python benchmarks/bench.py --postgres      # init and reconcile on PostgreSQL too

Each figure comes with a plain baseline measured in the same run (raw sqlite3 for the
store, the interpreter's own start-up for commands, raw `sbatch --array` for Slurm), so
the ratios hold on any machine even where the absolute numbers do not. Targets (from the
project's issue) are printed beside the figures; nothing here asserts them: a benchmark
reports, tests decide.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
CLI = [PYTHON, "-m", "campaigns.cli"]

CAMPAIGN = """\
campaign: {{name: "Bench {n}", version: "b1", machine: local}}
parameters:
  realization: {{range: [0, {realizations}]}}
  snapshots:
    zip:
      snapshot: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
      redshift: [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.25, 1.5, 1.75,
                 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0]
job:
  command: >-
    python -m campaigns.examples.mock --seed {{realization}} --redshift {{redshift}}
    --output {{output}}
  output: "r{{realization:04d}}/mock_z{{redshift:.3f}}.hdf5"
execution: {{batch_size: 1000, max_retries: 3}}
machine: {{max_queued_jobs: 1000000}}
"""


def run_command(argv: Sequence[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one command run in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        assert proc.stderr is not None
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def best_of(times: int, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    """Fastest wall time (and the RSS of that run) of `times` runs: the least noisy figure."""
    return min((fn() for _ in range(times)), key=lambda r: r[0])


def line(label: str, value: str, target: str = "", baseline: str = "") -> None:
    print(f"  {label:<42} {value:>12}  {target:<18} {baseline}")


#: The PostgreSQL of `scripts/dev/postgres.sh up` (CAMPAIGNS_BENCH_POSTGRES_URL overrides).
POSTGRES_URL = os.environ.get(
    "CAMPAIGNS_BENCH_POSTGRES_URL",
    "postgresql+psycopg://campaigns:campaigns@127.0.0.1:5432/campaigns_test",
)
BENCH_SCHEMA = "campaigns_bench"


def fresh_postgres() -> str:
    """An empty schema for one run on PostgreSQL; the URL whose connections use it."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {BENCH_SCHEMA} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {BENCH_SCHEMA}")
    engine.dispose()
    url = sa.engine.make_url(POSTGRES_URL)
    url = url.update_query_dict({"options": f"-csearch_path={BENCH_SCHEMA}"})
    return url.render_as_string(hide_password=False)


def bench_postgres(n: int, work: Path, repeat: int) -> tuple[dict[str, float], Path, str]:
    """init and status at `n` jobs with the campaign in PostgreSQL: (figures, config, URL).

    Run before any in-process work: a child's peak RSS counts the parent's pages it was
    forked with, so the commands are measured while this process is still small.
    """
    config = work / f"bench_{n}.yaml"
    config.write_text(CAMPAIGN.format(n=n, realizations=n // 20))
    root = work / f"pg_root_{n}"
    urls: list[str] = []

    def init() -> tuple[float, float]:
        shutil.rmtree(root, ignore_errors=True)
        urls[:] = [fresh_postgres()]
        return run_command(
            [*CLI, "init", str(config), "--root", str(root), "--db-url", urls[0]], work
        )

    figures: dict[str, float] = {}
    figures["init_s"], figures["init_rss_mb"] = best_of(repeat, init)
    figures["status_s"], _ = best_of(
        repeat,
        lambda: run_command(
            [*CLI, "status", str(config), "--root", str(root), "--json", "--db-url", urls[0]],
            work,
        ),
    )
    return figures, root, urls[0]


def bench_size(n: int, work: Path, repeat: int) -> dict[str, float]:
    """init, status --json, submit --dry-run and one reconciliation at `n` jobs."""
    figures: dict[str, float] = {}
    config = work / f"bench_{n}.yaml"
    config.write_text(CAMPAIGN.format(n=n, realizations=n // 20))
    root = work / f"root_{n}"

    def init() -> tuple[float, float]:
        shutil.rmtree(root, ignore_errors=True)
        return run_command([*CLI, "init", str(config), "--root", str(root)], work)

    figures["init_s"], figures["init_rss_mb"] = best_of(repeat, init)
    figures["status_s"], _ = best_of(
        repeat,
        lambda: run_command([*CLI, "status", str(config), "--root", str(root), "--json"], work),
    )
    figures["dry_run_s"], _ = best_of(
        1,
        lambda: run_command(
            [*CLI, "submit", str(config), "--root", str(root), "--backend", "local", "--dry-run"],
            work,
        ),
    )
    figures["sqlite_insert_s"] = raw_sqlite_insert(n, work)
    return figures


def raw_sqlite_insert(n: int, work: Path) -> float:
    """Baseline: plain sqlite3 executemany of the same rows (keys, JSON params, outputs)."""
    path = work / f"raw_{n}.db"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, key TEXT UNIQUE, uid TEXT UNIQUE, "
        "params TEXT, output TEXT, group_id INT, state TEXT, attempts INT)"
    )
    conn.execute("CREATE INDEX ix_state ON jobs (state)")
    rows = []
    zs = [
        0.0,
        0.1,
        0.2,
        0.3,
        0.5,
        0.7,
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
        2.25,
        2.5,
        3.0,
        3.5,
        4.0,
        5.0,
        6.0,
        7.0,
        8.0,
    ]
    for i in range(n):
        r, s = divmod(i, 20)
        rows.append(
            (
                i + 1,
                f"realization={r},snapshot={s},redshift={zs[s]!r}",
                f"{i:010x}",
                json.dumps({"realization": r, "snapshot": s, "redshift": zs[s]}),
                f"r{r:04d}/mock_z{zs[s]:.3f}.hdf5",
                0,
                "pending",
                0,
            )
        )
    conn.executemany("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()
    return time.perf_counter() - start


def reconcile_cycle(config: Path, root: Path, db_url: str | None = None) -> float:
    """Store side of one monitor cycle: every job queued in open arrays, all reported done.

    Uses a scheduler fake at the seam (the store, the manifests on disk and the
    bulk updates are real): it reports every task COMPLETED, and each job has its
    manifest, as after a whole campaign finished between two polls.
    """
    sys.path.insert(0, str(REPO / "src"))
    from campaigns.core.states import TaskState
    from campaigns.ops.manager import CampaignManager
    from campaigns.scheduler.base import ArrayStatus, TaskStatus

    class AllDone:
        name = "bench"

        def render(self, request):  # type: ignore[no-untyped-def]
            return ""

        def submit(self, request):  # type: ignore[no-untyped-def]
            return f"B{request.token}"

        def find(self, token, folder, since):  # type: ignore[no-untyped-def]
            return None

        def poll(self, arrays):  # type: ignore[no-untyped-def]
            out = {}
            for sid, folder in arrays.items():
                n_tasks = json.loads((Path(folder) / "array.json").read_text())["n_tasks"]
                out[sid] = ArrayStatus(
                    {i: TaskStatus(TaskState.COMPLETED, 0) for i in range(n_tasks)}
                )
            return out

        def cancel(self, ids):  # type: ignore[no-untyped-def]
            pass

        def max_array_size(self):  # type: ignore[no-untyped-def]
            return None

        def log_path(self, folder, sid, index):  # type: ignore[no-untyped-def]
            return Path(folder) / f"task-{index}.log"

    manager = CampaignManager(config, root=root, db_url=db_url, schedulers={"local": AllDone()})
    manager.submit_campaign(backend="local")
    for sub in manager.store.submissions(states=["submitted"]):
        folder = Path(sub["log_dir"])
        for line_text in (folder / "tasks.jsonl").read_text().splitlines():
            for job in json.loads(line_text)["jobs"]:
                Path(job["manifest"]).write_text(
                    json.dumps(
                        {
                            "attempt": job["attempt"],
                            "exit_code": 0,
                            "failure": None,
                            "started_at": "2026-01-01T00:00:00+00:00",
                            "ended_at": "2026-01-01T00:01:00+00:00",
                            "host": "bench",
                            "outputs": [],
                        }
                    )
                )
    start = time.perf_counter()
    report = manager.monitor_progress()
    elapsed = time.perf_counter() - start
    assert report.counts["completed"] == report.total, report.counts
    manager.close()
    return elapsed


def python_startup() -> float:
    """Baseline: `python -c pass` and `python -c 'import campaigns.cli'`."""
    return best_of(5, lambda: run_command([PYTHON, "-c", "pass"], REPO))[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--slurm", action="store_true", help="also measure throughput on Slurm")
    parser.add_argument("--slurm-jobs", type=int, default=200)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also measure init, status and a reconciliation with the campaign in PostgreSQL",
    )
    args = parser.parse_args(argv)
    print(
        f"campaigns benchmarks on {platform.node()}: {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.platform()}"
    )
    startup = python_startup()
    cli_import = best_of(5, lambda: run_command([PYTHON, "-c", "import campaigns.cli"], REPO))[0]
    manager_import = best_of(
        5, lambda: run_command([PYTHON, "-c", "import campaigns.ops.manager"], REPO)
    )[0]
    print(
        f"  python start-up {startup:.3f} s; import campaigns.cli {cli_import:.3f} s; "
        f"import campaigns.ops.manager (SQLAlchemy, jsonschema, ...) {manager_import:.3f} s"
    )
    targets = {40_000: {"init_s": 1.0, "status_s": 0.3}, 100_000: {"init_s": 2.5}}
    with tempfile.TemporaryDirectory(prefix="campaigns-bench-") as tmp:
        work = Path(tmp)
        for n in args.sizes:
            f = bench_size(n, work, args.repeat)
            if args.postgres:
                pg, pg_root, pg_url = bench_postgres(n, work, args.repeat)
            config = work / f"bench_{n}.yaml"
            f["reconcile_s"] = reconcile_cycle(config, work / f"root_{n}")
            t = targets.get(n, {})
            print(f"\n{n:,} jobs")
            line(
                "init (whole command)",
                f"{f['init_s']:.2f} s",
                f"target < {t['init_s']} s" if "init_s" in t else "",
                f"raw sqlite3 insert {f['sqlite_insert_s']:.2f} s "
                f"(ratio {f['init_s'] / f['sqlite_insert_s']:.1f}x)",
            )
            line("init peak RSS", f"{f['init_rss_mb']:.0f} MB", "target < 300 MB")
            line(
                "status --json (whole command)",
                f"{f['status_s']:.2f} s",
                f"target < {t['status_s']} s" if "status_s" in t else "",
                f"python start-up + import {manager_import:.2f} s "
                f"({f['status_s'] - manager_import:.2f} s of work)",
            )
            line("submit --dry-run (plan + write arrays)", f"{f['dry_run_s']:.2f} s")
            line(
                "one reconciliation, all jobs finishing",
                f"{f['reconcile_s']:.2f} s",
                "",
                "1 scheduler poll per backend",
            )
            if args.postgres:
                pg["reconcile_s"] = reconcile_cycle(config, pg_root, pg_url)
                line("PostgreSQL: init (whole command)", f"{pg['init_s']:.2f} s", "", "")
                line("PostgreSQL: init peak RSS", f"{pg['init_rss_mb']:.0f} MB")
                line("PostgreSQL: status --json", f"{pg['status_s']:.2f} s")
                line("PostgreSQL: one reconciliation", f"{pg['reconcile_s']:.2f} s")
    if args.slurm:
        from slurm_throughput import report_throughput  # type: ignore[import-not-found]

        report_throughput(args.slurm_jobs)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
