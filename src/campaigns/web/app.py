"""The dashboard as an ASGI application (Starlette): pages, static files, the JSON API.

The pages are plain HTML shipped in `campaigns/web/static/`; a little JavaScript
(dashboard.js) fills them from the API and polls it, so they update without a reload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from campaigns.errors import CampaignError, InputError, OperationalError
from campaigns.web import api
from campaigns.web.security import SecurityHeaders, TokenGate
from campaigns.web.served import Served

PAGES = {"index": "index.html", "campaign": "campaign.html", "job": "job.html"}


def _page(name: str, served: Served) -> str:
    html = (resources.files("campaigns.web") / "static" / PAGES[name]).read_text("utf-8")
    return html.replace("__POLL_MS__", str(int(served.poll_seconds * 1000)))


def index_page(request: Request) -> HTMLResponse:
    """Every campaign served, with counts per state and a progress bar."""
    return HTMLResponse(_page("index", request.app.state.served))


def campaign_page(request: Request) -> HTMLResponse:
    """One campaign: progress, throughput, failures, QA."""
    served: Served = request.app.state.served
    served.get(request.path_params["campaign"])
    return HTMLResponse(_page("campaign", served))


def job_page(request: Request) -> HTMLResponse:
    """One job: its attempts and the tail of its log."""
    served: Served = request.app.state.served
    served.get(request.path_params["campaign"])
    return HTMLResponse(_page("job", served))


def no_icon(request: Request) -> Response:
    """No favicon: an empty answer instead of a 404 in the browser's console."""
    return Response(status_code=204)


def _redacted(served: Served, text: str) -> str:
    for secret in served.secrets():
        text = text.replace(secret, "***")
    return text


def _error(request: Request, status: int, message: str) -> Response:
    message = _redacted(request.app.state.served, message)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(request, exc.status_code, str(exc.detail))


async def _campaign_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, InputError):
        status = 400
    elif isinstance(exc, OperationalError):
        status = 503  # the database could not be read: try again later
    else:
        status = 500
    return _error(request, status, str(exc))


def create_app(
    served: Served, *, token: str, allowed_hosts: Sequence[str] | None = None
) -> Starlette:
    """The dashboard of `served`; `token` required on every request, whatever the address;
    `allowed_hosts` (Host headers) when given, against DNS rebinding on a loopback bind."""
    if not token:
        raise ValueError("the dashboard needs a token: every request must carry it")
    campaign = "/api/campaigns/{campaign}"
    routes = [
        Route("/", index_page),
        Route("/favicon.ico", no_icon),
        Route("/campaigns/{campaign}", campaign_page),
        Route("/campaigns/{campaign}/jobs/{job:path}", job_page),
        Route("/api/campaigns", api.list_campaigns),
        Route(f"{campaign}/status", api.campaign_status),
        Route(f"{campaign}/progress", api.campaign_progress),
        Route(f"{campaign}/jobs", api.campaign_jobs),
        Route(f"{campaign}/qa", api.qa),
        Route(f"{campaign}/qa/plots/{{name}}", api.qa_plot),
        Route(f"{campaign}/jobs/{{job}}/log", api.job_log),
        Route(f"{campaign}/jobs/{{job}}", api.job),
        Mount("/static", StaticFiles(packages=[("campaigns.web", "static")]), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    middleware.append(Middleware(TokenGate, token=token))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        served.close()

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, CampaignError: _campaign_error},
        lifespan=lifespan,
    )
    app.state.served = served
    return app
