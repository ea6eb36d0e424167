"""A campaign whose filesystem is full, or read-only: the error names that cause (not a
missing server), nothing is changed, and the commands that only read keep working.

Real filesystems, mounted for the test (root: `mount -t tmpfs -o size=2m`, a read-only
bind mount), unmounted in teardown."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.store import Store
from campaigns.store.filesystem import cause, trouble
from test_cli_local import run, status_json, write_campaign

SLUG = "t1_local-e2e"


def mount(*args: str) -> None:
    """`mount ARGS`, or skip the test where this process may not mount."""
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (root needed): {done.stderr.strip()}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted afterwards (with whatever a test mounted on top of it)."""
    point = tmp_path / "fs"
    point.mkdir()
    mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point))
    mounted = [point]
    yield point
    for extra in sorted(tmp_path.glob("ro*")):
        subprocess.run(["umount", "-l", str(extra)], capture_output=True)
    for each in mounted:
        subprocess.run(["umount", "-l", str(each)], check=True)


def fill(folder: Path) -> None:
    """Write until the filesystem is full."""
    try:
        with open(folder / "filler", "wb") as out:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC


def test_a_full_disk_is_named_and_reading_still_works(
    small_fs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_campaign(tmp_path)
    args = [str(config), "--root", str(small_fs)]
    assert run(["init", *args], capsys)[0] == 0
    db = small_fs / SLUG / "metadata" / "campaign.db"
    fill(small_fs)
    before = db.read_bytes()
    code, _, err = run(["submit", *args, "--backend", "local"], capsys)
    assert code == 1 and "is full (no space left on device)" in err, err
    assert "server" not in err and "Traceback" not in err and "Free some space" in err
    assert db.read_bytes() == before  # nothing changed
    report = status_json(config, small_fs, capsys)  # the commands that only read still work
    assert report["counts"]["pending"] == 6
    assert run(["monitor", *args, "--once"], capsys)[0] == 0  # a tick with nothing to write
    dashboard = Store(f"sqlite:///{db}", slug=SLUG, read_only=True)
    assert dashboard.counts()["pending"] == 6
    dashboard.close()
    assert trouble(db.parent) is not None
    (small_fs / "filler").unlink()  # space again: the campaign carries on
    assert trouble(db.parent) is None
    assert run(["submit", *args, "--backend", "local"], capsys)[0] == 0


def test_a_read_only_filesystem_is_named_and_reading_still_works(
    small_fs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_campaign(tmp_path)
    assert run(["init", str(config), "--root", str(small_fs)], capsys)[0] == 0
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mount("--bind", "-o", "ro", str(small_fs), str(read_only))
    args = [str(config), "--root", str(read_only)]
    code, _, err = run(["submit", *args, "--backend", "local"], capsys)
    assert code == 1 and "is mounted read-only" in err and "server" not in err, err
    assert status_json(config, read_only, capsys)["counts"]["pending"] == 6
    db = read_only / SLUG / "metadata" / "campaign.db"
    code, _, err = run(["retry", *args, "--reset", "--submit", "--backend", "local"], capsys)
    assert code == 1 and "read-only" in err, err
    dashboard = Store(f"sqlite:///{db}", slug=SLUG, read_only=True)
    assert dashboard.counts()["pending"] == 6
    dashboard.close()


def test_an_exceeded_quota_is_named() -> None:
    """The errno a quota gives (EDQUOT), as Lustre and NFS report it at write or close."""
    text = cause(errno.EDQUOT, Path("/pscratch/sd/m/me"))
    assert text == "your disk quota on the filesystem holding /pscratch/sd/m/me is used up"
    assert cause(errno.EIO, Path("/x")) is None  # not the filesystem's refusal
