"""`run-campaign serve`: choose the token, read the campaigns, bind, run uvicorn until stopped.

The token is required on every address (see `web.security`); `serve` prints the address to
open with it, unless the user chose it in `CAMPAIGNS_WEB_TOKEN` (then it stays out of logs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
from collections.abc import Sequence
from typing import IO

from campaigns.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
EXTRA = ("starlette", "uvicorn")


def require_extra() -> None:
    """Raise InputError (exit 2), saying how to install it, unless the web extra is installed."""
    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"`run-campaign serve` needs the optional web extra, and {' and '.join(missing)} "
            "is not installed in this environment. Install it with "
            f"`{sys.executable} -m pip install 'campaigns[web]'` (from a clone of the "
            "repository: `pip install -e '.[web]'`), then run serve again."
        )


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host!r} is not an address of this machine: {exc}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port, "
            "or stop what uses it"
        ) from None
    return sock


def address(host: str, port: int) -> str:
    """The base URL people should open for a server bound to host:port."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(
    configs: Sequence[str | os.PathLike[str]],
    *,
    root: str | None = None,
    db_url: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    poll_seconds: float = 5.0,
    out: IO[str] | None = None,
) -> int:
    """Serve the dashboard of `configs` until interrupted; return the exit code (0)."""
    require_extra()
    import uvicorn

    from campaigns.web.app import create_app
    from campaigns.web.security import LOOPBACK_NAMES, TOKEN_ENV, choose_token, is_loopback
    from campaigns.web.served import Served

    out = out or sys.stdout
    token, generated = choose_token()  # before anything else: a weak token is bad input
    served = Served.from_files(configs, root=root, db_url=db_url, poll_seconds=poll_seconds)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    hosts = [*LOOPBACK_NAMES, "[::1]"] if is_loopback(host) else None
    app = create_app(served, token=token, allowed_hosts=hosts)
    base = address(host, port)
    names = ", ".join(cid for cid, _ in served.items())
    print(f"campaigns dashboard (read-only) for {names}", file=out)
    # The token on every address, loopback too: every user of a login node can open 127.0.0.1.
    if generated:
        print(f"open {base}?token={token}", file=out)
        print(f"(a new token; set {TOKEN_ENV} to choose your own)", file=out)
    else:
        print(f"open {base}?token=<the token in {TOKEN_ENV}>", file=out)
    print(
        "numbers change when the store does: keep `run-campaign monitor` running. "
        "Ctrl-C stops the dashboard.",
        file=out,
    )
    out.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    # uvicorn shuts down cleanly on Ctrl-C, then re-raises it: here that is a normal stop.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    return 0
