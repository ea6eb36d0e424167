"""One manager at a time per campaign: a lock file beside an SQLite database, a lease row
in a server database.

`CampaignLock` is an `flock` on metadata/manager.lock (released by the kernel when the
holder dies, so never stale; the file names the holder). `CampaignLease` is for a
database shared by login nodes whose filesystem may not honour `flock`: a row (holder
host/pid, heartbeat, expiry) taken in a transaction and renewed by a heartbeat thread;
a holder that died is taken over once its lease expired.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, TypeVar

from campaigns.errors import InputError, LockedError, StoreError

if TYPE_CHECKING:
    from campaigns.store import Store

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


class CampaignLock(_Exclusive):
    """Exclusive lock on a campaign; use as a context manager."""

    def __init__(self, path: Path, wait_seconds: float = 0.0) -> None:
        self.path = path
        self.wait_seconds = wait_seconds
        self._fh: IO[str] | None = None

    def _take(self) -> None:
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 -- held until given back
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "an unknown process"
                    fh.close()
                    raise LockedError(busy(holder)) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(describe_holder())
        fh.flush()
        self._fh = fh

    def _give_back(self, failed: bool) -> None:
        if self._fh is None:
            return
        self._fh.seek(0)
        self._fh.truncate()
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


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
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _until(self) -> tuple[datetime, datetime]:
        now = datetime.now(timezone.utc)
        return now, now + timedelta(seconds=self.seconds)

    def _take(self) -> None:
        now, expires = self._until()
        other = self.store.take_lease(self.token, describe_holder(), now, expires)
        if other is not None and _died_here(other["holder"]):
            other = self.store.take_lease(
                self.token, describe_holder(), now, expires, dead=other["token"]
            )
        if other is not None:
            ends = other["expires_at"]
            until = f" (its lease runs to {ends:%Y-%m-%d %H:%M:%S} UTC)" if ends else ""
            raise LockedError(busy(f"{other['holder']}{until}"))
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="campaign-lease", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        """Renew the lease every third of its time until released (or lost)."""
        while not self._stop.wait(self.seconds / 3):
            try:
                if not self.store.renew_lease(self.token, *self._until()):
                    self.lost = True
                    return
            except StoreError:
                continue  # the database hiccupped: try again at the next beat

    def _give_back(self, failed: bool) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        self.store.release_lease(self.token)
        if self.lost and not failed:
            raise LockedError(
                "this manager's lease on the campaign expired while it worked (was the "
                "database unreachable?) and another manager may have taken it. Run `status` "
                "and then the command again."
            )
