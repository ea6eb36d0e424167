"""SQLite on a filesystem other hosts mount (Lustre, NFS, GPFS): detected from the mount
table, a rollback journal and a POSIX lock there, a WAL database switched safely, and a
refusal with the fix where no lock reaches other hosts."""

from __future__ import annotations

import errno
import fcntl
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.core.filesystems import Mount, forced, mount_of, parse_mountinfo, sharing
from campaigns.errors import InputError, LockedError
from campaigns.ops.lock import CampaignLock
from campaigns.store import sqlite as store_sqlite
from campaigns.store.filesystem import ENV, sharing_of
from test_cli_local import run, status_json, write_campaign

#: A login node's mount table (fields as the kernel writes them; some options trimmed),
#: with one line that is no mount.
MOUNTINFO = (Path(__file__).parent / "fixtures" / "mountinfo_login_node.txt").read_text()
MOUNTS = parse_mountinfo(MOUNTINFO)


@pytest.mark.parametrize(
    "path, fstype, journal, lock, problem",
    [
        ("/pscratch/sd/m/me/campaigns/v1_x/metadata", "lustre", "delete", "posix", ""),
        ("/pscratch", "lustre", "delete", "posix", ""),
        ("/pscratch2/x", "lustre", "delete", None, "localflock"),
        ("/lus/old/x", "lustre", "delete", None, "without flock"),
        ("/global/cfs/cdirs/m1234/c", "gpfs", "delete", "posix", ""),
        ("/global/homes/m/me", "nfs4", "delete", "posix", ""),
        ("/data/old/x", "nfs", "delete", None, "nolock"),
        ("/mnt/my drive/c", "ext4", "wal", "flock", ""),
        ("/home/me/remote/c", "fuse.sshfs", "delete", "posix", ""),
        ("/scratch/x", "beegfs", "delete", "posix", ""),
        ("/tmp/x", "tmpfs", "wal", "flock", ""),
        ("/home/me/c", "ext4", "wal", "flock", ""),
        ("/pscratch/sd/m/me/stack/c", "nfs4", "delete", None, "local_lock=posix"),
    ],
)
def test_the_mount_table_decides_journal_and_lock(
    path: str, fstype: str, journal: str, lock: str | None, problem: str
) -> None:
    mount = mount_of(path, MOUNTS)
    assert mount is not None and mount.fstype == fstype
    decided = sharing(mount)
    assert (decided.journal_mode, decided.lock) == (journal, lock)
    assert problem in decided.problem and bool(problem) == bool(decided.problem)


def test_a_mount_point_is_matched_as_a_whole_path() -> None:
    assert mount_of("/pscratch2/x", MOUNTS).point == "/pscratch2"  # not /pscratch
    assert mount_of("/pscratchy", MOUNTS).point == "/"
    assert len(MOUNTS) == 13  # the line that is no mount is skipped


def test_unknown_and_missing_tables() -> None:
    assert sharing(Mount("/x", "someclusterfs", frozenset())).shared  # the safe side
    assert not sharing(None).shared  # no mount table at all (macOS): a local disk
    assert mount_of("/x", []) is None


@pytest.mark.parametrize(
    "value, shared, lock",
    [
        ("local", False, "flock"),
        ("shared", True, "posix"),
        (" NFS4 ", True, "posix"),
        ("lustre,flock", True, "posix"),
        ("lustre,localflock", True, None),
        ("ext4", False, "flock"),
    ],
)
def test_the_environment_can_give_the_answer(value: str, shared: bool, lock: str | None) -> None:
    answer = forced(value)
    assert answer is not None and (answer.shared, answer.lock) == (shared, lock)


def test_auto_or_nothing_means_detect() -> None:
    assert forced("") is None and forced("auto") is None


