"""Panel pages over ASGI: logins, CSRF, authorization, validation messages, throttling."""

from __future__ import annotations

import re

import httpx

from postoffice.app import Postoffice
from postoffice.services.access import protocol_access

from .conftest import ADMIN_PASSWORD, add_owner, csrf_of, login, post

EDIT = "/domains/example.com/email/alice@example.com/edit"


async def test_pages_need_a_login(client: httpx.AsyncClient) -> None:
    for path in ("/", "/domains/example.com/email", EDIT, "/settings/tokens"):
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("http://testserver/login?next=")


async def test_session_cookie_is_signed_httponly_samesite(client: httpx.AsyncClient) -> None:
    response = await login(client)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert response.headers["x-frame-options"] == "DENY"
    # A tampered cookie is not a session.
    value = client.cookies["postoffice_session"]
    client.cookies.set("postoffice_session", value[:-3] + "AAA")
    assert (await client.get("/")).status_code == 303


ASSET_HOST = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"']?(?:https?:)?//([^/\"'>\s]+)", re.I)


async def test_every_main_page_renders(admin: httpx.AsyncClient) -> None:
    for path in ("/", "/domains/example.com", "/domains/example.com/email", EDIT,
                 "/domains/example.com/email/alice@example.com/devices", "/domains/example.com/protocols",
                 "/domains/example.com/aliases", "/domains/example.com/client-settings",
                 "/domains/example.com/dns", "/settings/logins", "/settings/tokens"):
        response = await admin.get(path)
        assert response.status_code == 200, path
        assert "/static/htmx.min.js" in response.text
        # Scripts and styles come from the server itself, never from another host (a CDN). (Not
        # a search for "cdn": the DNS page shows random DKIM keys, which may contain it.)
        assert set(ASSET_HOST.findall(response.text)) <= {response.url.netloc.decode()}, path
    assert (await admin.get("/static/htmx.min.js")).status_code == 200


async def test_bad_login_keeps_the_username_and_says_why(client: httpx.AsyncClient) -> None:
    response = await login(client, "admin", "wrong")
    assert response.status_code == 400
    assert "invalid username or password" in response.text
    assert 'value="admin"' in response.text


async def test_login_is_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await login(client, "admin", "guess")).status_code == 400
    response = await login(client, "admin", ADMIN_PASSWORD)  # even the right password, for now
    assert response.status_code == 429
    assert "Too many failed logins" in response.text


async def test_missing_or_forged_csrf_changes_nothing(admin: httpx.AsyncClient, office: Postoffice) -> None:
    response = await admin.post("/", data={"name": "new.example"})
    assert response.status_code == 403
    response = await admin.post("/", data={"name": "new.example", "csrf_token": "forged"})
    assert response.status_code == 403
    assert "not sent from this panel" in response.text
    response = await admin.post(EDIT, data={"switches": "1", "imap": "on", "csrf_token": "forged"})
    assert response.status_code == 403
    assert await office.store.get_domain("new.example") is None
    assert (await office.store.get_account("alice@example.com")).pop3_enabled


