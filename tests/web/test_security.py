"""Attacks on the panel, the API and the autoconfiguration endpoints (security review)."""

from __future__ import annotations

import httpx
import pytest

from postoffice.app import Postoffice
from postoffice.services.sessions import OpenSession

from .conftest import ADMIN_PASSWORD, add_owner, api_token, csrf_of, login, post


async def _login_with_next(client: httpx.AsyncClient, next_url: str) -> httpx.Response:
    token = await csrf_of(client, "/login")
    return await client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD,
                                             "csrf_token": token, "next": next_url})


@pytest.mark.parametrize("target", ["/\\evil.example", "/\t/evil.example", "/\\/evil.example",
                                    "//evil.example", "https://evil.example", "/\r\n/evil.example"])
async def test_login_next_never_leaves_the_site(make_client, target: str) -> None:  # type: ignore[no-untyped-def]
    client = make_client()
    response = await _login_with_next(client, target)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_login_next_keeps_a_local_path(client: httpx.AsyncClient) -> None:
    response = await _login_with_next(client, "/domains/example.com/email?x=1")
    assert response.headers["location"] == "/domains/example.com/email?x=1"


async def test_oversized_bodies_are_refused_unread(client: httpx.AsyncClient) -> None:
    big = b"<a>" + b"x" * (2 * 1024 * 1024) + b"</a>"
    response = await client.post("/autodiscover/autodiscover.xml", content=big)
    assert response.status_code == 413
    response = await client.post("/login", content=b"username=" + b"a" * (2 * 1024 * 1024),
                                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536
    response = await client.post("/autodiscover/autodiscover.xml", content=chunks())
    assert response.status_code == 413


async def test_autodiscover_refuses_dtds(client: httpx.AsyncClient) -> None:
    plain = (b'<?xml version="1.0"?><Autodiscover><Request><EMailAddress>alice@example.com</EMailAddress>'
             b"</Request></Autodiscover>")
    assert (await client.post("/autodiscover/autodiscover.xml", content=plain)).status_code == 200
    internal = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "alice@example.com">]>'
                b"<Autodiscover><Request><EMailAddress>&a;</EMailAddress></Request></Autodiscover>")
    assert (await client.post("/autodiscover/autodiscover.xml", content=internal)).status_code == 404
    xxe = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>")
    response = await client.post("/autodiscover/autodiscover.xml", content=xxe)
    assert response.status_code == 404 and "root:" not in response.text
    laughs = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    prev = "a"
    for name in "bcdefghij":
        laughs += f'<!ENTITY {name} "{("&" + prev + ";") * 10}">'.encode()
        prev = name
    laughs += b"]><A><EMailAddress>&j;</EMailAddress></A>"
    assert (await client.post("/autodiscover/autodiscover.xml", content=laughs)).status_code == 404


async def test_autodiscover_answers_the_canonical_address(client: httpx.AsyncClient) -> None:
    response = await client.get("/autodiscover/autodiscover.xml", params={"email": "<Alice@EXAMPLE.com>"})
    assert response.status_code == 200
    assert "<LoginName>alice@example.com</LoginName>" in response.text


