"""The ASGI app of `segue serve` (Starlette): the page, a small JSON API, the results.

    GET  /                                  the page (static/index.html, app.js, style.css)
    GET  /api/info                          the model, the limits, the examples, the queue
    GET  /api/examples/NAME.wav             a bundled prompt (by name; no path is read from it)
    POST /api/jobs                          a multipart form (segue.serve.forms) -> 202 + status
    GET  /api/jobs/ID                       status: queued (with how many are ahead), running
                                            (with the stage), done (with the result's URLs), ...
    POST /api/jobs/ID/cancel                stop it (the page sends this when it is closed)
    GET  /api/jobs/ID/output.wav            the audio (byte ranges, for seeking)
    GET  /api/jobs/ID/spectrogram.png       its log-mel spectrogram, the prompt boundary marked

Every refusal is JSON {"error": "one line"} with a 4xx status; an unexpected failure is a 500
with a one-line message, and one line in the server log (the traceback at debug level only).
POST /api/jobs needs an `X-Segue-Client` header, so that another web site cannot make a
visitor's browser submit jobs (a cross-site form cannot set it); with `allowed_hosts` (the
default when bound to a loopback address) requests naming another host are refused (DNS
rebinding).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from segue.serve.engine import Engine, UserError, size_text
from segue.serve.forms import parse_job

log = logging.getLogger("segue.serve")

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
MEDIA = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}
#: Room for a form's fields and part headers beyond the upload limit.
FORM_SLACK = 64 * 1024
#: The page needs nothing from elsewhere: scripts, styles, media and requests stay on this server.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")

Handler = Callable[[Request], Awaitable[Response]]


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (localhost, 127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a Host header, without the port ("[::1]:7860" -> "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=HEADERS)


def _bytes(request: Request, data: bytes, media_type: str, name: str | None = None) -> Response:
    """`data` as a response, honoring one byte range (audio players seek with them)."""
    headers = {**HEADERS, "Accept-Ranges": "bytes"}
    if name:
        headers["Content-Disposition"] = f'inline; filename="{name}"'
    match = _RANGE.match(request.headers.get("range", "").strip())
    if match is None or not any(match.groups()):
        return Response(data, media_type=media_type, headers=headers)
    first, last = match.groups()
    size = len(data)
    if first:
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
    else:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        headers["Content-Range"] = f"bytes */{size}"
        return Response(status_code=416, headers=headers)
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)


def create_app(engine: Engine, *, allowed_hosts: Collection[str] | None = None) -> Starlette:
    """The app serving `engine` (closed when the server shuts down, if it runs the lifespan).
    allowed_hosts: the Host names accepted (None: any); for a server on a loopback address,
    LOOPBACK_NAMES."""
    pages = {route: (STATIC / name).read_bytes() for route, name in PAGES.items()}
    hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    def guard(handler: Handler) -> Handler:
        """Host check, security headers, and every failure as one line of JSON."""

        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            if hosts is not None:
                host = _host_name(request.headers.get("host", ""))
                if host not in hosts and not (is_loopback(host) and "127.0.0.1" in hosts):
                    return error(f"this server answers to {', '.join(sorted(hosts))} only", 400)
            try:
                response = await handler(request)
            except UserError as failure:
                return error(str(failure), failure.status)
            except ClientDisconnect:  # the client went away mid-upload: nobody to answer
                log.info("%s %s: the client disconnected", request.method, request.url.path)
                return Response(status_code=400)
            except MultiPartException as failure:
                return error(f"unreadable upload ({failure})", 400)
            except Exception as failure:
                log.error(
                    "%s %s failed: %s: %s",
                    request.method,
                    request.url.path,
                    type(failure).__name__,
                    " ".join(str(failure).split())[:300],
                )
                log.debug("traceback", exc_info=True)
                return error("internal error (the server log has one line on it)", 500)
            for key, value in HEADERS.items():
                response.headers.setdefault(key, value)
            return response

        return endpoint

    async def page(request: Request) -> Response:
        path = request.url.path
        return Response(pages[path], media_type=MEDIA[Path(PAGES[path]).suffix], headers=HEADERS)

    async def info(request: Request) -> Response:
        return JSONResponse(engine.info())

    async def example(request: Request) -> Response:
        found = engine.examples.get(request.path_params["name"])
        if found is None:
            raise UserError("no such example", 404)
        data = await run_in_threadpool(found.path.read_bytes)
        return _bytes(request, data, "audio/wav", f"{found.name}.wav")

    async def submit(request: Request) -> Response:
        if "x-segue-client" not in request.headers:
            raise UserError("jobs are submitted by the page (an X-Segue-Client header)", 403)
        limit = engine.limits.max_upload_bytes
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            raise UserError("the request needs a Content-Length header", 411)
        if int(length) > limit + FORM_SLACK:
            raise UserError(
                f"the upload is {size_text(int(length))}, over the limit of {size_text(limit)}", 413
            )
        fields, files = {}, {}
        async with request.form(max_files=2, max_fields=20, max_part_size=64 * 1024) as form:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    fields[key] = value
                else:
                    files[key] = (value.filename or "", await value.read())
        settings = await run_in_threadpool(parse_job, engine, fields, files)
        job = engine.submit(settings)
        return JSONResponse(engine.status(job.id), status_code=202)

    async def status(request: Request) -> Response:
        return JSONResponse(engine.status(request.path_params["id"]))

    async def cancel(request: Request) -> Response:
        engine.cancel(request.path_params["id"])
        return JSONResponse({"cancelled": True})

    async def output(request: Request) -> Response:
        job_id = request.path_params["id"]
        result = engine.result(job_id)
        return _bytes(request, result.wav, "audio/wav", f"segue-{job_id[:8]}.wav")

    async def spectrogram(request: Request) -> Response:
        return _bytes(request, engine.result(request.path_params["id"]).png, "image/png")

    routes = [Route(path, guard(page)) for path in PAGES]
    routes += [
        Route("/api/info", guard(info)),
        Route("/api/examples/{name}.wav", guard(example)),
        Route("/api/jobs", guard(submit), methods=["POST"]),
        Route("/api/jobs/{id}", guard(status)),
        Route("/api/jobs/{id}/cancel", guard(cancel), methods=["POST"]),
        Route("/api/jobs/{id}/output.wav", guard(output)),
        Route("/api/jobs/{id}/spectrogram.png", guard(spectrogram)),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        return error("not found" if status == 404 else "method not allowed", status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # At shutdown, before uvicorn re-raises a SIGTERM (which would end the process at once).
        await run_in_threadpool(engine.close)

    return Starlette(
        routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan
    )