async def test_login_form_needs_csrf(client: httpx.AsyncClient) -> None:
    await client.get("/login")
    response = await client.post("/login", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 403


async def test_add_and_remove_domain(admin: httpx.AsyncClient, office: Postoffice) -> None:
    response = await post(admin, "/", {"name": "New.Example"})
    assert response.status_code == 303
    assert await office.store.get_domain("new.example") is not None
    response = await post(admin, "/domains/new.example/delete", {}, page="/")
    assert response.status_code == 303
    assert await office.store.get_domain("new.example") is None


async def test_invalid_and_duplicate_domain(admin: httpx.AsyncClient) -> None:
    response = await post(admin, "/", {"name": "bad_domain!"})
    assert response.status_code == 400
    assert "is not a valid domain name" in response.text and 'value="bad_domain!"' in response.text
    response = await post(admin, "/", {"name": "example.com"})
    assert "already exists" in response.text


async def test_address_validation(admin: httpx.AsyncClient, office: Postoffice) -> None:
    page = "/domains/example.com/email"
    response = await post(admin, page, {"address": "a b@@", "password": "long-password"})
    assert response.status_code == 400 and "is not a valid email address" in response.text
    response = await post(admin, page, {"address": "alice", "password": "long-password"})
    assert "alice@example.com already exists" in response.text
    response = await post(admin, page, {"address": "carol", "password": "short"})
    assert "at least 8 characters" in response.text and 'value="carol"' in response.text
    response = await post(admin, page, {"address": "carol", "password": "long-password", "quota": "-5"})
    assert "cannot be negative" in response.text
    response = await post(admin, page, {"address": "carol", "password": "long-password", "quota": "10"})
    assert response.status_code == 303
    carol = await office.store.get_account("carol@example.com")
    assert carol is not None and carol.quota_bytes == 10 * 1024 * 1024
    # issue #12: look-alikes of existing addresses and invisible characters are refused
    for look_alike, code_point in (("c\u0430rol", "U+0430"), ("aſice", "U+017F"), ("al\u00adice", "U+00AD"),
                                   ("ali\u202ece", "U+202E")):
        response = await post(admin, page, {"address": look_alike, "password": "long-password"})
        if code_point == "U+0430":  # CYRILLIC SMALL LETTER A is a letter of its own: a new address
            assert response.status_code == 303
            continue
        assert response.status_code == 400 and code_point in response.text, look_alike
    assert await office.store.get_account("asice@example.com") is None


async def test_panel_finds_addresses_with_the_mail_servers_normalisation(admin: httpx.AsyncClient,
                                                                        office: Postoffice) -> None:
    """The panel looks addresses up through mail.address, like delivery and logins: any case,
    a trailing dot, NFD for NFC (it used .strip().lower() before issue #12)."""
    response = await post(admin, "/domains/example.com/email", {"address": "josé", "password": "long-password"})
    assert response.status_code == 303
    for spelling in ("jose\u0301@example.com", "JOSÉ@Example.com", "alice@EXAMPLE.com."):
        page = await admin.get(f"/domains/example.com/email/{spelling}/edit")
        assert page.status_code == 200, spelling


async def test_edit_settings_and_advanced_switches(admin: httpx.AsyncClient, office: Postoffice) -> None:
    response = await post(admin, EDIT, {"switches": "1", "imap": "on", "smtp": "on", "display_name": "Alice A.",
                                        "quota": "100", "aliases": "al, info", "forward_to": "bob@other.org",
                                        "pop3_policy": "keep"})
    assert response.status_code == 303, response.text
    alice = await office.store.get_account("alice@example.com")
    assert (alice.imap_enabled, alice.pop3_enabled, alice.smtp_enabled) == (True, False, True)
    assert alice.display_name == "Alice A." and alice.forward_to == "bob@other.org"
    assert alice.quota_bytes == 100 * 1024 * 1024 and alice.pop3_policy == "keep"
    assert {a.address for a in await office.store.list_aliases("example.com")} == {"al@example.com",
                                                                                    "info@example.com"}
    domain = await office.store.get_domain("example.com")
    assert not protocol_access(alice, domain, "pop3").allowed
    page = await admin.get("/domains/example.com/email")
    assert 'data-protocol="pop3" data-allowed="no"' in page.text
    # Removing an alias from the list removes it.
    await post(admin, EDIT, {"switches": "1", "imap": "on", "pop3": "on", "smtp": "on", "aliases": "al"})
    assert {a.address for a in await office.store.list_aliases("example.com")} == {"al@example.com"}


async def test_password_reset_from_edit_settings(admin: httpx.AsyncClient, office: Postoffice) -> None:
    response = await post(admin, EDIT, {"password": "new-password-9", "password_confirm": "other"})
    assert response.status_code == 400 and "the two passwords differ" in response.text
    response = await post(admin, EDIT, {"password": "new-password-9", "password_confirm": "new-password-9"})
    assert response.status_code == 303
    assert (await office.auth.check_password("alice@example.com", "new-password-9", "127.0.0.1")).ok


async def test_quota_below_use_is_refused(admin: httpx.AsyncClient, office: Postoffice) -> None:
    alice = await office.store.get_account("alice@example.com")
    await office.store.deliver([(alice.id, "INBOX")], b"Subject: big\r\n\r\n" + b"x" * 300_000 + b"\r\n")
    response = await post(admin, EDIT, {"quota": "0.1", "display_name": "Changed"})
    assert response.status_code == 400
    assert "below what the mailbox already uses" in response.text
    assert 'value="0.1"' in response.text and 'value="Changed"' in response.text
    alice = await office.store.get_account("alice@example.com")
    assert alice.quota_bytes == 0 and alice.display_name == "Alice"  # nothing saved


async def test_alias_loop_and_duplicate(admin: httpx.AsyncClient, office: Postoffice) -> None:
    page = "/domains/example.com/aliases"
    assert (await post(admin, page, {"address": "a", "targets": "b@example.com"})).status_code == 303
    response = await post(admin, page, {"address": "b", "targets": "a@example.com"})
    assert response.status_code == 400 and "would loop" in response.text
    response = await post(admin, page, {"address": "a", "targets": "alice@example.com"})
    assert "already exists" in response.text
    response = await post(admin, "/domains/example.com/aliases/a@example.com/delete", {}, page=page)
    assert response.status_code == 303 and await office.store.get_alias("a@example.com") is None


async def test_domain_policy_overrides_switches(admin: httpx.AsyncClient, office: Postoffice) -> None:
    response = await post(admin, "/domains/example.com/protocols", {"protocol_policy": "pop3-only"})
    assert response.status_code == 303
    alice = await office.store.get_account("alice@example.com")
    domain = await office.store.get_domain("example.com")
    assert not protocol_access(alice, domain, "imap").allowed
    page = await admin.get(EDIT)
    assert 'data-forced="imap"' in page.text and "POP3 only" in page.text
    response = await post(admin, "/domains/example.com/protocols", {"protocol_policy": "nonsense"})
    assert response.status_code == 400 and "protocol policy must be one of" in response.text


async def test_owner_sees_only_own_domains(make_client, office: Postoffice) -> None:  # type: ignore[no-untyped-def]
    await add_owner(office, "olga", ["example.com"])
    await add_owner(office, "otto", ["other.org"])
    olga = make_client()
    assert (await login(olga, "olga", "owner-password")).status_code == 303
    overview = await olga.get("/")
    assert "example.com" in overview.text and "other.org" not in overview.text
    assert (await olga.get("/domains/example.com/email")).status_code == 200
    for path in ("/domains/other.org/email", "/domains/other.org/email/bob@other.org/edit",
                 "/domains/other.org/dns", "/domains/example.com/email/bob@other.org/edit", "/settings/logins"):
        response = await olga.get(path)
        assert response.status_code in (403, 404), path
    assert (await olga.get("/domains/other.org/email")).status_code == 403
    token = await csrf_of(olga, "/")
    bob_before = await office.store.get_account("bob@other.org")
    for path, data in (("/domains/other.org/email/bob@other.org/edit", {"switches": "1"}),
                       ("/domains/other.org/email/bob@other.org/delete", {}),
                       ("/domains/other.org/protocols", {"protocol_policy": "imap-only"}),
                       ("/domains/other.org/delete", {}),
                       ("/domains/example.com/delete", {})):  # owners cannot remove domains either
        response = await olga.post(path, data={**data, "csrf_token": token})
        assert response.status_code == 403, path
    assert await office.store.get_account("bob@other.org") == bob_before
    assert (await office.store.get_domain("other.org")).protocol_policy == "any"
    assert await office.store.get_domain("example.com") is not None


async def test_mailbox_user_changes_own_password_and_pop_policy(make_client, office: Postoffice) -> None:  # type: ignore[no-untyped-def]
    user = make_client()
    response = await login(user, "alice@example.com", "alice-password")
    assert response.status_code == 303 and response.headers["location"].endswith("/me")
    assert (await user.get("/")).headers["location"].endswith("/me")
    assert (await user.get("/domains/example.com/email")).status_code == 303
    response = await post(user, "/me", {"action": "pop3", "pop3_policy": "keep"})
    assert response.status_code == 303
    assert (await office.store.get_account("alice@example.com")).pop3_policy == "keep"
    response = await post(user, "/me", {"action": "pop3", "pop3_policy": "explode"})
    assert response.status_code == 400
    response = await post(user, "/me", {"action": "password", "current_password": "wrong-one",
                                        "new_password": "brand-new-pw", "confirm_password": "brand-new-pw"})
    assert response.status_code == 400 and "current password is not right" in response.text
    response = await post(user, "/me", {"action": "password", "current_password": "alice-password",
                                        "new_password": "brand-new-pw", "confirm_password": "brand-new-pw"})
    assert response.status_code == 303
    assert (await office.auth.check_password("alice@example.com", "brand-new-pw", "127.0.0.1")).ok
    assert (await user.get("/me")).status_code == 303  # the old session ended with the password change
    assert (await user.get("/me/mobileconfig")).status_code == 303


async def test_delete_address_and_logins_and_tokens_pages(admin: httpx.AsyncClient, office: Postoffice) -> None:
    response = await post(admin, "/domains/example.com/email/alice@example.com/delete", {},
                          page="/domains/example.com/email")
    assert response.status_code == 303 and await office.store.get_account("alice@example.com") is None
    response = await post(admin, "/settings/logins", {"username": "olga", "password": "pw-long-enough",
                                                      "role": "owner", "domains": "example.com"})
    assert response.status_code == 303
    response = await post(admin, "/settings/logins", {"username": "bad name", "password": "pw-long-enough"})
    assert response.status_code == 400 and "login name" in response.text
    response = await post(admin, "/settings/tokens", {"name": "billing"})
    assert response.status_code == 200 and 'id="new-token"' in response.text
    tokens = await office.store.list_api_tokens(1)
    assert [t["name"] for t in tokens] == ["billing"]
    response = await post(admin, f"/settings/tokens/{tokens[0]['id']}/delete", {}, page="/settings/tokens")
    assert response.status_code == 303 and not await office.store.list_api_tokens(1)
    response = await post(admin, "/settings/logins/olga/delete", {}, page="/settings/logins")
    assert response.status_code == 303 and await office.store.get_admin("olga") is None


async def test_client_settings_and_dns_pages(admin: httpx.AsyncClient) -> None:
    page = (await admin.get("/domains/example.com/client-settings")).text
    assert "We always recommend running SSL" in page and "mail.test.example" in page
    assert "mail.example.com" in page and "<code>993</code>" in page and "<code>587</code>" in page
    dns = (await admin.get("/domains/example.com/dns")).text
    for needle in ("MX", "v=spf1 mx -all", "_dmarc.example.com.", "_imaps._tcp.example.com.",
                   "_submissions._tcp.example.com.", "po-rsa._domainkey.example.com.", "k=ed25519"):
        assert needle in dns


async def test_app_passwords_page(admin: httpx.AsyncClient, office: Postoffice) -> None:
    import re as _re

    page = "/domains/example.com/email/alice@example.com/app-passwords"
    response = await post(admin, page, {"name": "Laptop", "imap": "on", "smtp": "on", "expires_days": "30"})
    assert response.status_code == 200, response.text
    shown = _re.search(r"data-app-password>([a-z-]+)<", response.text)
    assert shown and "shown only this once" in response.text
    result = await office.auth.authenticate("alice@example.com", shown.group(1), "127.0.0.1", "smtp")
    assert result.ok and result.app_password.name == "Laptop"
    listing = await admin.get(page)
    assert "Laptop" in listing.text and shown.group(1) not in listing.text  # never shown again
    bad = await post(admin, page, {"name": "Nothing ticked"})
    assert bad.status_code == 400 and "imap, pop3, smtp" in bad.text
    [app] = await office.store.list_app_passwords((await office.store.get_account("alice@example.com")).id)
    response = await post(admin, f"{page}/{app.id}/delete", {}, page=page)
    assert response.status_code == 303
    assert await office.store.list_app_passwords(app.account_id) == []


async def test_filters_page_writes_sieve_and_raw_script(admin: httpx.AsyncClient, office: Postoffice) -> None:
    from postoffice.sieve import parse
    from postoffice.sieve.rules import from_script

    page = "/domains/example.com/email/alice@example.com/filters"
    assert (await admin.get(page)).status_code == 200
    response = await post(admin, page, {
        "kind": "rules", "rows": "3", "rule-0-field": "subject", "rule-0-match": "contains", "rule-0-value": "[news]",
        "rule-0-action": "move", "rule-0-target": "Archive", "rule-1-value": "",
        "vacation_enabled": "on", "vacation_subject": "Away", "vacation_text": "Back soon.", "vacation_days": "3",
        "vacation_start": "2026-12-01", "vacation_end": "2026-12-24"})
    assert response.status_code == 303, response.text
    alice = await office.store.get_account("alice@example.com")
    active = await office.store.active_sieve_script(alice.id)
    assert active.name == "panel" and 'fileinto "Archive"' in active.content and "vacation :days 3" in active.content
    parse(active.content)
    f = from_script(active.content)
    assert f.vacation.end == "2026-12-24" and f.rules[0].value == "[news]"
    shown = (await admin.get(page)).text
    assert 'value="[news]"' in shown and "Back soon." in shown
    bad = await post(admin, page, {"kind": "rules", "rows": "1", "rule-0-value": "x", "rule-0-action": "forward",
                                   "rule-0-target": "nobody"})
    assert bad.status_code == 400 and "address to forward to" in bad.text
    bad = await post(admin, page, {"kind": "raw", "script": 'fileinto "x";'})
    assert bad.status_code == 400 and "fileinto" in bad.text
    assert (await office.store.active_sieve_script(alice.id)).name == "panel"
    response = await post(admin, page, {"kind": "raw", "script": 'require "fileinto"; fileinto "Junk";'})
    assert response.status_code == 303
    assert (await office.store.active_sieve_script(alice.id)).content == 'require "fileinto"; fileinto "Junk";'
    assert "custom-script" in (await admin.get(page)).text
    response = await post(admin, page, {"kind": "raw", "script": ""})
    assert await office.store.active_sieve_script(alice.id) is None


async def test_mailbox_user_manages_own_filters_and_app_passwords(client: httpx.AsyncClient,
                                                                 office: Postoffice) -> None:
    response = await login(client, "alice@example.com", "alice-password")
    assert response.status_code == 303
    me = await client.get("/me")
    assert "Filters and vacation reply" in me.text and "App passwords" in me.text
    own = "/domains/example.com/email/alice@example.com"
    assert (await client.get(own + "/filters")).status_code == 200
    response = await post(client, own + "/app-passwords", {"name": "My phone", "imap": "on"})
    assert response.status_code == 200 and "data-app-password" in response.text
    response = await post(client, own + "/filters", {"kind": "raw", "script": "keep;"})
    assert response.status_code == 303
    alice = await office.store.get_account("alice@example.com")
    assert (await office.store.active_sieve_script(alice.id)).content == "keep;"
    # someone else's address: refused, nothing changes
    for path in ("/domains/other.org/email/bob@other.org/filters", "/domains/other.org/email/bob@other.org/app-passwords",
                 "/domains/example.com/email/bob@other.org/filters"):
        assert (await client.get(path)).status_code in (403, 404), path
    bob = await office.store.get_account("bob@other.org")
    response = await post(client, "/domains/other.org/email/bob@other.org/app-passwords", {"name": "x", "imap": "on"},
                          page=own + "/app-passwords")
    assert response.status_code in (403, 404)
    assert await office.store.list_app_passwords(bob.id) == []


async def test_spam_filter_page_switches_and_counts(admin: httpx.AsyncClient, office: Postoffice) -> None:
    import re
    import time

    page = "/domains/example.com/spam-filter"
    response = await admin.get(page)
    assert response.status_code == 200
    assert "No spam filter is configured on this server" in response.text  # the test server has none
    alice = await office.store.get_account("alice@example.com")
    bob = await office.store.get_account("bob@other.org")
    now = time.time()
    for action, count, age in (("no action", 3, 0), ("add header", 2, 0), ("rewrite subject", 1, 86400),
                               ("reject", 4, 86400), ("greylist", 1, 0), ("add header", 5, 8 * 86400)):
        for _ in range(count):
            await office.store.record_filter_verdicts("Q", [alice.id], action, 1.0, at=now - age)
    await office.store.record_filter_verdicts("Q", [bob.id], "add header", 9.0, at=now)  # another domain
    text = (await admin.get(page)).text
    rows = re.findall(r'<tr data-day="[^"]+"><td>[^<]+</td><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>'
                      r'<td>(\d+)</td><td>(\d+)</td>', text)
    assert len(rows) == 7
    # today: 3 delivered, 2 junked, 1 deferred; yesterday 1 junked, 4 rejected; 8 days ago not shown
    assert rows[-1] == ("6", "3", "2", "0", "1") and rows[-2] == ("5", "0", "1", "4", "0")
    assert all(row == ("0",) * 5 for row in rows[:-2])
    assert re.search(r'>alice@example.com</a></td><td>.*?<td class="junk-count">3</td>', text, re.S)
    response = await post(admin, page, {"domain": "off", "address:alice@example.com": "on"})
    assert response.status_code == 303
    domain = await office.store.get_domain("example.com")
    assert await office.store.spam_filter_setting(domain_id=domain.id) is False
    assert await office.store.spam_filter_wanted([alice.id]) == {alice.id: True}
    response = await post(admin, page, {"domain": "on", "address:alice@example.com": "inherit",
                                        "address:bob@other.org": "off"})
    assert await office.store.spam_filter_setting(domain_id=domain.id) is True
    assert await office.store.spam_filter_setting(account_id=alice.id) is None
    assert await office.store.spam_filter_setting(account_id=bob.id) is None  # not this domain's address
