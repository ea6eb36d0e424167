"""One manager at a time per campaign: an advisory lock on metadata/manager.lock.

The lock is an `flock` (released by the kernel when the holder dies, so it is
never stale); the file names the holder so a second manager can say who it is.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO

from campaigns.errors import LockedError


class CampaignLock:
    """Exclusive lock on a campaign; use as a context manager."""

    def __init__(self, path: Path, wait_seconds: float = 0.0) -> None:
        self.path = path
        self.wait_seconds = wait_seconds
        self._fh: IO[str] | None = None
        self._depth = 0

    def __enter__(self) -> CampaignLock:
        if self._depth:
            self._depth += 1
            return self
        fh = open(self.path, "a+", encoding="utf-8")
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
                    raise LockedError(
                        f"another campaigns manager is working on this campaign: {holder}. "
                        "Wait for it to finish (or stop it), then run the command again; "
                        "`status` works meanwhile."
                    ) from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(describe_holder())
        fh.flush()
        self._fh = fh
        self._depth = 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth or self._fh is None:
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
