"""The suite's own gates: where every test must run (CI), a skipped test fails the session,
and whatever a test would skip without is in the `test` extra."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SKIPPING = """\
import pytest


def test_needs_a_frobnicator():
    pytest.skip("no frobnicator here")


def test_runs():
    pass
"""


def run_suite(folder: Path, require_all: str) -> subprocess.CompletedProcess[str]:
    """pytest on `folder` with this suite's conftest, as CI would run it."""
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("CAMPAIGNS_")}
    env.update(PYTHONPATH=str(TESTS), CAMPAIGNS_REQUIRE_ALL=require_all)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*argv, str(folder)], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_skipped_test_fails_the_session_where_every_test_must_run(tmp_path: Path) -> None:
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    required = run_suite(tmp_path, "1")
    assert required.returncode == 1, required.stdout
    assert "1 tests were skipped where none may be" in required.stdout
    assert "test_skips.py::test_needs_a_frobnicator: Skipped: no frobnicator here" in (
        required.stdout
    )
    assert run_suite(tmp_path, "0").returncode == 0  # a developer's machine may lack things


def test_what_tests_would_skip_without_is_in_the_test_extra() -> None:
    text = "\n".join(p.read_text() for p in TESTS.glob("*.py"))
    wanted = set(re.findall(r"importorskip\(\s*\"([\w.]+)\"", text)) | {"pyarrow"}
    assert wanted >= {"sphinx", "starlette", "httpx", "uvicorn", "mpi4py"}, wanted
    extra = set()
    for requirement in metadata.requires("campaigns") or []:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if re.search(r"extra\s*==\s*\"(test|web)\"", requirement):  # test pulls in web
            extra.add(name)
    assert wanted - extra == set(), f"not in the test extra of pyproject.toml: {wanted - extra}"