async def test_mobileconfig_filename_is_the_canonical_address(client: httpx.AsyncClient) -> None:
    await login(client)
    response = await client.get("/domains/example.com/email/ALICE@example.com%0d%0aX-Evil:%201/mobileconfig")
    assert response.status_code == 404  # not an address
    response = await client.get("/domains/example.com/email/ALICE@example.com%0d%0a/mobileconfig")
    disposition = response.headers["content-disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition == 'attachment; filename="alice_at_example.com.mobileconfig"'


async def test_panel_pages_are_not_cached(admin: httpx.AsyncClient) -> None:
    response = await post(admin, "/settings/tokens", {"name": "ci"})
    assert response.status_code == 200 and "po_" in response.text
    assert "no-store" in response.headers["cache-control"]
    assert "no-store" in (await admin.get("/")).headers["cache-control"]
    assert "no-store" not in (await admin.get("/static/panel.css")).headers.get("cache-control", "")


async def test_staff_password_change_ends_their_sessions(office: Postoffice, make_client) -> None:  # type: ignore[no-untyped-def]
    await add_owner(office, "olga", ["example.com"])
    browser = make_client()
    assert (await login(browser, "olga", "owner-password")).status_code == 303
    assert (await browser.get("/domains/example.com")).status_code == 200
    await office.store.update_admin_password("olga", await office.auth.hash_password("changed-password"))
    response = await browser.get("/domains/example.com")
    assert response.status_code == 303 and "/login" in response.headers["location"]


async def test_a_recreated_login_does_not_inherit_old_sessions(office: Postoffice, make_client) -> None:  # type: ignore[no-untyped-def]
    await add_owner(office, "olga", ["example.com"])
    browser = make_client()
    assert (await login(browser, "olga", "owner-password")).status_code == 303
    await office.store.remove_admin("olga")
    await add_owner(office, "olga", ["other.org"], password="someone-else-1")
    response = await browser.get("/domains/other.org")
    assert response.status_code == 303 and "/login" in response.headers["location"]


# -- checks of what was already right (kept as regression tests) ------------------------------


async def test_owner_cannot_reach_another_owners_domain(office: Postoffice, make_client) -> None:  # type: ignore[no-untyped-def]
    await add_owner(office, "olga", ["example.com"])
    browser = make_client()
    assert (await login(browser, "olga", "owner-password")).status_code == 303
    token = await csrf_of(browser, "/")
    for path in ("/domains/other.org", "/domains/other.org/email", "/domains/OTHER.ORG/email",
                 "/domains/other.org/email/bob@other.org/edit", "/domains/other.org/email/bob@other.org/devices",
                 "/domains/other.org/email/bob@other.org/mobileconfig", "/domains/other.org/aliases",
                 "/domains/other.org/dns", "/domains/other.org/client-settings", "/settings/logins", "/queue"):
        assert (await browser.get(path)).status_code == 403, path
    for path in ("/domains/other.org/email/bob@other.org/delete", "/domains/other.org/delete",
                 "/domains/other.org/email", "/domains/other.org/aliases", "/domains/other.org/protocols",
                 "/settings/logins/admin/delete", "/queue/retry"):
        response = await browser.post(path, data={"csrf_token": token, "address": "x", "password": "p" * 12,
                                                  "targets": "a@example.com", "protocol_policy": "imap-only"})
        assert response.status_code == 403, path
    # An address of another domain through one's own domain's URL: not found, not changed.
    response = await browser.post("/domains/example.com/email/bob@other.org/delete", data={"csrf_token": token})
    assert response.status_code == 404
    assert await office.store.get_account("bob@other.org") is not None
    assert (await office.store.get_domain("other.org")).protocol_policy == "any"  # type: ignore[union-attr]


async def test_api_owner_idor(office: Postoffice, client: httpx.AsyncClient) -> None:
    await add_owner(office, "olga", ["example.com"])
    headers = {"Authorization": f"Bearer {await api_token(office, 'olga')}"}
    await api_token(office, "admin")
    admin_row = await office.store.get_admin("admin")
    assert admin_row is not None
    admin_tokens = await office.store.list_api_tokens(admin_row["id"])
    for method, path in (("GET", "/api/v1/domains/other.org"), ("PATCH", "/api/v1/domains/other.org"),
                         ("GET", "/api/v1/domains/other.org/addresses/bob@other.org"),
                         ("DELETE", "/api/v1/domains/other.org/addresses/bob@other.org"),
                         ("GET", "/api/v1/domains/other.org/addresses/bob@other.org/sessions"),
                         ("GET", "/api/v1/logins"), ("GET", "/api/v1/queue")):
        response = await client.request(method, path, headers=headers, json={} if method == "PATCH" else None)
        assert response.status_code == 403, path
    response = await client.delete(f"/api/v1/tokens/{admin_tokens[0]['id']}", headers=headers)
    assert response.status_code in (400, 403, 404)
    assert len(await office.store.list_api_tokens(admin_row["id"])) == 1  # the admin's token survives
    # Cookies are no credential for the API (no CSRF through it).
    assert (await client.get("/api/v1/domains", headers={"Cookie": "postoffice_session=x"})).status_code == 401


async def test_imap_id_and_display_names_are_escaped(office: Postoffice, admin: httpx.AsyncClient) -> None:
    evil = '<script>alert(1)</script>"\'><img src=x onerror=alert(1)>'
    await office.accounts.update("alice@example.com", display_name=evil)
    account = await office.store.get_account("alice@example.com")
    assert account is not None
    session = OpenSession(id=1, account_id=account.id, address=account.address, protocol="imap",
                          remote="192.0.2.1", tls=True, port=993, since=0.0, client_id=evil)
    office.sessions.for_account = lambda _id: [session]  # type: ignore[method-assign]
    for path in ("/domains/example.com/email", "/domains/example.com/email/alice@example.com/edit",
                 "/domains/example.com/email/alice@example.com/devices"):
        text = (await admin.get(path)).text
        assert "<script>alert" not in text and "<img src=x" not in text, path
    response = await admin.get("/domains/example.com/email/<script>x</script>@example.com/edit")
    assert "<script>x" not in response.text


async def test_security_headers_everywhere(client: httpx.AsyncClient) -> None:
    for path in ("/login", "/api/v1/openapi.json", "/mail/config-v1.1.xml?emailaddress=alice@example.com"):
        headers = (await client.get(path)).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"


async def test_addresses_the_urls_cannot_carry_are_refused(admin: httpx.AsyncClient, office: Postoffice) -> None:
    # "a/b@..." is a valid address, but url_for() of its Edit link fails: the whole list page
    # was a 500 for everyone (an owner could break the domain's page for the admin too).
    for local in ("a/b", "a?b", "a#b", "a%2e"):
        response = await post(admin, "/domains/example.com/email",
                              {"address": local, "password": "long-password-1"})
        assert response.status_code == 400, local
        assert await office.store.get_account(f"{local}@example.com") is None
    assert (await admin.get("/domains/example.com/email")).status_code == 200


async def test_panel_sessions_are_revoked_on_the_server(office: Postoffice, make_client: object) -> None:
    """Issue 16: a copied session cookie stops working once its session signs out, and "log out
    elsewhere" ends the other browsers' sessions while keeping this one."""
    from .conftest import login, post

    first, second = make_client(), make_client()
    assert (await login(first)).status_code == 303
    assert (await login(second)).status_code == 303
    copied = dict(first.cookies)
    thief = make_client()
    thief.cookies.update(copied)
    assert (await thief.get("/")).status_code == 200  # the copied cookie works while the session lives
    assert await office.store.count_panel_sessions("admin", "admin") == 2

    response = await post(first, "/logout", {}, page="/")
    assert response.status_code == 303
    assert (await thief.get("/")).status_code == 303  # back to the login page: revoked on the server
    assert (await second.get("/")).status_code == 200
    assert await office.store.count_panel_sessions("admin", "admin") == 1

    third = make_client()
    assert (await login(third)).status_code == 303
    response = await post(third, "/logout/others", {}, page="/")
    assert response.status_code == 303
    assert (await second.get("/")).status_code == 303
    assert (await third.get("/")).status_code == 200


async def test_totp_two_factor_login(office: Postoffice, make_client: object) -> None:
    """Issue 16: TOTP enrolment (time from a fixed clock), the code step at login, one use per
    code, recovery codes, other sessions ended when 2FA goes on, and app-passwords-only."""
    import re

    from postoffice.services import totp
    from postoffice.services.app_passwords import AppPasswords

    from .conftest import login, post

    now = [1_900_000_000.0]
    office.clock = lambda: now[0]  # type: ignore[attr-defined]
    other = make_client()
    assert (await login(other)).status_code == 303
    me = make_client()
    assert (await login(me)).status_code == 303
    page = await post(me, "/settings/2fa", {"action": "start"}, page="/settings/2fa")
    secret = re.search(r"data-totp-secret>([A-Z2-7]+)<", page.text).group(1)
    assert "otpauth://totp/" in page.text
    wrong = await post(me, "/settings/2fa", {"action": "confirm", "code": "000000"}, page="/settings/2fa")
    assert wrong.status_code == 400 or totp.totp(secret, int(now[0] // 30)) == "000000"
    done = await post(me, "/settings/2fa", {"action": "confirm", "code": totp.totp(secret, int(now[0] // 30))},
                      page="/settings/2fa")
    assert done.status_code == 200 and "1 other panel session ended" in done.text
    codes = re.findall(r"data-recovery-code>([a-z0-9-]+)<", done.text)
    assert len(codes) == 10
    assert (await other.get("/")).status_code == 303  # the other browser was signed out
    assert (await me.get("/")).status_code == 200

    # Logging in now needs the code; the password alone gives no session.
    fresh = make_client()
    response = await login(fresh)
    assert response.status_code == 303 and response.headers["location"].endswith("/login/2fa")
    assert (await fresh.get("/")).status_code == 303
    bad = await post(fresh, "/login/2fa", {"code": "123456" if totp.totp(secret, int(now[0] // 30)) != "123456"
                                           else "654321"})
    assert bad.status_code == 400
    used = totp.totp(secret, int(now[0] // 30))  # the step used to turn 2FA on: refused (once only)
    assert (await post(fresh, "/login/2fa", {"code": used})).status_code == 400
    now[0] += 30
    ok = await post(fresh, "/login/2fa", {"code": totp.totp(secret, int(now[0] // 30))})
    assert ok.status_code == 303 and (await fresh.get("/")).status_code == 200

    # A recovery code works once.
    spare = make_client()
    await login(spare)
    assert (await post(spare, "/login/2fa", {"code": codes[0]})).status_code == 303
    again = make_client()
    await login(again)
    assert (await post(again, "/login/2fa", {"code": codes[0]})).status_code == 400
    assert await office.store.recovery_codes_left("admin", "admin") == 9

    # A mailbox with 2FA may accept app passwords only on the mail protocols.
    alice = await office.store.get_account("alice@example.com")
    app = await AppPasswords(office.store).create("alice@example.com", "Phone", ["imap"])
    assert (await office.auth.authenticate("alice@example.com", "alice-password", "127.0.0.1", "imap")).ok
    await office.store.set_app_passwords_only(alice.id, True)
    refused = await office.auth.authenticate("alice@example.com", "alice-password", "127.0.0.1", "imap")
    assert not refused.ok and "app passwords only" in refused.reason
    assert (await office.auth.authenticate("alice@example.com", app.password, "127.0.0.1", "imap")).ok
