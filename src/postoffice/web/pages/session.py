"""Signing in and out, and the mailbox user's own page (password and POP3 policy)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...services.accounts import UserError
from ...services.panel_users import LoginThrottled
from ...store import POP3_POLICIES
from ..auth import CsrfError, checked_form, client_ip, current_principal, flash, sign_in, sign_out, sign_out_others
from ..operations import AddressChanges, Operations
from .common import error_page, form_error, page, redirect, render

POP3_POLICY_LABELS = {
    "delete": "Delete from the server when the client deletes (POP3 standard)",
    "keep": "Keep every message on the server",
    "mark-read": "Keep, but mark as read",
    "trash": "Move to Trash",
    "archive": "Move to Archive",
}


def _safe_next(target: str) -> str:
    # Only local paths: never send the user to another site after login. Browsers read "\\" as
    # "/" and drop tabs and line breaks, so "/\\evil" or "/<TAB>/evil" would be "//evil".
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)):
        return "/"
    return target


async def login(request: Request) -> Response:
    next_url = _safe_next(request.query_params.get("next", "/"))
    if request.method == "GET":
        if await current_principal(request) is not None:
            return RedirectResponse(next_url, status_code=303)
        return render(request, "login.html", next=next_url)
    try:
        form = await checked_form(request)
    except CsrfError as exc:
        return error_page(request, 403, str(exc))
    values = {"username": str(form.get("username", ""))}
    next_url = _safe_next(str(form.get("next", "/")))
    users = request.app.state.panel_users
    try:
        who = await users.login(values["username"], str(form.get("password", "")), client_ip(request))
    except LoginThrottled as exc:
        return render(request, "login.html", 429, errors={"form": str(exc).capitalize() + "."},
                      values=values, next=next_url)
    except UserError as exc:
        return form_error(request, "login.html", exc, values, next=next_url)
    from .twofactor import needs_second_factor
    second = await needs_second_factor(request, who, next_url)
    if second is not None:
        return second
    await sign_in(request, who)
    return RedirectResponse(next_url if not who.is_user else str(request.url_for("me")), status_code=303)


async def logout(request: Request) -> Response:
    try:
        await checked_form(request)
    except CsrfError as exc:
        return error_page(request, 403, str(exc))
    await sign_out(request)
    return redirect(request, "login")


@page(staff=False)
async def logout_others(request: Request, ops: Operations) -> Response:
    """Issue 16: end this login's panel sessions in every other browser (this one stays)."""
    await checked_form(request)
    ended = await sign_out_others(request, ops.who)
    flash(request, f"Signed out everywhere else ({ended} other session{'s' if ended != 1 else ''} ended).")
    return redirect(request, "overview" if not ops.who.is_user else "me")


@page(staff=False)
async def me(request: Request, ops: Operations) -> Response:
    if not ops.who.is_user:
        return redirect(request, "overview")
    info = await ops.address("", ops.who.name)
    context = {"info": info, "policies": POP3_POLICY_LABELS,
               "endpoints": await _endpoints(ops)}
    if request.method == "GET":
        return render(request, "me.html", **context)
    form = await checked_form(request)
    action = form.get("action")
    try:
        if action == "password":
            if form.get("new_password") != form.get("confirm_password"):
                raise UserError("the two new passwords differ", "confirm_password")
            await request.app.state.panel_users.change_own_password(
                ops.who, str(form.get("current_password", "")), str(form.get("new_password", "")),
                client_ip(request))
            flash(request, "Your password was changed. Sign in again with the new one.")
            await sign_out_others(request, ops.who)
            await sign_out(request)
            return redirect(request, "login")
        policy = str(form.get("pop3_policy", ""))
        if policy not in POP3_POLICIES:
            raise UserError("choose one of the listed POP3 policies", "pop3_policy")
        await ops.save_address("", ops.who.name, AddressChanges(pop3_policy=policy))
    except LoginThrottled as exc:
        return render(request, "me.html", 429, errors={"current_password": str(exc)}, **context)
    except UserError as exc:
        return form_error(request, "me.html", exc, form, **context)
    flash(request, "Your POP3 setting was saved.")
    return redirect(request, "me")


async def _endpoints(ops: Operations) -> list[object]:
    from ...services import clientconfig

    return [e for e in clientconfig.endpoints(ops.office.config, ops.office.bound) if e.for_clients]


@page(staff=False)
async def me_mobileconfig(request: Request, ops: Operations) -> Response:
    from .addresses import mobileconfig_response

    return await mobileconfig_response(request, ops, "", ops.who.name)
