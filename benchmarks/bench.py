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
from typing import Any

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
qa:
  required_datasets: [galaxies/x]
  min_rows: 1
  finite_datasets: [galaxies/x]
  required_attributes: [seed]
"""

#: The campaign's redshifts (its second axis, zipped with the snapshot).
REDSHIFTS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0]
REDSHIFTS += [5.0, 6.0, 7.0, 8.0]


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
    zs = REDSHIFTS
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


def python_startup() -> float:
    """Baseline: `python -c pass` and `python -c 'import campaigns.cli'`."""
    return best_of(5, lambda: run_command([PYTHON, "-c", "pass"], REPO))[0]


def points(n: int) -> list[dict[str, Any]]:
    """The campaign's parameter values, as signac statepoints."""
    zs = REDSHIFTS
    return [{"realization": i // 20, "snapshot": i % 20, "redshift": zs[i % 20]} for i in range(n)]


def progress(text: str) -> None:
    """Where the run is, on stderr (a whole run takes tens of minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from paths import (
        import_summary,
        reconcile_all_done,
        signac_init,
        tick_nothing_new,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best is kept)")
    parser.add_argument("--slurm", action="store_true", help="also measure throughput on Slurm")
    parser.add_argument("--slurm-jobs", type=int, default=200)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also measure init, status, a reconciliation and a tick in PostgreSQL",
    )
    parser.add_argument("--signac-sizes", type=int, nargs="*", default=[40_000])
    parser.add_argument("--qa-size", type=int, default=40_000, help="0: no QA figures")
    parser.add_argument("--qa-new", type=int, default=1_000)
    args = parser.parse_args(argv)
    print(
        f"campaigns benchmarks on {platform.node()}: {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.platform()}"
    )
    startup = python_startup()
    cli_import = best_of(5, lambda: run_command([PYTHON, "-c", "import campaigns.cli"], REPO))[0]
    status_import = best_of(
        5,
        lambda: run_command(
            [
                PYTHON,
                "-c",
                "import campaigns.cli.main, campaigns.ops.status, campaigns.ops.context",
            ],
            REPO,
        ),
    )[0]
    print(
        f"  python start-up {startup:.3f} s; import campaigns.cli {cli_import:.3f} s; "
        f"imports of `status` (CLI, store, SQLAlchemy) {status_import:.3f} s"
    )
    targets = {
        40_000: {"init_s": 1.0, "status_s": 0.3, "reconcile_s": 2.0, "tick_s": 1.0},
        100_000: {"init_s": 2.5, "status_s": 0.3, "tick_s": 1.0},
    }
    profiles: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="campaigns-bench-") as tmp:
        work = Path(tmp)
        # Every command first: a child's peak RSS counts the pages of the parent it was
        # forked from, so the in-process work (below) waits until they are measured.
        figures: dict[int, dict[str, float]] = {}
        postgres: dict[int, dict[str, float]] = {}
        for n in args.sizes:
            progress(f"{n:,} jobs: init, status, submit --dry-run")
            figures[n] = f = bench_size(n, work, args.repeat)
            config = work / f"bench_{n}.yaml"
            if n == args.sizes[0]:
                profiles[f"status --json, {n:,} jobs: python -X importtime by package"] = (
                    import_summary(
                        [*CLI, "status", str(config), "--root", str(work / f"root_{n}"), "--json"],
                        work,
                    )
                )
            if n in args.signac_sizes:
                progress(f"{n:,} jobs: signac")
                f["signac_s"] = signac_init(n, work, points(n)) or 0.0
            if args.postgres:
                progress(f"{n:,} jobs: PostgreSQL init, status")
                postgres[n] = bench_postgres(n, work, args.repeat)[0]
        for n in args.sizes:
            f = figures[n]
            config = work / f"bench_{n}.yaml"
            progress(f"{n:,} jobs: one reconciliation")
            clean = work / f"clean_{n}"
            shutil.copytree(work / f"root_{n}", clean)
            f["reconcile_s"], profile = reconcile_all_done(
                config, work / f"root_{n}", profile=n == args.sizes[0]
            )
            if profile:
                profiles[f"one reconciliation, {n:,} jobs all finishing"] = profile
            progress(f"{n:,} jobs: ticks with nothing new")
            f["tick_s"], f["tick_poll_s"], profile = tick_nothing_new(config, clean)
            profiles[f"one tick with nothing new, {n:,} jobs queued"] = profile
            t = targets.get(n, {})

            def target(name: str, t: dict[str, float] = t) -> str:
                return f"target <= {t[name]} s" if name in t else ""

            print(f"\n{n:,} jobs")
            line(
                "init (whole command)",
                f"{f['init_s']:.2f} s",
                target("init_s"),
                f"raw sqlite3 insert {f['sqlite_insert_s']:.2f} s "
                f"(ratio {f['init_s'] / f['sqlite_insert_s']:.1f}x)",
            )
            if f.get("signac_s"):
                line(
                    "init vs signac 2.4 (same jobs)",
                    f"{f['init_s'] / f['signac_s']:.3f}x",
                    "target <= 0.08x",
                    f"signac init_project + open_job().init() {f['signac_s']:.2f} s",
                )
            line("init peak RSS", f"{f['init_rss_mb']:.0f} MB", "target <= 300 MB")
            line(
                "status --json (whole command)",
                f"{f['status_s']:.2f} s",
                target("status_s"),
                f"start-up + imports {status_import:.2f} s "
                f"({f['status_s'] - status_import:.2f} s of work)",
            )
            line("submit --dry-run (plan + write arrays)", f"{f['dry_run_s']:.2f} s")
            line(
                "one reconciliation, all jobs finishing",
                f"{f['reconcile_s']:.2f} s",
                target("reconcile_s"),
                "1 scheduler poll per backend",
            )
            line(
                "one tick (monitor --once --submit), idle",
                f"{f['tick_s']:.2f} s",
                target("tick_s"),
                f"+ the scheduler query ({f['tick_poll_s']:.2f} s in the fake)",
            )
            if args.postgres:
                progress(f"{n:,} jobs: PostgreSQL reconciliation and tick")
                pg = postgres[n]
                _, pg_root, pg_url = bench_postgres(n, work, 1)  # a fresh campaign for each
                pg["reconcile_s"], _ = reconcile_all_done(config, pg_root, pg_url)
                _, pg_root, pg_url = bench_postgres(n, work, 1)
                pg["tick_s"], _, _ = tick_nothing_new(config, pg_root, pg_url)
                line("PostgreSQL: init (whole command)", f"{pg['init_s']:.2f} s", "", "")
                line("PostgreSQL: init peak RSS", f"{pg['init_rss_mb']:.0f} MB")
                line("PostgreSQL: status --json", f"{pg['status_s']:.2f} s")
                line("PostgreSQL: one reconciliation", f"{pg['reconcile_s']:.2f} s")
                line("PostgreSQL: one tick, idle", f"{pg['tick_s']:.2f} s")
            sys.stdout.flush()
        if args.qa_size:
            progress(f"QA of {args.qa_size:,} outputs")
            bench_qa(args, work, profiles)
    print("\nProfiles (cProfile, cumulative time; the functions of campaigns and the driver)")
    for title, rows in profiles.items():
        print(f"  {title}")
        for text in rows:
            print(f"    {text}")
    if args.slurm:
        from slurm_throughput import report_throughput  # type: ignore[import-not-found]

        report_throughput(args.slurm_jobs)
    return 0


def bench_qa(args: argparse.Namespace, work: Path, profiles: dict[str, list[str]]) -> None:
    """`qa` at `--qa-size` outputs: first run, nothing new, `--qa-new` new outputs, --full."""
    from paths import qa_incremental

    n = args.qa_size
    config = work / f"bench_{n}.yaml"
    config.write_text(CAMPAIGN.format(n=n, realizations=n // 20))
    root = work / f"qa_{n}"
    subprocess.run(
        [*CLI, "init", str(config), "--root", str(root)], check=True, capture_output=True
    )

    def run(extra: list[str]) -> float:
        return run_command([*CLI, "qa", str(config), "--root", str(root), *extra], work)[0]

    q = qa_incremental(config, root, args.qa_new, run)
    profiles[f"qa after {args.qa_new:,} new outputs, {q['outputs']:,} outputs"] = q["profile"]
    print(f"\nqa of {q['outputs']:,} outputs (whole command, reports and plots included)")
    line("first run (nothing stored: all opened)", f"{q['first_s']:.2f} s")
    line("again, nothing new", f"{q['unchanged_s']:.2f} s")
    line(
        f"after {args.qa_new:,} new outputs",
        f"{q['incremental_s']:.2f} s",
        "target <= 5 s",
        f"qa --full {q['full_s']:.2f} s (ratio {q['incremental_s'] / q['full_s']:.2f}x)",
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
