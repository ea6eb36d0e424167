"""One manager at a time per campaign: a lock file beside an SQLite database, a lease row
in a server database.

`CampaignLock` locks metadata/manager.lock (released by the kernel when the holder dies,
so never stale; the file names the holder): an `flock` on a local disk, a POSIX
(`fcntl`) lock on a filesystem other hosts mount (Lustre, NFS, GPFS: the lock SQLite
itself relies on there), as `store.filesystem` decides for the database's filesystem.
Where no lock reaches other hosts (Lustre without `flock`, NFS with `nolock`), or the
filesystem takes no locks at all (ENOSYS, EOPNOTSUPP, ENOLCK), it refuses, naming the
fix: a local path or PostgreSQL.

`CampaignLease` is for a server database shared by login nodes: a row (holder host/pid,
heartbeat, expiry by the database's clock, fencing number) taken in a transaction and
renewed by a heartbeat thread; a holder that died is taken over once its lease expired.
While it is held, every write of the store checks the lease is still ours
(`store.fence`); a heartbeat that fails in any way stops the manager before its next
write, and says so on stderr.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, TypeVar

from campaigns.core.filesystems import Sharing
from campaigns.errors import (
    FilesystemError,
    InputError,
    LeaseLostError,
    LockedError,
    StoreError,
)
from campaigns.store import filesystem

if TYPE_CHECKING:
    from campaigns.store import Store

log = logging.getLogger("campaigns.lease")

#: How long a lease lasts without a heartbeat (seconds); CAMPAIGNS_LEASE_SECONDS overrides.
LEASE_SECONDS = 60.0


_Held = TypeVar("_Held", bound="_Exclusive")


class _Exclusive:
    """Re-entrant: only the outermost `with` takes and gives back."""

    _depth = 0

    def __enter__(self: _Held) -> _Held:
        if not self._depth:
            self._take()
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if not self._depth:
            self._give_back(failed=exc_type is not None)

    def _take(self) -> None:
        raise NotImplementedError

    def _give_back(self, failed: bool) -> None:
        raise NotImplementedError


#: POSIX locks belong to the process, not the open file: a second lock on a file this
#: process holds would be granted, and closing any descriptor of the file (even one opened
#: only to read the holder) drops them. The files this process holds so, with the holder.
_POSIX_HELD: dict[tuple[int, int], str] = {}


class CampaignLock(_Exclusive):
    """Exclusive lock on a campaign; use as a context manager.

    `sharing`: what the database's filesystem allows (default: the lock file's)."""

    def __init__(
        self, path: Path, wait_seconds: float = 0.0, sharing: Sharing | None = None
    ) -> None:
        self.path = path
        self.wait_seconds = wait_seconds
        self.sharing = sharing
        self._fh: IO[bytes] | None = None
        self._posix: tuple[int, int] | None = None

    def check(self) -> Sharing:
        """What the filesystem allows; InputError (before anything is created) where no
        lock would keep a manager on another host out."""
        sharing = self.sharing or filesystem.sharing_of(self.path.parent)
        if sharing.lock is None:
            raise InputError(_unshared(self.path, sharing, sharing.problem))
        return sharing

    def _take(self) -> None:
        sharing = self.check()
        try:
            stat = self.path.stat()
        except OSError:
            pass
        else:  # held by this process: refuse without opening (closing would release it)
            held = _POSIX_HELD.get((stat.st_dev, stat.st_ino))
            if held is not None:
                raise LockedError(busy(held))
        try:
            # Unbuffered: a holder line the full disk refused is not retried at close.
            fh = open(self.path, "a+b", buffering=0)  # noqa: SIM115 -- held until given back
        except OSError as exc:
            raise _unwritable(self.path, exc) from None
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                self._posix = _lock(fh, sharing)
                break
            except (BlockingIOError, PermissionError):
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().decode(errors="replace").strip() or "an unknown process"
                    fh.close()
                    raise LockedError(busy(holder)) from None
                time.sleep(0.2)
            except OSError as exc:
                fh.close()
                if exc.errno in filesystem.NO_LOCKS:
                    raise InputError(_unshared(self.path, sharing, _no_locks(exc))) from None
                raise _unwritable(self.path, exc) from None
        holder = describe_holder()
        try:  # who holds it, for the next one; a full disk must not stop us (nor them)
            fh.seek(0)
            fh.truncate()
            fh.write(holder.encode())
        except OSError:
            pass
        if self._posix is not None:
            _POSIX_HELD[self._posix] = holder
        self._fh = fh

    def _give_back(self, failed: bool) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
        except OSError:
            pass
        if self._posix is not None:
            fcntl.lockf(self._fh, fcntl.LOCK_UN)
            _POSIX_HELD.pop(self._posix, None)
            self._posix = None
        else:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


def _lock(fh: IO[bytes], sharing: Sharing) -> tuple[int, int] | None:
    """Lock `fh` without waiting, as `sharing` says: an flock (None), or a POSIX lock (the
    file's identity); an flock the filesystem refuses falls back to a POSIX lock."""
    if sharing.lock == "flock":
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except OSError as exc:
            if exc.errno not in filesystem.NO_LOCKS:
                raise
    stat = os.fstat(fh.fileno())
    fcntl.lockf(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return (stat.st_dev, stat.st_ino)


def _no_locks(exc: OSError) -> str:
    """Why: the filesystem refused a lock."""
    return f"refusing file locks ({errno.errorcode.get(exc.errno or 0, exc.errno)})"


def _unshared(path: Path, sharing: Sharing, why: str) -> str:
    """The refusal for a campaign lock that would not keep other hosts out."""
    return (
        f"cannot lock {path}: its filesystem ({sharing.fstype}) is {why}, so a manager on "
        "another host could change the campaign's SQLite database at the same time; nothing "
        "was changed. Keep the database where locks work: in PostgreSQL (`--db-url "
        "postgresql+psycopg://...`) or on a local disk (`--db-url sqlite:////local/path.db`, "
        "for a campaign driven from one host); an existing campaign moves there with "
        "`CAMPAIGNS_FILESYSTEM=local run-campaign db copy CONFIG --to URL` while no other "
        "manager works on it. If only this host ever works on the campaign, "
        "CAMPAIGNS_FILESYSTEM=local accepts the risk."
    )


def _unwritable(path: Path, exc: OSError) -> FilesystemError:
    """The error for a lock file we could not open or lock (full, read-only, ...)."""
    problem = filesystem.cause(exc.errno, path.parent) or f"{exc.strerror or exc}"
    return FilesystemError(
        f"cannot take the campaign lock {path}: {problem}. {filesystem.advice(problem)}"
    )


def describe_holder() -> str:
    """Who we are, for the lock file."""
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command,
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )


def busy(holder: str) -> str:
    """The message for a campaign another manager holds."""
    return (
        f"another campaigns manager is working on this campaign: {holder}. Wait for it to "
        "finish (or stop it), then run the command again; `status` works meanwhile."
    )


def _died_here(holder: str | None) -> bool:
    """True when the holder ran on this host and its process is gone (no need to wait)."""
    try:
        facts = json.loads(holder or "")
        if facts.get("host") != socket.gethostname():
            return False
        os.kill(int(facts["pid"]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, TypeError, KeyError, AttributeError, PermissionError):
        return False
    return False


def lease_seconds() -> float:
    """The lease time: CAMPAIGNS_LEASE_SECONDS, else LEASE_SECONDS."""
    text = os.environ.get("CAMPAIGNS_LEASE_SECONDS")
    try:
        value = float(text) if text else LEASE_SECONDS
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InputError(f"CAMPAIGNS_LEASE_SECONDS must be a positive number, not {text!r}.")
    return value


class CampaignLease(_Exclusive):
    """Exclusive lease on a campaign in a server database; use as a context manager."""

    def __init__(self, store: Store, seconds: float | None = None) -> None:
        self.store = store
        self.seconds = seconds or lease_seconds()
        self.token = uuid.uuid4().hex
        #: Why this manager lost its lease while it worked (None while it holds it).
        self.lost: str | None = None
        self.fence: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _take(self) -> None:
        holder = describe_holder()
        lease = self.store.take_lease(self.token, holder, self.seconds)
        if lease["token"] != self.token and _died_here(lease["holder"]):
            lease = self.store.take_lease(self.token, holder, self.seconds, dead=lease["token"])
        if lease["token"] != self.token:
            ends = lease["expires_at"]
            until = f" (its lease runs to {ends:%Y-%m-%d %H:%M:%S} UTC)" if ends else ""
            raise LockedError(busy(f"{lease['holder']}{until}"))
        self.lost = None
        self.fence = lease["fence"]
        self.store.fence_with(lease)  # from now on every write checks the lease is ours
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="campaign-lease", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        """Renew the lease every third of its time until released; any failure stops the
        manager's writes (a database error only once no later beat could save the lease)."""
        every = self.seconds / 3
        renewed = time.monotonic()
        while not self._stop.wait(every):
            asked = time.monotonic()  # before asking: the server's expiry is later than this
            try:
                if self.store.renew_lease(self.token, self.seconds):
                    renewed = asked
                    continue
                problem = "another manager took its lease over"
            except StoreError as exc:
                if asked + every < renewed + self.seconds:
                    log.warning("campaigns: a lease heartbeat failed, retrying: %s", exc)
                    continue
                problem = f"its lease heartbeat could not reach the database: {exc}"
            except Exception as exc:  # noqa: BLE001 -- a dead heartbeat must stop the manager
                problem = f"its lease heartbeat failed: {type(exc).__name__}: {exc}"
            self._lose(problem)
            return

    def _lose(self, problem: str) -> None:
        """Stop every later write, and say why on stderr."""
        self.lost = problem
        if self.store.fence is not None:
            self.store.fence.stop(problem)
        log.error("campaigns: this manager stops before its next write: %s", problem)

    def _give_back(self, failed: bool) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        self.store.fence_with(None)
        self.store.release_lease(self.token)
        if self.lost and not failed:
            raise LeaseLostError(
                f"this manager lost the campaign's lease while it worked ({self.lost}); "
                "another manager may have taken it. Run `status` and then the command again."
            )
