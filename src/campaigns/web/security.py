"""Who may look: the access token, the loopback rule and the headers every response carries.

Bound to a loopback address (127.0.0.1 by default) the dashboard needs no token, unless
one is set in `CAMPAIGNS_WEB_TOKEN`; bound to anything else, every request needs the
token: `Authorization: Bearer <token>`, or the cookie a browser receives when it first
opens `/?token=<token>` (it is then redirected to the same address without the token).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from urllib.parse import urlencode

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_ENV = "CAMPAIGNS_WEB_TOKEN"
COOKIE = "campaigns_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def is_loopback(host: str) -> bool:
    """True when `host` is a loopback name or address (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def choose_token(host: str, environ: dict[str, str] | None = None) -> tuple[str | None, bool]:
    """(the token, whether it was generated): the environment's if set, else a new one when
    `host` is not loopback, else None (no token needed)."""
    env = os.environ if environ is None else environ
    given = env.get(TOKEN_ENV, "").strip()
    if given:
        return given, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(32), True


class TokenGate:
    """ASGI middleware: refuse (401) every HTTP request that does not carry the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _valid(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on when it carries the token; answer 401 otherwise."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        if self._valid(bearer) or self._valid(request.cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        if self._valid(request.query_params.get("token")) and request.method == "GET":
            # Trade the token in the address for a cookie, so it leaves the address bar.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.token.decode(), httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        refused = JSONResponse(
            {
                "error": "a token is required: open the address `run-campaign serve` printed "
                "(it ends in ?token=...), or send the header `Authorization: Bearer <token>`"
            },
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await refused(scope, receive, send)


class SecurityHeaders:
    """ASGI middleware: a strict content security policy and no caching of API answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to every HTTP response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if api:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
