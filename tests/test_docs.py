"""The docs build cleanly, list every key the validator accepts, and their commands work."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli import main
from campaigns.cli.reference import config_reference_rst, walk
from campaigns.core.config import load_schema

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def schema_property_names(node: Any) -> Iterator[str]:
    """Every name under any `properties` in the schema, found by a plain recursive scan."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "properties" and isinstance(value, Mapping):
                yield from value
            yield from schema_property_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from schema_property_names(item)


def test_configuration_reference_lists_every_key_the_validator_accepts() -> None:
    schema = load_schema()
    text = config_reference_rst(schema)
    documented = {
        path.split(".")[-1].removesuffix("[]")
        for path in re.findall(r"^``([^`]+)``$", text, re.MULTILINE)
    }
    missing = set(schema_property_names(schema)) - documented
    assert not missing, f"keys the schema accepts but the reference omits: {sorted(missing)}"
    assert all(k.description for k in walk(schema)), [
        k.path for k in walk(schema) if not k.description
    ]
    # A few full paths, as users write them.
    for path in (
        "execution.retry_policy.permanent_exit_codes",
        "parameters.<name>.zip",
        "overrides[].match",
        "job_types.<name>.cpus_per_task",
        "outputs.naming_scheme",
    ):
        assert f"``{path}``" in text, path


def test_sphinx_build_is_clean(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reference = (tmp_path / "html" / "generated" / "configuration_reference.html").read_text()
    assert "execution.batch_size" in reference
    assert "retry" in (tmp_path / "html" / "generated" / "cli_reference.html").read_text()


def documented_commands(page: str, section: str) -> list[list[str]]:
    """The `run-campaign ...` lines of the bash block under `section` in a docs page."""
    text = (DOCS / page).read_text()
    body = text.split(section, 1)[1]
    block = body.split(".. code-block:: bash", 1)[1].split("\n\n", 2)[1]
    commands = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("run-campaign"):
            commands.append(shlex.split(line)[1:])
    return commands


def test_getting_started_commands_work_verbatim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 'same steps by hand' of Getting started, run from a copy of the repository's config."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    monkeypatch.chdir(tmp_path)
    commands = documented_commands("getting_started.rst", "The same steps by hand")
    assert [c[0] for c in commands] == ["validate", "init", "submit", "monitor"]
    for argv in commands:
        if argv[0] == "monitor":
            argv = [*argv, "--interval", "0.5"]
        assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    deadline = time.monotonic() + 120
    while True:
        assert main(["status", "config/examples/test_campaign.yaml", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        if report["counts"]["completed"] == 30 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert report["counts"]["completed"] == 30
    assert (
        tmp_path
        / "campaigns"
        / "v0.1_mock-catalog-test"
        / "catalogs"
        / "r0000"
        / "mock_z1.000.hdf5"
    ).is_file()
