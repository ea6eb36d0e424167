"""Incremental QA: only new or changed outputs are opened; the rest keep their stored result."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.core.spec import QARules
from campaigns.ops.qa import run_qa
from campaigns.qa import checks as qa_checks
from test_qa import CAMPAIGN, cli, manager, run_to_end


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The HDF5 files QA opens in this process (checks run with processes=0)."""
    paths: list[str] = []
    real = qa_checks._open_hdf5

    def counting(path: Path) -> Any:
        paths.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(qa_checks, "_open_hdf5", counting)
    yield paths


def half_run(folder: Path) -> tuple[Path, Path]:
    """A 6-job campaign with only 4 jobs run so far; (config, root)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "campaign.yaml"
    config.write_text(CAMPAIGN.format(n=3, max_retries=1))
    root = folder / "runs"
    args = [str(config), "--root", str(root)]
    assert cli("init", *args)[0] == 0
    assert cli("submit", *args, "--backend", "local", "--limit", "4")[0] == 0
    assert run_to_end(config, root)["counts"]["completed"] == 4
    return config, root


def test_only_new_and_changed_outputs_are_opened(tmp_path: Path, opened: list[str]) -> None:
    config, root = half_run(tmp_path)
    with manager(config, root) as m:
        first = run_qa(m, plots=False, processes=0)
        assert first.ok and first.checked == 4 and first.opened == 4 and len(opened) == 4
        stored = m.store.qa_results()
        assert len(stored) == 4 and all(r["ok"] and r["problems"] == [] for r in stored.values())

        opened.clear()
        again = run_qa(m, plots=False, processes=0)
        assert again.opened == 0 and opened == []  # nothing new: no file opened
        assert again.checked == 4 and again.passed == 4
        assert again.results is not None and first.results is not None
        columns = ["key", "uid", "output", "attempt", "ok", "problems", "size", "sha256"]
        assert again.results[columns].equals(first.results[columns])

    # Two more jobs finish: only their outputs are opened.
    assert cli("submit", str(config), "--root", str(root), "--backend", "local")[0] == 0
    assert run_to_end(config, root)["counts"]["completed"] == 6
    with manager(config, root) as m:
        opened.clear()
        report = run_qa(m, plots=False, processes=0)
        assert report.checked == 6 and report.opened == 2 and len(opened) == 2
        new = {Path(j["output"]).name for j in m.store.jobs(columns=["output"])[4:]}
        assert set(opened) <= new

        # A modified output (same size, other bytes) is checked again, and found wrong.
        job = m.store.jobs(columns=["id", "key", "output"])[0]
        path = m.layout.output(job["output"])
        size = path.stat().st_size
        with open(path, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(b"\x00\xff" * 32)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
        opened.clear()
        report = run_qa(m, plots=False, processes=0)
        assert report.opened == 1 and [k for k, _ in report.invalid] == [job["key"]]
        assert m.store.qa_results()[job["id"]]["ok"] is False
        # Unchanged since: the stored verdict stands without opening the file.
        opened.clear()
        report = run_qa(m, plots=False, processes=0)
        assert (
            report.opened == 0 and opened == [] and [k for k, _ in report.invalid] == [job["key"]]
        )
        assert any(p.startswith("checksum mismatch") for p in dict(report.invalid)[job["key"]])


def test_a_changed_manifest_rules_or_full_rechecks(tmp_path: Path, opened: list[str]) -> None:
    config, root = half_run(tmp_path)
    with manager(config, root) as m:
        run_qa(m, plots=False, processes=0)
        # A rewritten manifest: that job's output is checked again.
        job = m.store.jobs(states=["completed"], columns=["id"])[1]
        manifest = Path(m.store.attempts([job["id"]])[-1]["manifest_path"])
        data = json.loads(manifest.read_text())
        data["outputs"][0]["sha256"] = "0" * 64
        manifest.write_text(json.dumps(data))
        report = run_qa(m, plots=False, processes=0)
        assert report.opened == 1 and len(report.invalid) == 1
        assert dict(report.invalid)[report.invalid[0][0]][0].startswith("checksum mismatch")

        # Another rule set: every output is checked again, under the new rules.
        m.spec = dataclasses.replace(
            m.spec, qa=QARules(required_datasets=("galaxies/x",), min_rows=10**9)
        )
        opened.clear()
        report = run_qa(m, plots=False, processes=0)
        assert report.opened == 4 and len(opened) == 4
        assert len(report.invalid) == 4
        opened.clear()
        assert run_qa(m, plots=False, processes=0).opened == 0 and opened == []

    # --full opens every output whatever was stored.
    code, out = cli("qa", str(config), "--root", str(root), "--full", "--json")
    assert code == 3
    summary = json.loads(out)["summary"]
    assert summary["opened"] == summary["checked"] == 4 and summary["invalid"] == 1
    code, out = cli("qa", str(config), "--root", str(root), "--json")
    assert json.loads(out)["summary"]["opened"] == 0
