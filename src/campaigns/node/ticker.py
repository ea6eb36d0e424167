"""The local autopilot: a detached process that runs one campaign's tick every few seconds.

    python -m campaigns.node.ticker FOLDER INTERVAL -- TICK_COMMAND...

Each tick is a child process, so a tick that is killed does not end the ticker; the
ticker ends when `FOLDER/stop` appears (the tick that finds the campaign finished, or
`autopilot --stop`, writes it). Its pid is in `FOLDER/ticker.pid`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

PID_FILE = "ticker.pid"
STOP_FILE = "stop"


def main(argv: list[str] | None = None) -> int:
    """Run the tick every INTERVAL seconds until the stop file appears."""
    args = sys.argv[1:] if argv is None else argv
    folder, interval, command = Path(args[0]), float(args[1]), args[args.index("--") + 1 :]
    (folder / PID_FILE).write_text(f"{os.getpid()}\n")
    while not (folder / STOP_FILE).exists():
        started = time.monotonic()
        with open(folder / "ticker.out", "a", encoding="utf-8") as out:
            subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=False)
        while time.monotonic() - started < interval and not (folder / STOP_FILE).exists():
            time.sleep(min(1.0, interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
