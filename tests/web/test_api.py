"""REST API v1: every endpoint, token authentication and the authorization rules."""

from __future__ import annotations

import plistlib
from typing import Any

import httpx
import pytest

from postoffice.app import Postoffice

from .conftest import add_owner, api_token

API = "/api/v1"


@pytest.fixture
async def tokens(office: Postoffice) -> dict[str, str]:
    await add_owner(office, "olga", ["example.com"])
    await add_owner(office, "otto", ["other.org"])
    return {name: await api_token(office, name) for name in ("admin", "olga", "otto")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(client: httpx.AsyncClient, token: str, method: str, path: str, json: Any = None) -> httpx.Response:
    return await client.request(method, API + path, headers=bearer(token), json=json)


async def test_openapi_document_lists_every_endpoint(client: httpx.AsyncClient) -> None:
    doc = (await client.get(API + "/openapi.json")).json()
    paths = set(doc["paths"])
    for path in ("/domains", "/domains/{domain}", "/domains/{domain}/addresses",
                 "/domains/{domain}/addresses/{address}", "/domains/{domain}/addresses/{address}/sessions",
                 "/domains/{domain}/aliases", "/domains/{domain}/aliases/{alias}",
                 "/domains/{domain}/client-settings", "/domains/{domain}/dns", "/logins",
                 "/logins/{username}/domains", "/logins/{username}", "/tokens", "/tokens/{token_id}", "/me"):
        assert path in paths, path
    assert "HTTPBearer" in doc["components"]["securitySchemes"]


async def test_tokens_are_required_and_cookies_are_not_enough(client: httpx.AsyncClient, tokens: dict[str, str],
                                                              office: Postoffice) -> None:
    assert (await client.get(API + "/domains")).status_code == 401
    response = await client.get(API + "/domains", headers=bearer("po_not-a-token"))
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    from .conftest import login
    await login(client)  # a panel session cookie does not authenticate the API
    assert (await client.get(API + "/domains")).status_code == 401
    # Only the hash is stored.
    stored = await office.store.db.read(lambda tx: [r[0] for r in tx.all("SELECT token_hash FROM api_tokens")])
    assert tokens["admin"] not in stored and len(stored) == 3


async def test_domains(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    admin = tokens["admin"]
    names = [d["name"] for d in (await call(client, admin, "GET", "/domains")).json()]
    assert names == ["example.com", "other.org"]
    response = await call(client, admin, "POST", "/domains", {"name": "New.Example"})
    assert response.status_code == 201 and response.json()["name"] == "new.example"
    response = await call(client, admin, "POST", "/domains", {"name": "new.example"})
    assert response.status_code == 400 and response.json()["field"] == "name"
    response = await call(client, admin, "POST", "/domains", {"name": "-bad-.x_y"})
    assert response.status_code == 400 and "not a valid domain name" in response.json()["detail"]
    assert (await call(client, admin, "GET", "/domains/new.example")).json()["protocol_policy"] == "any"
    response = await call(client, admin, "PATCH", "/domains/new.example", {"protocol_policy": "imap-only",
                                                                          "catch_all": "alice@example.com"})
    assert response.json() == {"name": "new.example", "protocol_policy": "imap-only",
                               "catch_all": "alice@example.com"}
    response = await call(client, admin, "PATCH", "/domains/new.example", {"protocol_policy": "smtp-only"})
    assert response.status_code == 400
    assert (await call(client, admin, "DELETE", "/domains/new.example")).status_code == 204
    assert (await call(client, admin, "GET", "/domains/new.example")).status_code == 404


async def test_addresses(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    t = tokens["olga"]
    listed = (await call(client, t, "GET", "/domains/example.com/addresses")).json()
    assert [a["address"] for a in listed] == ["alice@example.com"]
    assert listed[0]["effective"]["pop3"]["allowed"] is True
    response = await call(client, t, "POST", "/domains/example.com/addresses",
                          {"address": "carol", "password": "carol-password", "quota_bytes": 1000000})
    assert response.status_code == 201 and response.json()["address"] == "carol@example.com"
    for body, field in (({"address": "carol", "password": "carol-password"}, "address"),
                        ({"address": "x@other.org", "password": "carol-password"}, "address"),
                        ({"address": "bad address", "password": "carol-password"}, "address"),
                        ({"address": "c\ufb03", "password": "carol-password"}, "address"),  # issue #12
                        ({"address": "ca\u200brol", "password": "carol-password"}, "address"),
                        ({"address": "dave", "password": "short"}, "password")):
        response = await call(client, t, "POST", "/domains/example.com/addresses", body)
        assert response.status_code == 400 and response.json()["field"] == field, body
    response = await call(client, t, "PATCH", "/domains/example.com/addresses/carol@example.com",
                          {"pop3": False, "display_name": "Carol", "aliases": ["c"], "forward_to": ["bob@other.org"]})
    body = response.json()
    assert response.status_code == 200
    assert body["switches"]["pop3"] is False and body["effective"]["pop3"]["allowed"] is False
    assert body["aliases"] == ["c@example.com"] and body["forward_to"] == ["bob@other.org"]
    assert "disabled for this address" in body["effective"]["pop3"]["reason"]
    response = await call(client, t, "PATCH", "/domains/example.com/addresses/carol@example.com",
                          {"forward_to": ["carol@example.com"]})
    assert response.status_code == 400 and response.json()["field"] == "forward_to"
    got = (await call(client, t, "GET", "/domains/example.com/addresses/carol@example.com")).json()
    assert got["display_name"] == "Carol"
    assert (await call(client, t, "GET", "/domains/example.com/addresses/carol@example.com/sessions")).json() == []
    assert (await call(client, t, "DELETE", "/domains/example.com/addresses/carol@example.com")).status_code == 204
    assert (await call(client, t, "GET", "/domains/example.com/addresses/carol@example.com")).status_code == 404


async def test_quota_below_use(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    alice = await office.store.get_account("alice@example.com")
    await office.store.deliver([(alice.id, "INBOX")], b"Subject: x\r\n\r\n" + b"y" * 5000 + b"\r\n")
    response = await call(client, tokens["admin"], "PATCH", "/domains/example.com/addresses/alice@example.com",
                          {"quota_bytes": 100, "imap": False})
    assert response.status_code == 400 and response.json()["field"] == "quota"
    assert (await office.store.get_account("alice@example.com")).imap_enabled  # nothing changed


async def test_sessions_are_listed(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    from postoffice.services.sessions import OpenSession

    alice = await office.store.get_account("alice@example.com")
    office.sessions.add(OpenSession("pop3", alice.id, alice.address, "198.51.100.1", False, 110))
    sessions = (await call(client, tokens["admin"], "GET",
                           "/domains/example.com/addresses/alice@example.com/sessions")).json()
    assert [(s["protocol"], s["tls"], s["remote"]) for s in sessions] == [("pop3", False, "198.51.100.1")]


async def test_aliases(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    t = tokens["admin"]
    response = await call(client, t, "POST", "/domains/example.com/aliases",
                          {"address": "a", "targets": ["b@example.com"]})
    assert response.status_code == 201 and response.json() == {"address": "a@example.com",
                                                               "targets": ["b@example.com"]}
    response = await call(client, t, "POST", "/domains/example.com/aliases",
                          {"address": "b", "targets": ["a@example.com"]})
    assert response.status_code == 400 and "loop" in response.json()["detail"]
    assert len((await call(client, t, "GET", "/domains/example.com/aliases")).json()) == 1
    assert (await call(client, t, "DELETE", "/domains/example.com/aliases/a@example.com")).status_code == 204
    assert (await call(client, t, "DELETE", "/domains/example.com/aliases/a@example.com")).status_code == 404


async def test_client_settings_and_dns(client: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    t = tokens["olga"]
    settings = (await call(client, t, "GET", "/domains/example.com/client-settings")).json()
    assert {(s["protocol"], s["standard_port"], s["security"]) for s in settings} >= {
        ("imap", 993, "SSL/TLS"), ("imap", 143, "STARTTLS"), ("pop3", 995, "SSL/TLS"), ("pop3", 110, "STARTTLS"),
        ("smtp", 465, "SSL/TLS"), ("smtp", 587, "STARTTLS"), ("smtp", 25, "STARTTLS")}
    dns = (await call(client, t, "GET", "/domains/example.com/dns")).json()
    types = {(r["name"], r["type"]) for r in dns["records"]}
    assert ("example.com.", "MX") in types and ("_imaps._tcp.example.com.", "SRV") in types
    # the DKIM keys are generated on demand and both signatures' records are shown
    assert dns["dkim_key"] is True
    dkim = {r["name"]: r["value"] for r in dns["records"] if "._domainkey." in r["name"]}
    assert len(dkim) == 2 and any("k=ed25519" in v for v in dkim.values())


async def test_owner_cannot_touch_another_owners_domain(client: httpx.AsyncClient, tokens: dict[str, str],
                                                        office: Postoffice) -> None:
    t = tokens["olga"]
    assert [d["name"] for d in (await call(client, t, "GET", "/domains")).json()] == ["example.com"]
    before = await office.store.get_account("bob@other.org")
    for method, path, body in (
            ("GET", "/domains/other.org", None),
            ("PATCH", "/domains/other.org", {"protocol_policy": "pop3-only"}),
            ("DELETE", "/domains/other.org", None),
            ("GET", "/domains/other.org/addresses", None),
            ("POST", "/domains/other.org/addresses", {"address": "eve", "password": "eve-password"}),
            ("GET", "/domains/other.org/addresses/bob@other.org", None),
            ("PATCH", "/domains/other.org/addresses/bob@other.org", {"imap": False}),
            ("DELETE", "/domains/other.org/addresses/bob@other.org", None),
            ("GET", "/domains/other.org/addresses/bob@other.org/sessions", None),
            ("GET", "/domains/other.org/aliases", None),
            ("POST", "/domains/other.org/aliases", {"address": "x", "targets": ["bob@other.org"]}),
            ("GET", "/domains/other.org/client-settings", None),
            ("GET", "/domains/other.org/dns", None),
            ("GET", "/domains/unknown.example", None),
            ("POST", "/domains", {"name": "mine.example"}),
            ("GET", "/logins", None),
            ("POST", "/logins", {"username": "x", "password": "long-password"}),
            ("PUT", "/logins/olga/domains", {"domains": ["other.org"]}),
            ("DELETE", "/logins/otto", None)):
        response = await call(client, t, method, path, body)
        assert response.status_code == 403, (method, path, response.text)
    # An address of another domain reached through one's own domain in the URL: not found.
    response = await call(client, t, "PATCH", "/domains/example.com/addresses/bob@other.org", {"imap": False})
    assert response.status_code == 404
    assert await office.store.get_account("bob@other.org") == before
    assert (await office.store.get_domain("other.org")).protocol_policy == "any"
    assert await office.store.get_domain("mine.example") is None
    assert await office.store.owned_domains((await office.store.get_admin("olga"))["id"]) == ["example.com"]


async def test_logins_and_tokens(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    admin = tokens["admin"]
    logins = (await call(client, admin, "GET", "/logins")).json()
    assert {(x["username"], x["role"]) for x in logins} == {("admin", "admin"), ("olga", "owner"), ("otto", "owner")}
    response = await call(client, admin, "POST", "/logins", {"username": "nina", "password": "nina-password",
                                                            "role": "owner", "domains": ["other.org"]})
    assert response.status_code == 201 and response.json()["domains"] == ["other.org"]
    response = await call(client, admin, "POST", "/logins", {"username": "nina", "password": "nina-password"})
    assert response.status_code == 400 and response.json()["field"] == "username"
    response = await call(client, admin, "POST", "/logins", {"username": "z", "password": "zz-password",
                                                            "domains": ["nowhere.example"]})
    assert response.status_code == 400 and response.json()["field"] == "domains"
    response = await call(client, admin, "PUT", "/logins/nina/domains", {"domains": ["example.com", "other.org"]})
    assert response.json()["domains"] == ["example.com", "other.org"]
    assert (await call(client, admin, "DELETE", "/logins/admin")).status_code == 400  # not yourself
    assert (await call(client, admin, "DELETE", "/logins/nina")).status_code == 204

    me = (await call(client, tokens["olga"], "GET", "/me")).json()
    assert me == {"username": "olga", "role": "owner", "domains": ["example.com"]}
    created = await call(client, tokens["olga"], "POST", "/tokens", {"name": "deploy"})
    assert created.status_code == 201 and created.json()["token"].startswith("po_")
    listed = (await call(client, tokens["olga"], "GET", "/tokens")).json()
    assert {t["name"] for t in listed} == {"olga test token", "deploy"} and "token" not in listed[0]
    assert (await call(client, tokens["olga"], "POST", "/tokens", {"name": " "})).status_code == 400
    new_token = created.json()["token"]
    assert (await call(client, new_token, "GET", "/domains")).status_code == 200
    # Olga cannot revoke Otto's token; revoking her own ends it.
    otto_token_id = (await call(client, tokens["otto"], "GET", "/tokens")).json()[0]["id"]
    assert (await call(client, tokens["olga"], "DELETE", f"/tokens/{otto_token_id}")).status_code == 400
    assert (await call(client, tokens["otto"], "GET", "/domains")).status_code == 200
    assert (await call(client, tokens["olga"], "DELETE", f"/tokens/{created.json()['id']}")).status_code == 204
    assert (await call(client, new_token, "GET", "/domains")).status_code == 401
    # Removing a login ends its tokens.
    assert (await call(client, admin, "DELETE", "/logins/otto")).status_code == 204
    assert (await call(client, tokens["otto"], "GET", "/domains")).status_code == 401


# -- automatic client configuration ------------------------------------------------------------


async def _autoconfig(client: httpx.AsyncClient, address: str) -> str:
    response = await client.get("/.well-known/autoconfig/mail/config-v1.1.xml", params={"emailaddress": address})
    assert response.status_code == 200
    return response.text


async def test_autoconfig_follows_the_effective_policy(client: httpx.AsyncClient, office: Postoffice) -> None:
    both = await _autoconfig(client, "alice@example.com")
    assert 'type="imap"' in both and 'type="pop3"' in both and 'type="smtp"' in both
    assert "<socketType>SSL</socketType>" in both and "mail.test.example" in both
    assert both.index('type="imap"') < both.index('type="pop3"')
    await office.accounts.update("alice@example.com", pop3=False)
    imap_only = await _autoconfig(client, "alice@example.com")
    assert 'type="imap"' in imap_only and 'type="pop3"' not in imap_only
    await office.accounts.set_domain_policy("example.com", "pop3-only")
    pop_only = (await client.get("/mail/config-v1.1.xml", params={"emailaddress": "alice@example.com"})).text
    assert 'type="pop3"' in pop_only and 'type="imap"' not in pop_only
    await office.accounts.update("alice@example.com", smtp=False)
    assert 'type="smtp"' not in await _autoconfig(client, "alice@example.com")
    # Unknown address of a hosted domain: the domain's offer; unknown domain: 404.
    assert 'type="imap"' not in await _autoconfig(client, "nobody@example.com")
    response = await client.get("/mail/config-v1.1.xml", params={"emailaddress": "x@nowhere.example"})
    assert response.status_code == 404
    response = await client.get("/mail/config-v1.1.xml", headers={"host": "autoconfig.other.org"})
    assert response.status_code == 200 and "<domain>other.org</domain>" in response.text


AUTODISCOVER_REQUEST = b"""<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request><EMailAddress>alice@example.com</EMailAddress>
  <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request></Autodiscover>"""


async def test_autodiscover(client: httpx.AsyncClient, office: Postoffice) -> None:
    response = await client.post("/autodiscover/autodiscover.xml", content=AUTODISCOVER_REQUEST)
    assert response.status_code == 200
    assert "<Type>IMAP</Type>" in response.text and "<Type>POP3</Type>" in response.text
    assert "<LoginName>alice@example.com</LoginName>" in response.text
    await office.accounts.set_domain_policy("example.com", "imap-only")
    response = await client.post("/Autodiscover/Autodiscover.xml", content=AUTODISCOVER_REQUEST)
    assert "<Type>IMAP</Type>" in response.text and "<Type>POP3</Type>" not in response.text
    assert (await client.post("/autodiscover/autodiscover.xml", content=b"<junk")).status_code == 404


async def test_mobileconfig(admin: httpx.AsyncClient, office: Postoffice) -> None:
    path = "/domains/example.com/email/alice@example.com/mobileconfig"
    response = await admin.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-apple-aspen-config"
    payload = plistlib.loads(response.content)["PayloadContent"][0]
    assert payload["EmailAccountType"] == "EmailTypeIMAP" and payload["IncomingMailServerUseSSL"] is True
    await office.accounts.set_domain_policy("example.com", "pop3-only")
    payload = plistlib.loads((await admin.get(path)).content)["PayloadContent"][0]
    assert payload["EmailAccountType"] == "EmailTypePOP"
    await office.accounts.update("alice@example.com", smtp=False)
    payload = plistlib.loads((await admin.get(path)).content)["PayloadContent"][0]
    assert "OutgoingMailServerHostName" not in payload
    await office.accounts.set_domain_policy("example.com", "any")
    await office.accounts.update("alice@example.com", imap=False, pop3=False)
    assert (await admin.get(path)).status_code == 409


async def test_app_passwords_api(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    base = "/domains/example.com/addresses/alice@example.com/app-passwords"
    response = await call(client, tokens["admin"], "POST", base, {"name": "Phone", "protocols": ["imap"]})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["protocols"] == ["imap"] and len(created["password"]) == 24
    alice = await office.store.get_account("alice@example.com")
    result = await office.auth.authenticate("alice@example.com", created["password"], "127.0.0.1", "imap")
    assert result.ok and result.app_password.name == "Phone"
    refused = await office.auth.authenticate("alice@example.com", created["password"], "127.0.0.1", "pop3")
    assert not refused.ok and "not allowed for POP3" in refused.reason
    listed = (await call(client, tokens["admin"], "GET", base)).json()
    assert [(a["name"], a["protocols"]) for a in listed] == [("Phone", ["imap"])] and "password" not in listed[0]
    bad = await call(client, tokens["admin"], "POST", base, {"name": "X", "protocols": ["ftp"]})
    assert bad.status_code == 400 and bad.json()["field"] == "protocols"
    # another owner's token cannot see or touch them
    assert (await call(client, tokens["otto"], "GET", base)).status_code == 403
    assert (await call(client, tokens["otto"], "DELETE", f"{base}/{created['id']}")).status_code == 403
    assert (await call(client, tokens["olga"], "DELETE", f"{base}/{created['id']}")).status_code == 204
    assert await office.store.list_app_passwords(alice.id) == []
    assert (await call(client, tokens["admin"], "DELETE", f"{base}/{created['id']}")).status_code == 400


async def test_filters_api(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    base = "/domains/example.com/addresses/alice@example.com"
    empty = (await call(client, tokens["admin"], "GET", base + "/filters")).json()
    assert empty == {"rules": [], "vacation": {"enabled": False, "subject": "", "text": "", "start": "", "end": "",
                                               "days": 7}, "custom": False, "script": None}
    body = {"rules": [{"field": "from", "value": "boss@example.com", "action": "read"}],
            "vacation": {"enabled": True, "text": "Away.", "days": 2}}
    saved = (await call(client, tokens["olga"], "PUT", base + "/filters", body)).json()
    assert saved["rules"][0]["action"] == "read" and saved["vacation"]["enabled"] and not saved["custom"]
    assert 'addflag "\\\\Seen";' in saved["script"]
    bad = await call(client, tokens["admin"], "PUT", base + "/sieve-script", {"script": "if {"})
    assert bad.status_code == 400 and bad.json()["field"] == "script"
    raw = (await call(client, tokens["admin"], "PUT", base + "/sieve-script", {"script": "discard;"})).json()
    assert raw["custom"] and raw["script"] == "discard;"
    assert (await call(client, tokens["otto"], "GET", base + "/filters")).status_code == 403


async def test_spam_filter_switches(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    t = tokens["olga"]
    domain = (await call(client, t, "GET", "/domains/example.com/spam-filter")).json()
    # on unless switched off; not effective here: the test server has no [filter] rspamd
    assert domain == {"domain": "example.com", "enabled": True, "effective": False, "available": False,
                      "junk_score": None, "allow": [], "block": []}
    path = "/domains/example.com/addresses/alice@example.com/spam-filter"
    assert (await call(client, t, "GET", path)).json()["enabled"] is None
    assert (await call(client, t, "PUT", "/domains/example.com/spam-filter", {"enabled": False})).json()["enabled"] is False
    answer = (await call(client, t, "GET", path)).json()
    assert answer["enabled"] is None and answer["domain_enabled"] is False
    alice = await office.store.get_account("alice@example.com")
    assert await office.store.spam_filter_wanted([alice.id]) == {alice.id: False}
    assert (await call(client, t, "PUT", path, {"enabled": True})).json()["enabled"] is True
    assert await office.store.spam_filter_wanted([alice.id]) == {alice.id: True}
    assert (await call(client, t, "PUT", path, {"enabled": None})).json()["enabled"] is None
    assert await office.store.spam_filter_wanted([alice.id]) == {alice.id: False}
    response = await call(client, t, "PUT", "/domains/example.com/spam-filter", {"enabled": None})
    assert response.status_code == 400
    for method, body in (("GET", None), ("PUT", {"enabled": False})):
        assert (await call(client, t, method, "/domains/other.org/spam-filter", body)).status_code == 403
        assert (await call(client, t, method, "/domains/other.org/addresses/bob@other.org/spam-filter",
                           body)).status_code == 403
    bob = await office.store.get_account("bob@other.org")
    assert await office.store.spam_filter_wanted([bob.id]) == {bob.id: True}


async def test_junk_score_and_sender_lists(client: httpx.AsyncClient, tokens: dict[str, str], office: Postoffice) -> None:
    t = tokens["olga"]
    base, address = "/domains/example.com/spam-filter", "/domains/example.com/addresses/alice@example.com/spam-filter"
    assert (await call(client, t, "PUT", base + "/junk-score", {"junk_score": 7.5})).json()["junk_score"] == 7.5
    answer = (await call(client, t, "GET", address)).json()
    assert (answer["junk_score"], answer["domain_junk_score"], answer["effective_junk_score"]) == (None, 7.5, 7.5)
    answer = (await call(client, t, "PUT", address + "/junk-score", {"junk_score": 12})).json()
    assert (answer["junk_score"], answer["effective_junk_score"]) == (12, 12)
    alice = await office.store.get_account("alice@example.com")
    assert (await office.store.spam_policies([alice.id]))[alice.id][1] == 12
    for bad in (0, -3, 1e9, "many"):
        response = await call(client, t, "PUT", address + "/junk-score", {"junk_score": bad})
        assert response.status_code in (400, 422), bad
        if response.status_code == 400:
            assert response.json()["field"] == "junk_score"
    assert (await call(client, t, "PUT", address + "/junk-score", {"junk_score": None})).json()["junk_score"] is None
    # lists: entries are cleaned, refused when malformed or already on the other list
    response = await call(client, t, "POST", address + "/senders", {"list": "block", "entry": " News+Promo@Shop.Example "})
    assert response.status_code == 201 and response.json() == {"list": "block", "entry": "news+promo@shop.example"}
    assert (await call(client, t, "POST", base + "/senders", {"list": "allow", "entry": "*.Lists.Example"})).json()["entry"] \
        == "*.lists.example"
    for body in ({"list": "allow", "entry": "not an address"}, {"list": "maybe", "entry": "x.example"},
                 {"list": "allow", "entry": "news+promo@shop.example"}):
        response = await call(client, t, "POST", address + "/senders", body)
        assert response.status_code == 400, body
        assert response.json()["field"] in ("entry", "list")
    answer = (await call(client, t, "GET", address)).json()
    assert (answer["allow"], answer["block"]) == ([], ["news+promo@shop.example"])
    assert (await call(client, t, "GET", base)).json()["allow"] == ["*.lists.example"]
    assert (await call(client, t, "DELETE", address + "/senders/block/news+promo@shop.example")).status_code == 204
    assert (await call(client, t, "DELETE", address + "/senders/block/news+promo@shop.example")).status_code == 404
    assert (await call(client, t, "GET", address)).json()["block"] == []
    # another owner's domain: refused, nothing changed
    other = "/domains/other.org/spam-filter"
    assert (await call(client, tokens["otto"], "DELETE", base + "/senders/allow/*.lists.example")).status_code == 403
    assert (await call(client, t, "PUT", other + "/junk-score", {"junk_score": 3})).status_code == 403
    assert (await call(client, t, "POST", other + "/senders", {"list": "block", "entry": "x.example"})).status_code == 403
    assert (await call(client, t, "GET", base)).json()["allow"] == ["*.lists.example"]
