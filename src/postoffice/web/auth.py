"""Panel sessions, CSRF and API tokens.

- Sessions are also kept on the server (issue 16): the cookie carries a random session id whose
  digest is a row in ``panel_sessions``; signing out deletes it, so a copied cookie stops
  working at once, and "sign out everywhere else" (and a password change) deletes the others.
- The session is Starlette's signed cookie (itsdangerous, HMAC-SHA1 over the secret), HttpOnly
  and SameSite=Lax, marked Secure when the panel's public URL is https. It holds only who signed
  in and the CSRF token; the principal is rebuilt from the store on every request, so removing a
  login or changing its password (a mailbox's or a panel login's) ends its sessions.
- Every POST of a page must carry the session's CSRF token, as the ``csrf_token`` form field or
  the ``X-CSRF-Token`` header (htmx sends it); a missing or wrong token is refused with 403.
- The REST API takes ``Authorization: Bearer <token>`` and never reads cookies, so CSRF does not
  apply to it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from ..services.panel_users import PanelUsers, Principal

SECRET_SETTING = "panel_secret_key"
SESSION_COOKIE = "postoffice_session"
SESSION_MAX_AGE = 12 * 3600


class CsrfError(Exception):
    """A form without the right CSRF token (forged, or from an expired session)."""


def panel_secret(office: Any) -> str:
    """config.panel.secret_key, or one generated at first start and kept in the settings table."""
    if office.config.panel.secret_key:
        return str(office.config.panel.secret_key)
    return str(office.store.setting_or_default_sync(SECRET_SETTING, lambda: secrets.token_urlsafe(48)))


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after checking its CSRF token against the session's."""
    form = await request.form()
    sent = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
    expected = str(request.session.get("csrf") or "")
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError("the form was not sent from this panel, or your session expired; reload the page")
    return form


def _sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def session_hash(request: Request) -> str:
    return _sid_hash(str(request.session.get("sid") or ""))


async def sign_in(request: Request, who: Principal) -> None:
    request.session.clear()  # a fresh session (and CSRF token) at each login: no fixation
    sid = secrets.token_urlsafe(32)
    await request.app.state.office.store.add_panel_session(_sid_hash(sid), who.kind, who.name, SESSION_MAX_AGE)
    request.session.update({"kind": who.kind, "name": who.name, "stamp": who.stamp, "key": who.key, "sid": sid})
    csrf_token(request)


async def sign_out(request: Request) -> None:
    """End this session here and on the server (the cookie is useless afterwards)."""
    if request.session.get("sid"):
        await request.app.state.office.store.remove_panel_session(session_hash(request))
    request.session.clear()


async def sign_out_others(request: Request, who: Principal) -> int:
    """End every other session of this login (other browsers, a copied cookie)."""
    return int(await request.app.state.office.store.remove_panel_sessions(who.kind, who.name, keep=session_hash(request)))


async def current_principal(request: Request) -> Principal | None:
    if hasattr(request.state, "principal"):
        return request.state.principal  # type: ignore[no-any-return]
    users: PanelUsers = request.app.state.panel_users
    kind, name = request.session.get("kind"), request.session.get("name")
    who = None
    if isinstance(kind, str) and isinstance(name, str):
        alive = bool(request.session.get("sid")) and await request.app.state.office.store.panel_session_alive(
            session_hash(request), kind, name, SESSION_MAX_AGE)
        who = await users.resume(kind, name, float(request.session.get("stamp") or 0),
                                 str(request.session.get("key") or "")) if alive else None
        if who is None:
            await sign_out(request)
    request.state.principal = who
    return who


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", []).append([kind, message])
    request.session["flash"] = request.session["flash"]  # mark modified


def pop_flashes(request: Request) -> list[list[str]]:
    return list(request.session.pop("flash", []) or [])


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"
