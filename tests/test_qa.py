"""QA, summary plots and the job export, on real campaigns run through the CLI (local backend)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from axes import campaign_head
from campaigns.cli import main
from campaigns.core.spec import QARules
from campaigns.errors import InputError
from campaigns.ops.export import export_jobs
from campaigns.ops.manager import CampaignManager
from campaigns.ops.qa import run_qa, summary_plots
from campaigns.qa import checks as qa_checks
from campaigns.qa.checks import Target, check_hdf5
from campaigns.qa.plots import FILES
from campaigns.qa.pool import check_outputs
from campaigns.qa.report import COLUMNS

CAMPAIGN = (
    campaign_head("QA test", "q1")
    + """\
job:
  command: >-
    python -m campaigns.examples.mock --seed {{realization}} --redshift {{redshift}}
    --n-galaxies 500 --compression gzip --output {{output}}
  output: "r{{realization:04d}}/mock_z{{redshift:.3f}}.hdf5"
execution:
  batch_size: 6
  max_retries: {max_retries}
  retry_backoff: {{base_seconds: 1, factor: 2, max_seconds: 5, jitter: 0.1}}
qa:
  required_datasets: [galaxies/x, galaxies/y, galaxies/z, galaxies/mass, galaxies/redshift]
  min_rows: 1
  finite_datasets: [galaxies/x, galaxies/y, galaxies/z, galaxies/mass]
  required_attributes: [seed, redshift]
