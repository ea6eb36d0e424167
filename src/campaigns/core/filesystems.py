"""Which filesystem a path lives on, and what that allows an SQLite campaign database.

Pure: the text of the mount table (`/proc/self/mountinfo`) and a resolved path go in, a
`Sharing` comes out; `store.filesystem` does the reading. The decision:

- a local disk (ext4, xfs, tmpfs, ...): SQLite in WAL mode, the manager lock an `flock`.
  WAL keeps its index in shared memory, which only processes on one host share.
- a filesystem other hosts mount too (Lustre, NFS, GPFS, CephFS, CIFS, a FUSE mount,
  any type not known to be local): SQLite with a rollback journal (`DELETE`), the
  manager lock a POSIX (`fcntl`) lock, the kind of lock SQLite itself takes, which
  these filesystems carry between hosts.
- such a filesystem mounted so that locks stay on one host or fail (Lustre without
  `flock`, NFS with `nolock` or `local_lock=posix|all`): no lock can keep a manager on
  another host out, so `lock` is None and the caller refuses, naming the fix.

`forced` reads the answer a site or a test gives instead (CAMPAIGNS_FILESYSTEM): `local`,
`shared`, or a filesystem type with its mount options, e.g. `lustre,localflock`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

#: Types whose files only this host reaches.
LOCAL_TYPES = frozenset(
    re.findall(
        r"\S+",
        "ext2 ext3 ext4 xfs btrfs zfs bcachefs f2fs jfs reiserfs nilfs2 tmpfs ramfs overlay "
        "squashfs erofs iso9660 vfat exfat msdos ntfs ntfs3 fuseblk hfsplus apfs ufs "
        "devtmpfs ecryptfs",
    )
)
#: Types other hosts mount too (any other type is treated the same way: the safe side).
SHARED_TYPES = frozenset(
    re.findall(
        r"\S+",
        "lustre nfs nfs4 gpfs cifs smb3 smbfs ceph beegfs 9p glusterfs panfs afs dvs wekafs "
        "ocfs2 gfs2 orangefs pvfs2 quobyte davfs",
    )
)
Lock = Literal["flock", "posix"]


@dataclass(frozen=True)
class Mount:
    """One line of the mount table: where, what type, which options (mount and super)."""

    point: str
    fstype: str
    options: frozenset[str]


@dataclass(frozen=True)
class Sharing:
    """What a filesystem allows: may other hosts reach it, which journal, which lock."""

    fstype: str
    shared: bool
    lock: Lock | None  # None: no lock here is seen by other hosts (refuse)
    problem: str = ""  # why `lock` is None: "mounted with ..., whose locks only this host sees"

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode here: WAL needs memory shared on one host."""
        return "delete" if self.shared else "wal"

    def describe(self) -> str:
        """One phrase for messages and `status`."""
        if not self.shared:
            return f"{self.fstype} (local: WAL journal, flock)"
        if self.lock is None:
            return f"{self.fstype} (shared, {self.problem})"
        return f"{self.fstype} (shared: rollback journal, POSIX lock)"


#: A lock that only has to keep out this host's processes (a server database's `init`).
THIS_HOST = Sharing("this host only", shared=False, lock="flock")


def _unescape(field: str) -> str:
    """Mount points escape space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a `/proc/PID/mountinfo` text, in its order (lines it cannot read are
    skipped: a table is never a reason to fail)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            continue
        options = fields[5].split(",") + (tail[2].split(",") if len(tail) > 2 else [])
        mounts.append(Mount(_unescape(fields[4]), tail[0], frozenset(options)))
    return mounts


def mount_of(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount holding the absolute, resolved `path`: the longest mount point above it,
    the last one listed where several are stacked on one point."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = path == point or path.startswith(point + "/") or point == "/"
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def _option(options: Iterable[str], key: str) -> str | None:
    """The value of `key=value` among the options (or "" for a bare `key`), else None."""
    for option in options:
        name, _, value = option.partition("=")
        if name == key:
            return value
    return None


def _lock_problem(fstype: str, options: frozenset[str]) -> str:
    """Why locks on this mount do not reach other hosts, or "" when they should."""
    if fstype == "lustre":
        if "flock" in options:
            return ""
        if "localflock" in options:
            return "mounted with localflock, whose locks only this host sees"
        return "mounted without flock, which refuses file locks"
    if fstype in ("nfs", "nfs4"):
        if "nolock" in options:
            return "mounted with nolock, whose locks only this host sees"
        local = _option(options, "local_lock")
        if local in ("posix", "all"):
            return f"mounted with local_lock={local}, whose locks only this host sees"
        return ""
    return ""


def sharing(mount: Mount | None) -> Sharing:
    """The decision for a mount (None: no mount table, as on macOS: a local disk)."""
    if mount is None:
        return Sharing("unknown", shared=False, lock="flock")
    fstype = mount.fstype
    if fstype in LOCAL_TYPES:
        return Sharing(fstype, shared=False, lock="flock")
    problem = _lock_problem(fstype, mount.options)
    return Sharing(fstype, shared=True, lock=None if problem else "posix", problem=problem)


def forced(value: str) -> Sharing | None:
    """The answer CAMPAIGNS_FILESYSTEM gives: `local`, `shared`, or `TYPE[,OPTION...]`;
    None for `auto` or nothing (detect)."""
    words = [w.strip() for w in value.split(",") if w.strip()]
    if not words or words[0].lower() == "auto":
        return None
    kind = words[0].lower()
    if kind == "local":
        return Sharing("local (CAMPAIGNS_FILESYSTEM)", shared=False, lock="flock")
    if kind == "shared":
        return Sharing("shared (CAMPAIGNS_FILESYSTEM)", shared=True, lock="posix")
    return sharing(Mount("/", kind, frozenset(words[1:])))
