"""Two-factor login (issue 16): the code step after the password, and the enrolment page.

After the right password, a login with TOTP on gets no session yet: the session only holds the
pending login (who, for at most five minutes, five tries) until a code from the authenticator
app, or one of the recovery codes, is given. Turning 2FA on ends every other panel session of
the login. A mailbox user with 2FA on may also make IMAP/POP3/SMTP accept app passwords only.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...services import totp
from ...services.panel_users import Principal
from ..auth import CsrfError, checked_form, flash, sign_in, sign_out_others
from ..operations import Operations
from .common import error_page, page, redirect, render

PENDING_SECONDS = 300
MAX_TRIES = 5


def clock(request: Request) -> float:
    """The panel's clock (``office.clock`` when a test fixes it)."""
    return float(getattr(request.app.state.office, "clock", totp.system_clock)())


def issuer(request: Request) -> str:
    return str(request.app.state.office.config.hostname)


async def needs_second_factor(request: Request, who: Principal, next_url: str) -> Response | None:
    """Called after a right password: with TOTP on, remember the pending login and ask for a code."""
    if await request.app.state.office.store.get_totp(who.kind, who.name) is None:
        return None
    request.session.clear()
    request.session["pending"] = {"kind": who.kind, "name": who.name, "stamp": who.stamp, "key": who.key,
                                  "at": time.time(), "next": next_url, "tries": 0}
    return RedirectResponse(str(request.url_for("login_2fa")), status_code=303)


async def login_2fa(request: Request) -> Response:
    pending: dict[str, Any] | None = request.session.get("pending")
    if not pending or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        request.session.pop("pending", None)
        return redirect(request, "login")
    if request.method == "GET":
        return render(request, "login_2fa.html")
    try:
        form = await checked_form(request)
    except CsrfError as exc:
        return error_page(request, 403, str(exc))
    store = request.app.state.office.store
    kind, name = str(pending["kind"]), str(pending["name"])
    code = str(form.get("code", "")).strip()
    record = await store.get_totp(kind, name)
    ok = False
    if record is not None and code:
        if code.replace(" ", "").isdigit():
            step = totp.verify(record[0], code, clock(request), record[1])
            ok = step is not None and await store.accept_totp_step(kind, name, step)
        else:
            ok = await store.use_recovery_code(kind, name, totp.recovery_hash(code))
    if not ok:
        pending["tries"] = int(pending.get("tries", 0)) + 1
        if pending["tries"] >= MAX_TRIES:
            request.session.pop("pending", None)
            flash(request, "Too many wrong codes: log in again.", "error")
            return redirect(request, "login")
        request.session["pending"] = pending
        return render(request, "login_2fa.html", 400, errors={"code": "that code is not right (or was used already)"})
    who = await request.app.state.panel_users.resume(kind, name, float(pending.get("stamp") or 0),
                                                     str(pending.get("key") or ""))
    if who is None:
        request.session.pop("pending", None)
        return redirect(request, "login")
    next_url = str(pending.get("next") or "/")
    await sign_in(request, who)
    return RedirectResponse(next_url if not who.is_user else str(request.url_for("me")), status_code=303)


@page(staff=False)
async def settings(request: Request, ops: Operations) -> Response:
    """Turn two-factor login on (scan, confirm with a code, keep the recovery codes) or off."""
    store = ops.store
    who = ops.who
    record = await store.get_totp(who.kind, who.name)
    account = await store.get_account(who.name) if who.is_user else None
    context: dict[str, Any] = {"enabled": record is not None,
                               "codes_left": await store.recovery_codes_left(who.kind, who.name) if record else 0,
                               "app_only": bool(account and await store.app_passwords_only(account.id)),
                               "is_user": who.is_user}
    if request.method == "GET":
        return render(request, "twofactor.html", **context)
    form = await checked_form(request)
    action = form.get("action")
    now = clock(request)
    if action == "start" and record is None:
        secret = totp.new_secret()
        request.session["totp_setup"] = secret
        return render(request, "twofactor.html", secret=secret,
                      uri=totp.provisioning_uri(secret, who.name, issuer(request)), **context)
    if action == "confirm" and record is None:
        secret = str(request.session.get("totp_setup") or "")
        step = totp.verify(secret, str(form.get("code", "")), now) if secret else None
        if step is None:
            return render(request, "twofactor.html", 400, secret=secret or None,
                          uri=totp.provisioning_uri(secret, who.name, issuer(request)) if secret else None,
                          errors={"code": "that code is not right; check the phone's clock and try the next one"},
                          **context)
        codes = totp.new_recovery_codes()
        await store.enable_totp(who.kind, who.name, secret, step, [totp.recovery_hash(c) for c in codes])
        request.session.pop("totp_setup", None)
        ended = await sign_out_others(request, who)  # issue 16: turning 2FA on ends the other sessions
        context.update(enabled=True, codes_left=len(codes))
        return render(request, "twofactor.html", recovery_codes=codes, ended=ended, **context)
    if action == "disable" and record is not None:
        step = totp.verify(record[0], str(form.get("disable_code", "")), now, record[1])
        if step is None or not await store.accept_totp_step(who.kind, who.name, step):
            return render(request, "twofactor.html", 400, errors={"disable_code": "that code is not right"}, **context)
        await store.disable_totp(who.kind, who.name)
        flash(request, "Two-factor login is off.")
        return redirect(request, "twofactor")
    if action == "app_only" and record is not None and account is not None:
        await store.set_app_passwords_only(account.id, "app_only" in form and form.get("app_only") == "on")
        flash(request, "Saved: " + ("IMAP, POP3 and SMTP now accept app passwords only."
                                    if form.get("app_only") == "on" else "the main password works for mail again."))
        return redirect(request, "twofactor")
    return redirect(request, "twofactor")
