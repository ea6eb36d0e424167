"""The JSON API under /api/: what the pages draw, for scripts too. Every endpoint reads only.

GET /api/campaigns                          every campaign served, with its status
GET /api/campaigns/{id}/status              the `status --json` object
GET /api/campaigns/{id}/progress            completions over time, throughput, ETA
GET /api/campaigns/{id}/jobs                a filtered page of the jobs table
GET /api/campaigns/{id}/jobs/{job}          one job (key or uid) and its attempts
GET /api/campaigns/{id}/jobs/{job}/log      the tail of an attempt's log
GET /api/campaigns/{id}/qa                  the latest QA report and the plots' names
GET /api/campaigns/{id}/qa/plots/{name}     one plot (PNG)
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse

from campaigns.errors import InputError
from campaigns.ops import browse, peek, progress, status
from campaigns.ops.context import Context
from campaigns.web.served import Served


def _served(request: Request) -> Served:
    served: Served = request.app.state.served
    return served


def _context(request: Request) -> Context:
    """The campaign the path names, ready to read (404 unknown, 409 not initialised)."""
    return _served(request).ready(request.path_params["campaign"])


def _int(request: Request, name: str, default: int) -> int:
    value = _optional_int(request, name)
    return default if value is None else value


def _optional_int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"query parameter {name!r} must be an integer, not {text!r}") from None


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data)


def list_campaigns(request: Request) -> JSONResponse:
    """Every campaign served: id, name, version, and its status (null until `init`)."""
    served = _served(request)
    out = []
    for cid, ctx in served.items():
        entry: dict[str, Any] = {
            "id": cid,
            "name": ctx.spec.name,
            "version": ctx.spec.version,
            "initialised": ctx.initialised(),
            "status": None,
        }
        if entry["initialised"]:
            entry["status"] = status.status(served.ready(cid)).to_dict()
        out.append(entry)
    return _json({"campaigns": out, "poll_seconds": served.poll_seconds})


def campaign_status(request: Request) -> JSONResponse:
    """The campaign's `status --json` object."""
    return _json(status.status(_context(request)).to_dict())


def campaign_progress(request: Request) -> JSONResponse:
    """Completions over time, throughput and ETA (`?buckets=N`, default 60)."""
    buckets = _int(request, "buckets", 60)
    return _json(progress.progress(_context(request), buckets).to_dict())


def campaign_jobs(request: Request) -> JSONResponse:
    """A page of jobs: `?state=failed&failure_class=&standing=&q=&offset=0&limit=50`."""
    params = request.query_params
    query = browse.job_query(
        params.getlist("state") or None,
        params.get("failure_class"),
        params.get("standing") or None,
        params.get("q"),
    )
    page = browse.job_page(
        _context(request),
        query,
        offset=_int(request, "offset", 0),
        limit=_int(request, "limit", 50),
    )
    return _json(page.to_dict())


def job(request: Request) -> JSONResponse:
    """One job (by key or uid) and its attempts."""
    detail = browse.job_detail(_context(request), request.path_params["job"])
    if detail is None:
        raise HTTPException(404, f"no job {request.path_params['job']!r} in this campaign")
    return _json(detail)


def job_log(request: Request) -> JSONResponse:
    """The tail of an attempt's log: `?attempt=N` (default the latest), `?lines=200`."""
    tail = peek.log_tail(
        _context(request),
        request.path_params["job"],
        _optional_int(request, "attempt"),
        _int(request, "lines", 200),
    )
    if tail is None:
        raise HTTPException(404, "no log for this job and attempt in the campaign directory")
    return _json(tail.to_dict())


def qa(request: Request) -> JSONResponse:
    """The latest QA report's summary and the names of the plots."""
    ctx = _context(request)
    return _json({"report": peek.qa_latest(ctx), "plots": peek.qa_plots(ctx)})


def qa_plot(request: Request) -> FileResponse:
    """One PNG of qa/summary_plots/."""
    path = peek.qa_plot(_context(request), request.path_params["name"])
    if path is None:
        raise HTTPException(404, "no such plot")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})
