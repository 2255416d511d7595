"""The dashboard's server for `make run` and the browser tests (compose uses nginx instead): the
Vite build (frontend/dist) as a single-page app on :3000, with `/api`, `/health` and the API's
docs (`/docs`, `/redoc`, `/openapi.json`) passed through to the API. Responses are relayed as
they arrive, never buffered, so the live stream's events reach the browser the moment the API
sends them; a stopped API is a 502 with a JSON body the dashboard's indicator understands.

    python -m utils.frontend_server [--port 3000] [--api http://127.0.0.1:8000] [--dist frontend/dist]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from core.settings import get_settings

log = logging.getLogger("frontend")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIST = ROOT / "frontend" / "dist"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Per-hop headers (RFC 9110 §7.6.1) and the ones httpx/uvicorn set again for the next hop.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
# Reading has no limit for the live stream (idle for SSE_KEEPALIVE_SECONDS between pings), and a
# minute for anything else, as nginx's `proxy_read_timeout 60s` in compose.
STREAM_TIMEOUT = httpx.Timeout(5.0, read=None)
REQUEST_TIMEOUT = httpx.Timeout(5.0, read=60.0)


def is_stream(path: str) -> bool:
    """The paths nginx also serves unbuffered with no read timeout: any ending in /stream or /events."""
    return path.rstrip("/").rsplit("/", 1)[-1] in ("stream", "events")


def forwarded_headers(request: Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    client = request.client.host if request.client else ""
    headers["x-forwarded-for"] = ", ".join(filter(None, [request.headers.get("x-forwarded-for"), client]))
    headers["x-forwarded-proto"] = request.url.scheme
    return headers


def returned_headers(upstream: httpx.Response) -> dict[str, str]:
    headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
    if "content-length" in upstream.headers and "content-encoding" not in upstream.headers:
        headers["content-length"] = upstream.headers["content-length"]
    return headers


async def relay(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The body as the API sends it; an API that dies mid-stream just ends it (the browser reconnects)."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        log.info("upstream ended %s: %s", upstream.request.url.path, type(exc).__name__)
    finally:
        await upstream.aclose()


async def proxy(request: Request) -> Response:
    """Pass one request to the API and stream its answer back; 502 `api_unreachable` when it does not answer."""
    client: httpx.AsyncClient = request.app.state.client
    path = request.url.path
    timeout = STREAM_TIMEOUT if is_stream(path) else REQUEST_TIMEOUT
    outgoing = client.build_request(
        request.method,
        httpx.URL(path=path, query=request.url.query.encode()),
        headers=forwarded_headers(request),
        content=await request.body(),
        timeout=timeout,
    )
    try:
        upstream = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        log.warning("api unreachable for %s %s: %s", request.method, path, type(exc).__name__)
        body = {"code": "api_unreachable", "message": f"The API does not answer ({type(exc).__name__})."}
        return JSONResponse(body, status_code=502)
    headers = returned_headers(upstream)
    if is_stream(path):
        headers["x-accel-buffering"] = "no"
    return StreamingResponse(
        relay(upstream), status_code=upstream.status_code, headers=headers, background=BackgroundTask(upstream.aclose)
    )


def page(dist: Path) -> Route:
    """Any other GET: the file when the build has one, else index.html (the app routes on the client)."""
    root = dist.resolve()

    async def serve(request: Request) -> Response:
        wanted = (root / request.path_params["path"]).resolve()
        if wanted.is_relative_to(root) and wanted.is_file():
            return FileResponse(wanted)
        return FileResponse(root / "index.html", headers={"cache-control": "no-cache"})

    return Route("/{path:path}", serve, methods=["GET", "HEAD"])


def create_app(api_url: str, dist: Path) -> Starlette:
    """The server for one API and one build; the build must exist (see utils.frontend_build)."""
    if not (dist / "index.html").is_file():
        raise FileNotFoundError(f"no dashboard build in {dist}: run `python -m utils.frontend_build`")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=20)
        async with httpx.AsyncClient(base_url=api_url, limits=limits, follow_redirects=False) as client:
            app.state.client = client
            yield

    routes = [
        Route("/api/{rest:path}", proxy, methods=METHODS),
        Route("/health", proxy, methods=METHODS),
        Route("/health/{rest:path}", proxy, methods=METHODS),
        # The API's documentation pages and schema, as nginx passes them in the compose image.
        Route("/openapi.json", proxy, methods=METHODS),
        Route("/docs", proxy, methods=METHODS),
        Route("/docs/{rest:path}", proxy, methods=METHODS),
        Route("/redoc", proxy, methods=METHODS),
        Mount("/assets", StaticFiles(directory=dist / "assets", check_dir=False), name="assets"),
        page(dist),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def default_api_url() -> str:
    """The API `python -m api` serves, per API_HOST/API_PORT (a wildcard host is reached on loopback)."""
    settings = get_settings()
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{settings.api_port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: FRONTEND_PORT (3000)")
    parser.add_argument("--api", default=None, help="the API's base URL (default: from API_HOST/API_PORT)")
    parser.add_argument("--dist", type=Path, default=DEFAULT_DIST)
    args = parser.parse_args(argv)
    args.port = args.port or get_settings().frontend_port
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied request is noise
    api_url = args.api or default_api_url()
    try:
        app = create_app(api_url, args.dist)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 1
    log.info("dashboard on http://%s:%d (API %s)", args.host, args.port, api_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