"""
)
RULES = QARules(
    required_datasets=("galaxies/x", "galaxies/mass"),
    min_rows=3,
    finite_datasets=("galaxies/x", "galaxies/mass", "galaxies/id"),
    required_attributes=("seed",),
)


def cli(*argv: str) -> tuple[int, str]:
    """Run the CLI, returning its exit code and stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def run_to_end(config: Path, root: Path, timeout: float = 90) -> dict:
    """Monitor (--once --json) until no job is queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = cli("monitor", str(config), "--root", str(root), "--once", "--json")
        assert code == 0
        report = json.loads(out)
        if report["counts"]["queued"] + report["counts"]["running"] == 0:
            return report
        assert time.monotonic() < deadline, f"not done after {timeout}s: {report['counts']}"
        time.sleep(0.3)


def start_campaign(folder: Path, n: int = 3, max_retries: int = 2) -> tuple[Path, Path]:
    """Write, init, submit and run a campaign of n x 2 mock jobs; (config, root)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "campaign.yaml"
    config.write_text(CAMPAIGN.format(n=n, max_retries=max_retries))
    root = folder / "runs"
    assert cli("init", str(config), "--root", str(root))[0] == 0
    assert cli("submit", str(config), "--root", str(root), "--backend", "local")[0] == 0
    report = run_to_end(config, root)
    assert report["counts"]["completed"] == 2 * n, report
    return config, root


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished 6-job campaign shared by the read-only tests."""
    return start_campaign(tmp_path_factory.mktemp("qa-shared"))


@contextlib.contextmanager
def manager(config: Path, root: Path) -> Iterator[CampaignManager]:
    m = CampaignManager(config, root=root)
    try:
        yield m
    finally:
        m.close()


def now() -> datetime:
    return datetime.now(timezone.utc)


# -- the whole story on a real campaign -------------------------------------------------


def test_qa_passes_on_a_fresh_campaign(campaign: tuple[Path, Path]) -> None:
    config, root = campaign
    with manager(config, root) as m:
        report = run_qa(m)
    assert report.ok and report.checked == report.passed == 6 and report.invalid == []
    assert report.not_checked == {}
    frame = report.results
    assert frame is not None and list(frame.columns) == list(COLUMNS)
    assert frame["ok"].all() and (frame["size"] > 0).all()
    assert frame["sha256"].str.len().eq(64).all()
    assert Path(report.latest).is_file() and Path(report.report).is_file()
    assert json.loads(Path(report.latest).read_text())["summary"]["passed"] == 6
    assert report.to_dict()["rules"]["min_rows"] == 1


def test_corrupt_missing_and_nan_outputs_are_found_requeued_and_rerun(tmp_path: Path) -> None:
    config, root = start_campaign(tmp_path)
    with manager(config, root) as m:
        jobs = m.store.jobs(columns=["id", "key", "output"])
        corrupt, deleted, nan = jobs[0], jobs[3], jobs[4]
        path = m.layout.output(corrupt["output"])
        size = path.stat().st_size
        with open(path, "r+b") as fh:  # same size, different bytes in the middle
            fh.seek(size // 2)
            fh.write(b"\x00\xff" * 32)
        m.layout.output(deleted["output"]).unlink()

        report = run_qa(m)
        assert not report.ok and report.checked == 6 and report.passed == 4
        problems = dict(report.invalid)
        assert set(problems) == {corrupt["key"], deleted["key"]}
        assert any(p.startswith("checksum mismatch") for p in problems[corrupt["key"]])
        assert problems[deleted["key"]] == [f"output missing: catalogs/{deleted['output']}"]
        # The report files: JSON (timestamped and latest), CSV (timestamped and latest).
        folder = m.layout.qa_reports
        assert Path(report.report).parent == folder and Path(report.report).name.startswith("qa_")
        saved = json.loads((folder / "latest.json").read_text())
        assert saved == json.loads(Path(report.report).read_text())
        assert saved["summary"]["invalid"] == 2
        assert {e["key"] for e in saved["invalid"]} == {corrupt["key"], deleted["key"]}
        assert saved["rules"]["finite_datasets"] == [
            "galaxies/x",
            "galaxies/y",
            "galaxies/z",
            "galaxies/mass",
        ]
        table = pd.read_csv(folder / "latest.csv")
        assert len(table) == 6 and table["ok"].sum() == 4
        assert Path(report.csv).is_file()
        # The plots.
        assert [Path(p).name for p in report.plots] == list(FILES)
        for p in report.plots:
            assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # A NaN in a finite dataset, with a manifest that matches the new file.
        nan_path = m.layout.output(nan["output"])
        with h5py.File(nan_path, "a") as fh:
            mass = fh["galaxies/mass"][...]
            mass[7] = np.nan
            fh["galaxies/mass"][...] = mass
        manifest = Path(m.store.attempts([nan["id"]])[-1]["manifest_path"])
        data = json.loads(manifest.read_text())
        data["outputs"][0].update(
            size=nan_path.stat().st_size, sha256=hashlib.sha256(nan_path.read_bytes()).hexdigest()
        )
        manifest.write_text(json.dumps(data))

        report = run_qa(m)
        problems = dict(report.invalid)
        assert set(problems) == {corrupt["key"], deleted["key"], nan["key"]}
        assert problems[nan["key"]] == [
            "galaxies/mass holds NaN/inf values in 1 rows (first at row 7)"
        ]
        # The worker processes find the same problems as this process.
        targets = [
            Target(r["key"], r["uid"], r["output"], r["attempt"], r["manifest_path"])
            for r in m.store.qa_targets()
        ]
        hash_ = m.store.campaign()["config_hash"]
        alone = check_outputs(targets, m.layout.catalogs, hash_, m.spec.qa, processes=0)
        pooled = check_outputs(targets, m.layout.catalogs, hash_, m.spec.qa, processes=2)
        assert [r["problems"] for r in alone] == [r["problems"] for r in pooled]

        # --requeue: exactly those jobs fail as invalid_output, due at once.
        report = run_qa(m, requeue=True)
        assert sorted(report.requeued) == sorted(problems) and report.exhausted == []
        rows = {r["key"]: r for r in m.store.jobs()}
        for key, row in rows.items():
            if key in problems:
                assert row["state"] == "failed" and row["failure_class"] == "invalid_output"
                assert row["error"].startswith("invalid output: ")
                assert row["next_retry_at"] is not None and row["attempts"] == 1
            else:
                assert row["state"] == "completed" and row["failure_class"] is None
        latest = {a["job_id"]: a for a in m.store.attempts()}
        assert latest[corrupt["id"]]["failure_class"] == "invalid_output"
        assert "checksum mismatch" in rows[corrupt["key"]]["error"]
        status = json.loads(cli("status", str(config), "--root", str(root), "--json")[1])
        assert status["counts"]["failed"] == 3
        assert status["failures"] == {
            "by_class": {"invalid_output": 3},
            "retry_due": 3,
            "retry_waiting": 0,
            "exhausted": 0,
            "next_retry_at": None,  # no job waits: all three are due at once
        }

    # retry --submit reruns them; the campaign is whole again.
    code, out = cli("retry", str(config), "--root", str(root), "--submit")
    assert code == 0, out
    report = run_to_end(config, root)
    assert report["counts"]["completed"] == 6, report
    with manager(config, root) as m:
        again = run_qa(m)
        assert again.ok and again.passed == 6, again.invalid
        assert {r["key"]: r["attempts"] for r in m.store.jobs()}[nan["key"]] == 2
        invalid_events = [e for e in m.store.events(200) if e["kind"] == "invalid"]
        assert len(invalid_events) == 3


def test_requeue_of_a_job_without_attempts_left_leaves_it_exhausted(tmp_path: Path) -> None:
    config, root = start_campaign(tmp_path, n=1, max_retries=0)
    with manager(config, root) as m:
        job = m.store.jobs(columns=["id", "key", "output"])[0]
        m.layout.output(job["output"]).unlink()
        report = run_qa(m, requeue=True, plots=False)
        assert report.exhausted == [job["key"]] and report.requeued == [] and report.plots == []
        row = m.store.jobs(ids=[job["id"]])[0]
        assert row["state"] == "failed" and row["failure_class"] == "invalid_output"
        assert row["next_retry_at"] is None
        # A second requeue finds nothing new to mark: the job is no longer completed.
        again = run_qa(m, requeue=True, plots=False)
        assert again.checked == 1 and again.not_checked == {"failed": 1}
        assert again.exhausted == [] and again.requeued == []
    code, out = cli("retry", str(config), "--root", str(root), "--json")
    assert code == 0 and json.loads(out)["exhausted"][0]["key"] == job["key"]


def test_config_hash_and_manifest_problems(campaign: tuple[Path, Path], tmp_path: Path) -> None:
    config, root = campaign
    with manager(config, root) as m:
        rows = m.store.qa_targets()
        targets = [
            Target(r["key"], r["uid"], r["output"], r["attempt"], r["manifest_path"])
            for r in rows[:2]
        ]
        found = check_outputs(targets, m.layout.catalogs, "0" * 16, m.spec.qa)
        assert all("config hash mismatch" in r["problems"][0] for r in found)
        lost = Target(
            rows[0]["key"], rows[0]["uid"], rows[0]["output"], 1, str(tmp_path / "gone.json")
        )
        bare = Target(rows[1]["key"], rows[1]["uid"], rows[1]["output"], 1, None)
        found = check_outputs([lost, bare], m.layout.catalogs, m.spec.config_hash, m.spec.qa)
        assert found[0]["problems"][0].startswith("manifest missing")
        assert found[1]["problems"] == ["no manifest recorded for attempt 1"]


# -- the HDF5 rules, on files written here --------------------------------------------


def write_h5(path: Path, rows: int = 10, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as fh:
        fh.attrs["seed"] = 1
        group = fh.create_group("galaxies")
        group.create_dataset("x", data=np.arange(rows, dtype="f8"))
        group.create_dataset("mass", data=np.ones(rows), chunks=(min(rows, 4),))
        group.create_dataset("id", data=np.arange(rows))
        for name, values in datasets.items():
            if name in group:
                del group[name]
            group.create_dataset(name, data=values)
    return path


def test_hdf5_rules(tmp_path: Path) -> None:
    assert check_hdf5(write_h5(tmp_path / "good.h5"), RULES) == []
    few = write_h5(tmp_path / "few.h5", rows=2)
    assert check_hdf5(few, RULES) == [
        "galaxies/x has 2 rows, fewer than min_rows 3",
        "galaxies/mass has 2 rows, fewer than min_rows 3",
    ]
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as fh:
        fh.create_group("galaxies/x")
        fh.create_dataset("galaxies/id", data=np.array([b"a", b"b"]))
    assert check_hdf5(bad, RULES) == [
        "missing root attribute 'seed'",
        "galaxies/x is a group, not a dataset (required_datasets)",
        "missing dataset galaxies/mass (required_datasets)",
        "galaxies/id is not numeric (|S1); finite_datasets needs numbers",
    ]
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    assert check_hdf5(text, RULES)[0].startswith("not a readable HDF5 file")


def test_nonfinite_values_in_blocks_2d_and_compound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mass = np.ones(100)
    mass[[37, 38, 91]] = [np.nan, np.inf, -np.inf]
    path = write_h5(tmp_path / "nan.h5", rows=100, mass=mass)
    expected = ["galaxies/mass holds NaN/inf values in 3 rows (first at row 37)"]
    assert check_hdf5(path, RULES) == expected
    monkeypatch.setattr(qa_checks, "BLOCK_BYTES", 64)  # many small reads: rows still counted right
    assert check_hdf5(path, RULES) == expected
    grid = np.zeros((50, 3))
    grid[44, 2] = np.nan
    compound = np.zeros(20, dtype=[("m", "f4"), ("n", "i4")])
    compound["m"][5] = np.inf
    path = write_h5(tmp_path / "shapes.h5", rows=50, x=grid, mass=compound)
    assert check_hdf5(path, RULES) == [
        "galaxies/x holds NaN/inf values in 1 rows (first at row 44)",
        "galaxies/mass holds NaN/inf values in 1 rows (first at row 5)",
    ]


def test_hdf5_worker_process(tmp_path: Path) -> None:
    good = write_h5(tmp_path / "good.h5")
    few = write_h5(tmp_path / "few.h5", rows=1)
    request = {"rules": asdict(RULES), "paths": [[0, str(good)], [1, str(few)]]}
    done = subprocess.run(
        [sys.executable, "-m", "campaigns.qa.pool"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer["0"][0] == [] and answer["1"][0][0].startswith("galaxies/x has 1 rows")


# -- plots and export ---------------------------------------------------------------------


def test_plots_of_a_campaign_that_has_not_run(tmp_path: Path) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN.format(n=2, max_retries=1))
    assert cli("init", str(config), "--root", str(tmp_path))[0] == 0
    with manager(config, tmp_path) as m:
        paths = summary_plots(m)
        report = run_qa(m)
    assert [p.name for p in paths] == list(FILES)
    assert all(p.stat().st_size > 5000 for p in paths)
    assert report.ok and report.checked == 0 and report.not_checked == {"pending": 4}


def test_export_csv(campaign: tuple[Path, Path], tmp_path: Path) -> None:
    config, root = campaign
    with manager(config, root) as m:
        written = export_jobs(m.store, tmp_path / "out" / "jobs.csv")
    frame = pd.read_csv(written.path)
    assert written.rows == len(frame) == 6
    assert list(frame.columns) == [
        "key",
        "uid",
        "realization",
        "redshift",
        "state",
        "attempts",
        "failure_class",
        "exit_code",
        "error",
        "started_at",
        "ended_at",
        "runtime_seconds",
        "output",
        "scheduler_id",
    ]
    assert frame["realization"].dtype == np.int64 and frame["redshift"].dtype == np.float64
    assert frame["realization"].tolist() == [0, 0, 1, 1, 2, 2]
    assert (frame["state"] == "completed").all() and (frame["runtime_seconds"] >= 0).all()
    assert frame["output"][0] == "r0000/mock_z1.000.hdf5"
    assert pd.to_datetime(frame["ended_at"], utc=True, format="ISO8601").notna().all()


def test_export_refuses_unknown_formats(
    campaign: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow is in the test extra: both the Parquet file and the advice without it are tested.
    config, root = campaign
    with manager(config, root) as m:
        with pytest.raises(InputError, match=r"\.csv or \.parquet"):
            export_jobs(m.store, tmp_path / "jobs.xlsx")
        written = export_jobs(m.store, tmp_path / "jobs.parquet")
        assert pd.read_parquet(written.path)["realization"].dtype == np.int64
        monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
        with pytest.raises(InputError, match="pip install pyarrow"):
            export_jobs(m.store, tmp_path / "again.parquet")
    assert not (tmp_path / "jobs.xlsx").exists() and not (tmp_path / "again.parquet").exists()
