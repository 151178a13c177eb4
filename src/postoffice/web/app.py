"""The control panel's web application: pages, the REST API and client autoconfiguration.

`create_app(postoffice)` is the only composition root of the web layer; `postoffice serve`
runs the result under uvicorn on the same event loop as the mail servers, so a switch saved
here reaches the running IMAP/POP3/SMTP sessions through the store's change events at once.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ..services.metrics import CONTENT_TYPE
from ..services.panel_users import PanelUsers
from .api.v1 import create_api
from .auth import SESSION_COOKIE, SESSION_MAX_AGE, panel_secret
from .routes import routes

HERE = Path(__file__).parent
MAX_BODY = 1024 * 1024  # bytes of a request body


class SecurityHeaders:
    """Pure ASGI middleware: no framing, no sniffing, scripts only from our own origin."""

    HEADERS = [
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"content-security-policy",
         b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
         b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ]

    def __init__(self, app: Any, https: bool = False) -> None:
        self.app = app
        self.headers = list(self.HEADERS)
        if https:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Pages show secrets (a new API token) and private data: no copies in browser or proxy
        # caches. The static files keep their own caching.
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.headers
                if not static and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)
        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class BodyLimit:
    """Pure ASGI middleware: refuse request bodies over ``limit`` bytes with 413 before they are
    buffered (forms, JSON and Autodiscover requests are a few KB; nothing is uploaded)."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    @staticmethod
    async def _refuse(send: Any) -> None:
        await PlainTextResponse("request body too large\n", status_code=413)({"type": "http"}, None, send)


def _fmt_bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _fmt_time(value: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _is_loopback(request: Request) -> bool:
    """A client on this host talking to us directly. A request relayed by a reverse proxy on the
    same host also comes from loopback, so forwarding headers count as "not loopback"."""
    if any(name in request.headers for name in ("forwarded", "x-forwarded-for", "x-real-ip")):
        return False
    try:
        ip = ipaddress.ip_address(request.client.host if request.client else "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def create_app(postoffice: Any) -> Starlette:
    panel_users = PanelUsers(postoffice.store, postoffice.auth, postoffice.accounts)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["bytes"] = _fmt_bytes
    templates.env.filters["when"] = _fmt_time

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        """Prometheus scrape: no login; loopback clients only unless [panel] metrics_public."""
        if not postoffice.config.panel.metrics_public and not _is_loopback(request):
            return PlainTextResponse("forbidden\n", status_code=403)
        if postoffice.metrics is None:
            return PlainTextResponse("metrics are not available\n", status_code=404)
        await postoffice.metrics.refresh()  # scrape-time store queries, before rendering
        return Response(postoffice.metrics.render(), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        from .pages.common import error_page

        return error_page(request, 404, "There is no such page.")

    https = postoffice.config.panel.public_url.startswith("https://")
    app = Starlette(
        routes=[
            *routes,
            Route("/healthz", health, name="health"),
            Route("/metrics", metrics, name="metrics"),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            Mount("/api/v1", create_api(postoffice, panel_users), name="api"),
        ],
        middleware=[
            Middleware(SecurityHeaders, https=https),
            Middleware(BodyLimit),
            Middleware(SessionMiddleware, secret_key=panel_secret(postoffice), session_cookie=SESSION_COOKIE,
                       max_age=SESSION_MAX_AGE, same_site="lax", https_only=https),
        ],
        exception_handlers={404: not_found},
    )
    app.state.office = postoffice
    app.state.panel_users = panel_users
    app.state.templates = templates
    return app
