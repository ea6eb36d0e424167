"""Who may look: the access token, required on every address, and the headers every
response carries.

Every request needs the token, on 127.0.0.1 too: a login node is shared by hundreds of
users, and every one of them can open its loopback addresses. The token is the one in
`CAMPAIGNS_WEB_TOKEN`, else a new random one that `serve` prints inside the address to
open (`http://127.0.0.1:8000/?token=...`), as Jupyter does. Scripts send
`Authorization: Bearer <token>`; a browser that opens an address with `?token=<token>`
receives the token as an HttpOnly, SameSite=Strict cookie named for the server's port
(`campaigns_token_8000`: two dashboards on one host keep their own, since browsers send
a host's cookies to all of its ports) and is redirected to the same address without it.
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

from campaigns.errors import InputError

TOKEN_ENV = "CAMPAIGNS_WEB_TOKEN"
COOKIE = "campaigns_token"
#: The shortest token `CAMPAIGNS_WEB_TOKEN` may hold (a generated one has 43 characters).
MIN_TOKEN_LENGTH = 16
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


def choose_token(environ: dict[str, str] | None = None) -> tuple[str, bool]:
    """(the token, whether it was generated): the environment's if set, else a new one.
    A token in the environment shorter than MIN_TOKEN_LENGTH is bad input (exit 2)."""
    env = os.environ if environ is None else environ
    given = env.get(TOKEN_ENV, "").strip()
    if not given:
        return secrets.token_urlsafe(32), True
    if len(given) < MIN_TOKEN_LENGTH:
        raise InputError(
            f"{TOKEN_ENV} holds a token of {len(given)} characters: anyone who can reach the "
            f"dashboard could guess it. Use at least {MIN_TOKEN_LENGTH}, e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`, or unset it "
            "and let `serve` make one."
        )
    return given, False


def cookie_name(port: int | None) -> str:
    """The token's cookie for a dashboard listening on `port`."""
    return f"{COOKIE}_{port}" if port else COOKIE


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
        server = scope.get("server")
        cookie = cookie_name(server[1] if server else None)
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
        if self._valid(bearer) or self._valid(request.cookies.get(cookie)):
            await self.app(scope, receive, send)
            return
        if self._valid(request.query_params.get("token")) and request.method == "GET":
            # Trade the token in the address for a cookie, so it leaves the address bar.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(cookie, self.token.decode(), httponly=True, samesite="strict")
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
