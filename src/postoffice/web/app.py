"""The control panel's web application (placeholder until the panel lands)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route


def create_app(postoffice: Any) -> Starlette:
    async def home(request: Request) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>postoffice</title><h1>postoffice control panel</h1>")

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/", home, name="home"), Route("/healthz", health, name="health")])
    app.state.postoffice = postoffice
    return app
