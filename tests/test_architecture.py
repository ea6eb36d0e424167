"""The shape of the code, checked: layers and their contracts, module size, one backend
registry, one gate for state changes, one parse of the configuration per command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from campaigns.cli import main
from campaigns.core import config as config_module
from campaigns.core.states import TRANSITIONS, JobState, can_transition
from campaigns.errors import IllegalTransitionError
from campaigns.scheduler import registry
from campaigns.store import Store
from campaigns.store.schema import jobs_table
from campaigns.store.transitions import transition
from fake_scheduler import SharedFake
from test_ops_submit import CAMPAIGN

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "src" / "campaigns"
MAX_LINES = 450
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_import_contracts_hold() -> None:
    """import-linter checks the layers, the pure core and the one-owner libraries."""
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert tool, "import-linter is not installed: pip install -e '.[test]'"
    done = subprocess.run([tool], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout or "broken" not in done.stdout.split("Contracts:")[-1]


def test_every_layer_is_a_folder() -> None:
    folders = {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"core", "store", "scheduler", "node", "ops", "qa", "cli"} <= folders
    loose = sorted(p.name for p in SOURCE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "errors.py"], loose


def source_files() -> Iterator[Path]:
    yield from sorted(SOURCE.rglob("*.py"))


@pytest.mark.parametrize("path", list(source_files()), ids=lambda p: str(p.relative_to(SOURCE)))
def test_no_module_is_too_long(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it"


# -- one backend registry -------------------------------------------------------------------


def test_a_new_backend_is_one_class_and_one_registration(
    fake_backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN.replace("execution:", "execution:\n  backend: fake"))
    args = ["--root", str(tmp_path)]
    assert main(["init", str(config), *args]) == 0
    assert main(["submit", str(config), *args, "--backend", "fake", "--json"]) == 0
    capsys.readouterr()
    assert SharedFake.instance is not None
    SharedFake.instance.run()
    assert main(["monitor", str(config), *args, "--once", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["completed"] == 6 and report["backend"] == "fake"
    assert (tmp_path / "f1_fake" / "catalogs" / "r5.txt").read_text() == "5\n"
    # The CLI's choices come from the registry too.
    assert main(["submit", "--help"]) == 0
    assert "fake" in capsys.readouterr().out


def test_unknown_backends_are_refused_with_the_registered_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN.replace("execution:", "execution:\n  backend: pbs"))
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "execution.backend" in err and "'auto', 'slurm', 'local'" in err and "line 8" in err


def test_auto_picks_the_backend_with_the_highest_affinity(monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert registry.resolve("auto") == "local"
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    assert registry.resolve("auto") == "slurm"


# -- one gate for state changes ---------------------------------------------------------------

ILLEGAL = [(old, new) for old in JobState for new in JobState if not can_transition(old, new)]


def test_the_table_has_illegal_moves_to_test() -> None:
    assert len(ILLEGAL) == 36 - 6 - sum(len(v) for v in TRANSITIONS.values())
    assert (JobState.COMPLETED, JobState.RUNNING) in ILLEGAL


@pytest.mark.parametrize("old, new", ILLEGAL, ids=lambda s: s.value)
def test_an_illegal_transition_raises_and_writes_nothing(
    tmp_path: Path, old: JobState, new: JobState
) -> None:
    store = Store(f"sqlite:///{tmp_path}/c.db")
    store.create(
        {
            "name": "x",
            "version": "1",
            "slug": "1_x",
            "config_hash": "h",
            "config": "{}",
            "source": "-",
        },
        [{"id": 0, "resources": "{}", "max_retries": 1}],
        [
            {
                "id": 1,
                "key": "k=1",
                "uid": "u1",
                "params": "{}",
                "output": "o",
                "group_id": 0,
                "state": old.value,
                "attempts": 0,
            }
        ],
        T0,
    )
    refused = pytest.raises(IllegalTransitionError, match=f"from {old.value} to {new.value}")
    with refused, store.transaction() as conn:
        transition(conn, [{"id": 1, "error": "x"}], campaign=store.cid, new=new, now=T0)
    with store.reading() as conn:
        row = conn.execute(sa.select(jobs_table.c.state, jobs_table.c.error)).one()
    assert tuple(row) == (old.value, None)
    store.close()


# -- one parse per command ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["validate"],
        ["init"],
        ["status", "--json"],
        ["estimate", "--json"],
        ["submit", "--dry-run", "--json"],
        ["retry", "--dry-run", "--json"],
    ],
    ids=lambda c: c[0],
)
def test_the_files_are_parsed_once_per_command(
    command: list[str], tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    args = ["--root", str(tmp_path)]
    if command[0] != "init":
        assert main(["init", str(config), *args]) == 0
    parsed: list[str] = []
    hashed: list[int] = []
    real_parse, real_hash = config_module.parse, config_module.config_hash

    def counting_parse(text: str, path: str, what: str = "campaign file"):  # type: ignore[no-untyped-def]
        parsed.append(Path(path).name)
        return real_parse(text, path, what)

    def counting_hash(merged):  # type: ignore[no-untyped-def]
        hashed.append(1)
        return real_hash(merged)

    monkeypatch.setattr(config_module, "parse", counting_parse)
    monkeypatch.setattr(config_module, "config_hash", counting_hash)
    assert main([command[0], str(config), *args, *command[1:]]) == 0, capsys.readouterr().err
    assert parsed == ["campaign.yaml", "local.yaml"]
    assert hashed == [1]
