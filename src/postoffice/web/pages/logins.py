"""Panel logins (admins and domain owners) and API tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...services.accounts import UserError
from ..auth import checked_form, flash
from ..operations import Operations
from .common import form_error, page, redirect, render


@page
async def logins(request: Request, ops: Operations) -> Response:
    ops.who.require_admin()
    users = request.app.state.panel_users
    context = {"logins": await users.list_logins(), "domains": await ops.domains()}
    if request.method == "GET":
        return render(request, "logins.html", **context)
    form = await checked_form(request)
    try:
        login = await users.add_login(str(form.get("username", "")), str(form.get("password", "")),
                                      str(form.get("role", "owner")), [str(d) for d in form.getlist("domains")])
    except UserError as exc:
        values = dict(form)
        values["domains"] = form.getlist("domains")
        return render(request, "logins.html", 400, errors={exc.field or "form": str(exc)}, values=values, **context)
    flash(request, f"The login {login['username']} was created.")
    return redirect(request, "logins")


@page
async def login_delete(request: Request, ops: Operations) -> Response:
    ops.who.require_admin()
    await checked_form(request)
    name = request.path_params["username"]
    try:
        await request.app.state.panel_users.remove_login(name, ops.who)
    except UserError as exc:
        flash(request, str(exc), "error")
        return redirect(request, "logins")
    flash(request, f"The login {name} was removed.")
    return redirect(request, "logins")


@page
async def tokens(request: Request, ops: Operations) -> Response:
    users = request.app.state.panel_users
    context = {"tokens": await users.list_tokens(ops.who), "new_token": None}
    if request.method == "GET":
        return render(request, "tokens.html", **context)
    form = await checked_form(request)
    try:
        _, token = await users.create_token(ops.who, str(form.get("name", "")))
    except UserError as exc:
        return form_error(request, "tokens.html", exc, form, **context)
    context["tokens"] = await users.list_tokens(ops.who)
    return render(request, "tokens.html", new_token=token, **{k: v for k, v in context.items() if k != "new_token"})


@page
async def token_delete(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    try:
        await request.app.state.panel_users.revoke_token(ops.who, int(request.path_params["token_id"]))
    except UserError as exc:
        flash(request, str(exc), "error")
        return redirect(request, "tokens")
    flash(request, "The token was revoked.")
    return redirect(request, "tokens")
