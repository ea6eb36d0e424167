"""The filesystem under a campaign database or lock file: what it allows, and why it
refused a write.

`sharing_of(path)` reads the mount table (`/proc/self/mountinfo`) and lets
`core.filesystems` decide; CAMPAIGNS_FILESYSTEM gives the answer instead (`local`,
`shared`, or `TYPE[,OPTION...]`, e.g. `lustre,localflock`) for sites the table misleads
and for tests. `trouble(folder)` says why files cannot be written in a folder (full,
over quota, read-only, not allowed) by trying a small write there: it is called only
after something failed, so the real cause can be named instead of a guess.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from campaigns.core.filesystems import Sharing, forced, mount_of, parse_mountinfo, sharing

#: The environment variable that overrides the detection.
ENV = "CAMPAIGNS_FILESYSTEM"
MOUNTINFO = Path("/proc/self/mountinfo")

#: Write failures that are the filesystem's, not the database's, by errno.
_CAUSES = {
    errno.ENOSPC: "the filesystem holding {folder} is full (no space left on device)",
    errno.EDQUOT: "your disk quota on the filesystem holding {folder} is used up",
    errno.EROFS: "the filesystem holding {folder} is mounted read-only",
    errno.EACCES: "you may not write in {folder} (permission denied)",
    errno.EPERM: "you may not write in {folder} (operation not permitted)",
}
#: What `flock`/`lockf` say on a filesystem that keeps no locks.
NO_LOCKS = frozenset({errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL})


def sharing_of(path: Path) -> Sharing:
    """What the filesystem holding `path` (existing or not) allows; CAMPAIGNS_FILESYSTEM
    first."""
    answer = forced(os.environ.get(ENV, ""))
    if answer is not None:
        return answer
    try:
        table = MOUNTINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:  # no /proc (macOS): a local disk, as before
        return sharing(None)
    return sharing(mount_of(os.path.realpath(path), parse_mountinfo(table)))


def cause(code: int | None, folder: Path) -> str | None:
    """The phrase for a write that failed with `code` in `folder`, if the filesystem is to
    blame."""
    text = _CAUSES.get(code or 0)
    return text.format(folder=folder) if text else None


def trouble(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (full, quota, read-only, permission), or None
    when a small write there works (or the folder is missing: not the disk's fault)."""
    try:
        flags = os.statvfs(folder).f_flag
    except OSError:
        return None
    if flags & os.ST_RDONLY:
        return cause(errno.EROFS, folder)
    probe = folder / f".campaigns-probe-{os.getpid()}"
    try:
        handle = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:  # a block, synced: quota and space are often only checked when data lands
            os.write(handle, b"\0" * 4096)
            os.fsync(handle)
        finally:
            os.close(handle)
    except OSError as exc:
        return cause(exc.errno, folder)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return None


def advice(problem: str) -> str:
    """What to do about a write the filesystem refused."""
    if "read-only" in problem or "may not write" in problem:
        fix = "Run the command where the campaign is writable (or remount it read-write)"
    else:
        fix = "Free some space there (or raise the quota), then run the command again"
    return (
        f"{fix}. Nothing was changed; commands that only read (status, the dashboard) keep "
        "working while the database can be read."
    )
