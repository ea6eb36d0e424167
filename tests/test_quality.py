"""The code stays lint-clean (ruff) and type-clean (mypy --strict, configured in pyproject)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "tool, args",
    [
        ("ruff", ["check", "src", "tests", "benchmarks"]),
        ("mypy", []),
    ],
)
def test_tool_is_clean(tool: str, args: list[str]) -> None:
    executable = shutil.which(tool, path=str(Path(sys.executable).parent))
    assert executable, f"{tool} is not installed: pip install -e '.[test]'"
    result = subprocess.run(
        [executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