def test_detection_reads_this_hosts_mount_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real tmpfs mounted for the test is found as such (root: `mount -t tmpfs`)."""
    monkeypatch.delenv(ENV, raising=False)
    point = tmp_path / "mnt"
    point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        found = sharing_of(point / "not" / "yet" / "made")
        assert (found.fstype, found.journal_mode, found.lock) == ("tmpfs", "wal", "flock")
        monkeypatch.setenv(ENV, "lustre,flock")
        assert sharing_of(point).journal_mode == "delete"
    finally:
        subprocess.run(["umount", "-l", str(point)], check=True)


def journal_mode(db: Path) -> str:
    """The database's journal mode, as a new connection finds it."""
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def locked_by_another_process(path: Path, how: str) -> bool:
    """True when another process cannot take `how` (lockf or flock) on `path` now."""
    code = (
        "import fcntl, sys\n"
        f"f = open({str(path)!r}, 'a+')\n"
        f"try:\n    fcntl.{how}(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError:\n    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code]).returncode == 3


HOLD_LOCK = """
import sys, time
from campaigns.ops.context import Context
ctx = Context(sys.argv[1], root=sys.argv[2])
with ctx.manager_lock():
    print("held", flush=True)
    time.sleep(60)
"""


def test_on_a_shared_filesystem_a_rollback_journal_and_a_posix_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "lustre,flock")
    config = write_campaign(tmp_path)
    args = [str(config), "--root", str(tmp_path)]
    assert run(["init", *args], capsys)[0] == 0
    metadata = tmp_path / "t1_local-e2e" / "metadata"
    assert journal_mode(metadata / "campaign.db") == "delete"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, *args[::2]],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock_file = metadata / "manager.lock"
        assert locked_by_another_process(lock_file, "lockf")  # the lock SQLite itself uses
        assert not locked_by_another_process(lock_file, "flock")
        code, _, err = run(["submit", *args, "--backend", "local"], capsys)
        assert code == 1 and "another campaigns manager" in err and f'"pid": {holder.pid}' in err
    finally:
        holder.kill()
        holder.wait()
    assert run(["submit", *args, "--backend", "local"], capsys)[0] == 0
    assert status_json(config, tmp_path, capsys)["total"] == 6
    assert not (metadata / "campaign.db-wal").exists()
    assert journal_mode(metadata / "campaign.db") == "delete"


HOLD_OPEN = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT count(*) FROM jobs").fetchone()
print("open", flush=True)
sys.stdin.readline()
"""


def test_a_wal_database_moved_onto_a_shared_filesystem_is_switched_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    config = write_campaign(tmp_path)
    args = [str(config), "--root", str(tmp_path)]
    assert run(["init", *args], capsys)[0] == 0
    db = tmp_path / "t1_local-e2e" / "metadata" / "campaign.db"
    assert journal_mode(db) == "wal"  # made on a local disk
    monkeypatch.setenv(ENV, "nfs4")  # ...then found on a shared one
    monkeypatch.setattr(store_sqlite, "SWITCH_SECONDS", 1.0)
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        code, _, err = run(["status", *args], capsys)
        assert code == 1 and "WAL mode" in err and "another process has it open" in err, err
    finally:
        reader.communicate("\n", timeout=30)
    assert journal_mode(db) == "wal"  # refused: untouched
    report = status_json(config, tmp_path, capsys)
    assert report["counts"]["pending"] == 6
    assert journal_mode(db) == "delete" and not Path(f"{db}-wal").exists()


def test_where_no_lock_reaches_other_hosts_sqlite_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_campaign(tmp_path)
    args = [str(config), "--root", str(tmp_path)]
    monkeypatch.setenv(ENV, "lustre,localflock")
    code, _, err = run(["init", *args], capsys)
    assert code == 2 and "localflock" in err and "PostgreSQL" in err and "local disk" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "t1_local-e2e").exists()  # nothing created
    monkeypatch.delenv(ENV)
    assert run(["init", *args], capsys)[0] == 0
    db = tmp_path / "t1_local-e2e" / "metadata" / "campaign.db"
    before = db.read_bytes()
    monkeypatch.setenv(ENV, "nfs,nolock")
    code, _, err = run(["submit", *args, "--backend", "local"], capsys)
    assert code == 2 and "nolock" in err and "CAMPAIGNS_FILESYSTEM=local" in err, err
    assert db.read_bytes() == before
    assert status_json(config, tmp_path, capsys)["counts"]["pending"] == 6  # reading works


def _refuse(*args: object) -> None:
    raise OSError(errno.ENOSYS, "Function not implemented")


def test_a_filesystem_whose_flock_fails_falls_back_to_posix_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lustre mounted without flock, some FUSE mounts: `flock` says ENOSYS."""
    monkeypatch.setattr(fcntl, "flock", _refuse)
    lock_file = tmp_path / "manager.lock"
    with CampaignLock(lock_file, sharing=forced("local")):
        assert locked_by_another_process(lock_file, "lockf")
    assert not locked_by_another_process(lock_file, "lockf")


def test_a_filesystem_that_takes_no_locks_at_all_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fcntl, "flock", _refuse)
    monkeypatch.setattr(fcntl, "lockf", _refuse)
    lock = CampaignLock(tmp_path / "manager.lock", sharing=forced("lustre,flock"))
    with pytest.raises(InputError, match=r"refusing file locks \(ENOSYS\)") as info, lock:
        pass
    assert "PostgreSQL" in str(info.value)


def test_a_posix_lock_is_not_granted_twice_in_one_process(tmp_path: Path) -> None:
    """POSIX locks belong to the process: a second one would be granted, and its release
    would drop the first. The lock refuses it, as an flock would."""
    lock_file = tmp_path / "manager.lock"
    shared = forced("shared")
    with CampaignLock(lock_file, sharing=shared):
        with (
            pytest.raises(LockedError, match="another campaigns manager"),
            CampaignLock(lock_file, sharing=shared),
        ):
            pass
        assert locked_by_another_process(lock_file, "lockf")
