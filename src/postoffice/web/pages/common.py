"""What every page shares: rendering with the layout's context, and the sign-in gate."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...services.accounts import UserError
from ...services.panel_users import Forbidden, Principal
from ..auth import CsrfError, csrf_token, current_principal, pop_flashes
from ..operations import Missing, Operations

PageFn = Callable[[Request, Operations], Awaitable[Response]]


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    templates = request.app.state.templates
    context.setdefault("who", getattr(request.state, "principal", None))
    context.setdefault("errors", {})
    context.setdefault("values", {})
    context["csrf_token"] = csrf_token(request)
    context["flashes"] = pop_flashes(request)
    context["hostname"] = request.app.state.office.config.hostname
    return templates.TemplateResponse(request, name, context, status_code=status_code)  # type: ignore[no-any-return]


def form_error(request: Request, name: str, exc: UserError, values: Any, **context: Any) -> Response:
    """Re-show a form with the message beside its field and what the user typed."""
    field = exc.field or "form"
    return render(request, name, 400, errors={field: str(exc)}, values=dict(values), **context)


def redirect(request: Request, route: str, **params: str) -> RedirectResponse:
    return RedirectResponse(request.url_for(route, **params), status_code=303)


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status, status=status, message=message)


def page(fn: PageFn | None = None, *, staff: bool = True) -> Any:
    """Wrap an endpoint: sign-in required (mailbox users only where ``staff`` is False);
    Forbidden, Missing and CSRF failures become 403/404 pages; nothing was changed by then."""
    def wrap(fn: PageFn) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            who: Principal | None = await current_principal(request)
            if who is None:
                target = request.url_for("login").include_query_params(next=request.url.path)
                return RedirectResponse(str(target), status_code=303)
            if staff and who.is_user:
                return redirect(request, "me")
            ops = Operations(request.app.state.office, who)
            try:
                return await fn(request, ops)
            except Forbidden as exc:
                return error_page(request, 403, str(exc))
            except Missing as exc:
                return error_page(request, 404, str(exc))
            except CsrfError as exc:
                return error_page(request, 403, str(exc))
        return endpoint
    return wrap(fn) if fn is not None else wrap

