"""REST API v1: everything the panel pages can do, for hosting companies to automate.

Authentication is ``Authorization: Bearer <token>`` (tokens are made on the panel's API tokens
page or with POST /tokens); cookies are never read, so there is no CSRF surface. The
authorization rules are the panel's: an admin manages everything, a domain owner only its own
domains (403 for any other, and nothing changes). Errors are JSON: ``{"detail": ..., "field": ...}``
with 400 (bad input), 401, 403, 404 or 409.

The OpenAPI document is served at /api/v1/openapi.json.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from ...services.accounts import UserError
from ...services.panel_users import Forbidden
from ..operations import AddressChanges, Missing, Operations, app_password_dict, queue_entry_dict, session_dict

bearer = HTTPBearer(auto_error=False, description="An API token from the panel's API tokens page")


class Unauthorized(Exception):
    pass


async def get_ops(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Operations:
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("an API token is required (Authorization: Bearer <token>)")
    who = await request.app.state.panel_users.principal_for_token(creds.credentials)
    if who is None:
        raise Unauthorized("the API token is not valid (revoked or mistyped)")
    return Operations(request.app.state.office, who)


OpsDep = Annotated[Operations, Depends(get_ops)]


# -- bodies ---------------------------------------------------------------------------------


class DomainIn(BaseModel):
    name: str = Field(examples=["example.com"])


class DomainPatch(BaseModel):
    protocol_policy: str | None = Field(None, description="any | imap-only | pop3-only")
    catch_all: str | None = Field(None, description="address for unknown recipients; '' turns it off")


class AddressIn(BaseModel):
    address: str = Field(description="local part or whole address in the domain", examples=["sales"])
    password: str
    display_name: str = ""
    quota_bytes: int = Field(0, description="0 = no limit")


class AddressPatch(BaseModel):
    display_name: str | None = None
    password: str | None = None
    quota_bytes: int | None = None
    aliases: list[str] | None = Field(None, description="the complete list of aliases delivering here")
    forward_to: list[str] | None = None
    imap: bool | None = None
    pop3: bool | None = None
    smtp: bool | None = None
    pop3_policy: str | None = Field(None, description="delete | keep | mark-read | trash | archive")


class SpamFilterIn(BaseModel):
    enabled: bool | None = Field(description="on/off; for an address null follows the domain")


class JunkScoreIn(BaseModel):
    junk_score: float | None = Field(description="rspamd score at or above which mail goes to Junk (above 0); "
                                     "null: rspamd's action decides (for an address: as the domain)")


class SenderEntryIn(BaseModel):
    list: str = Field(description="allow | block")
    entry: str = Field(description="an address, a domain, or *.domain for its subdomains",
                       examples=["news@shop.example", "shop.example", "*.shop.example"])


class AppPasswordIn(BaseModel):
    name: str = Field(examples=["Phone"])
    protocols: list[str] = Field(description="any of imap, pop3, smtp", examples=[["imap", "smtp"]])
    expires_at: float | None = Field(None, description="Unix time after which it stops working; null: never")


class RuleIn(BaseModel):
    field: str = Field(description="from | to | subject | header")
    match: str = Field("contains", description="contains | is")
    value: str
    action: str = Field(description="move | read | forward | discard")
    target: str = Field("", description="the folder (move) or the address (forward)")
    header: str = Field("", description="the header field name when field is 'header'")


class VacationIn(BaseModel):
    enabled: bool = False
    subject: str = ""
    text: str = ""
    start: str = Field("", description="first day, YYYY-MM-DD ('' = now)")
    end: str = Field("", description="last day, YYYY-MM-DD ('' = until turned off)")
    days: int = Field(7, description="reply to the same sender at most once in this many days")


class FiltersIn(BaseModel):
    rules: list[RuleIn] = []
    vacation: VacationIn = VacationIn()


class ScriptIn(BaseModel):
    script: str = Field(description="Sieve (RFC 5228); '' turns filtering off")


class AliasIn(BaseModel):
    address: str
    targets: list[str]


class LoginIn(BaseModel):
    username: str
    password: str
    role: str = Field("owner", description="admin | owner")
    domains: list[str] = []


class DomainsIn(BaseModel):
    domains: list[str]


class TokenIn(BaseModel):
    name: str


# -- rendering ------------------------------------------------------------------------------


def domain_dict(d: Any, addresses: int | None = None, aliases: int | None = None) -> dict[str, Any]:
    out = {"name": d.name, "protocol_policy": d.protocol_policy, "catch_all": d.catch_all}
    if addresses is not None:
        out.update({"addresses": addresses, "aliases": aliases})
    return out


def alias_dict(a: Any) -> dict[str, Any]:
    return {"address": a.address, "targets": list(a.targets)}


def create_api(office: Any, panel_users: Any) -> FastAPI:
    api = FastAPI(title="postoffice API", version="1", description=__doc__,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")  # docs UIs need a CDN
    api.state.office = office
    api.state.panel_users = panel_users

    @api.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "field": exc.field}, status_code=400)

    @api.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @api.exception_handler(Missing)
    async def missing(request: Request, exc: Missing) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @api.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    # -- who am I ------------------------------------------------------------------------

    @api.get("/me", tags=["logins"], summary="The login this token belongs to")
    async def me(ops: OpsDep) -> dict[str, Any]:
        return {"username": ops.who.name, "role": ops.who.kind, "domains": sorted(ops.who.domains)}

    # -- domains -------------------------------------------------------------------------

    @api.get("/domains", tags=["domains"], summary="Domains this login manages")
    async def list_domains(ops: OpsDep) -> list[dict[str, Any]]:
        return [domain_dict(s.domain, s.addresses, s.aliases) for s in await ops.domains()]

    @api.post("/domains", tags=["domains"], status_code=201, summary="Add a domain (admins)")
    async def add_domain(body: DomainIn, ops: OpsDep) -> dict[str, Any]:
        return domain_dict(await ops.add_domain(body.name))

    @api.get("/domains/{domain}", tags=["domains"])
    async def get_domain(domain: str, ops: OpsDep) -> dict[str, Any]:
        return domain_dict(await ops.domain(domain))

    @api.patch("/domains/{domain}", tags=["domains"],
               summary="Force the domain's addresses to one protocol, or set the catch-all")
    async def patch_domain(domain: str, body: DomainPatch, ops: OpsDep) -> dict[str, Any]:
        d = await ops.domain(domain)
        if body.protocol_policy is not None:
            d = await ops.set_domain_policy(domain, body.protocol_policy)
        if body.catch_all is not None:
            d = await ops.set_catch_all(domain, body.catch_all or None)
        return domain_dict(d)

    @api.delete("/domains/{domain}", tags=["domains"], status_code=204, summary="Remove a domain (admins)")
    async def delete_domain(domain: str, ops: OpsDep) -> Response:
        await ops.remove_domain(domain)
        return Response(status_code=204)

    # -- addresses -----------------------------------------------------------------------

    @api.get("/domains/{domain}/addresses", tags=["addresses"],
             summary="Addresses with quota use and the protocols in force")
    async def list_addresses(domain: str, ops: OpsDep) -> list[dict[str, Any]]:
        return [i.as_dict() for i in await ops.addresses(domain)]

    @api.post("/domains/{domain}/addresses", tags=["addresses"], status_code=201)
    async def add_address(domain: str, body: AddressIn, ops: OpsDep) -> dict[str, Any]:
        info = await ops.add_address(domain, body.address, body.password, display_name=body.display_name,
                                     quota_bytes=body.quota_bytes)
        return info.as_dict()

    @api.get("/domains/{domain}/addresses/{address}", tags=["addresses"])
    async def get_address(domain: str, address: str, ops: OpsDep) -> dict[str, Any]:
        return (await ops.address(domain, address)).as_dict()

    @api.patch("/domains/{domain}/addresses/{address}", tags=["addresses"],
               summary="Edit settings and Advanced settings (IMAP/POP3/SMTP switches); applies at once")
    async def patch_address(domain: str, address: str, body: AddressPatch, ops: OpsDep) -> dict[str, Any]:
        changes = AddressChanges(
            display_name=body.display_name, password=body.password, quota_bytes=body.quota_bytes,
            aliases=body.aliases, forward_to=" ".join(body.forward_to) if body.forward_to is not None else None,
            imap=body.imap, pop3=body.pop3, smtp=body.smtp, pop3_policy=body.pop3_policy)
        return (await ops.save_address(domain, address, changes)).as_dict()

    @api.delete("/domains/{domain}/addresses/{address}", tags=["addresses"], status_code=204)
    async def delete_address(domain: str, address: str, ops: OpsDep) -> Response:
        await ops.delete_address(domain, address)
        return Response(status_code=204)

    @api.get("/domains/{domain}/addresses/{address}/sessions", tags=["addresses"],
             summary="Connected devices: the address's open IMAP, POP3 and SMTP sessions")
    async def address_sessions(domain: str, address: str, ops: OpsDep) -> list[dict[str, Any]]:
        return [session_dict(s) for s in await ops.sessions(domain, address)]

    # -- spam filtering on/off (issue 15) ------------------------------------------------

    @api.get("/domains/{domain}/spam-filter", tags=["spam filter"],
             summary="Whether mail to the domain is checked by the spam filter (rspamd), its Junk threshold and lists")
    async def get_domain_spam_filter(domain: str, ops: OpsDep) -> dict[str, Any]:
        return await ops.spam_settings(domain)

    @api.put("/domains/{domain}/spam-filter", tags=["spam filter"], summary="Switch spam filtering for a domain")
    async def put_domain_spam_filter(domain: str, body: SpamFilterIn, ops: OpsDep) -> dict[str, Any]:
        return await ops.set_spam_filter(domain, None, body.enabled)

    @api.get("/domains/{domain}/addresses/{address}/spam-filter", tags=["spam filter"],
             summary="Whether mail to the address is checked by the spam filter")
    async def get_address_spam_filter(domain: str, address: str, ops: OpsDep) -> dict[str, Any]:
        return await ops.spam_settings(domain, address)

    @api.put("/domains/{domain}/addresses/{address}/spam-filter", tags=["spam filter"],
             summary="Switch spam filtering for an address (null: as the domain)")
    async def put_address_spam_filter(domain: str, address: str, body: SpamFilterIn, ops: OpsDep) -> dict[str, Any]:
        return await ops.set_spam_filter(domain, address, body.enabled)

    # -- Junk threshold, allow and block lists (issue 15) ----------------------------------

    D, A = "/domains/{domain}/spam-filter", "/domains/{domain}/addresses/{address}/spam-filter"

    @api.put(D + "/junk-score", tags=["spam filter"], summary="Set the domain's Junk threshold (null: rspamd decides)")
    async def put_domain_junk_score(domain: str, body: JunkScoreIn, ops: OpsDep) -> dict[str, Any]:
        return await ops.set_junk_score(domain, None, body.junk_score)

    @api.put(A + "/junk-score", tags=["spam filter"], summary="Set the address's Junk threshold (null: as the domain)")
    async def put_address_junk_score(domain: str, address: str, body: JunkScoreIn, ops: OpsDep) -> dict[str, Any]:
        return await ops.set_junk_score(domain, address, body.junk_score)

    @api.post(D + "/senders", tags=["spam filter"], status_code=201,
              summary="Add a sender to the domain's allow or block list")
    async def add_domain_sender(domain: str, body: SenderEntryIn, ops: OpsDep) -> dict[str, str]:
        return {"list": body.list, "entry": await ops.add_sender_entry(domain, None, body.list, body.entry)}

    @api.post(A + "/senders", tags=["spam filter"], status_code=201,
              summary="Add a sender to the address's allow or block list")
    async def add_address_sender(domain: str, address: str, body: SenderEntryIn, ops: OpsDep) -> dict[str, str]:
        return {"list": body.list, "entry": await ops.add_sender_entry(domain, address, body.list, body.entry)}

    @api.delete(D + "/senders/{kind}/{entry:path}", tags=["spam filter"], status_code=204,
                summary="Remove a sender from the domain's allow or block list")
    async def remove_domain_sender(domain: str, kind: str, entry: str, ops: OpsDep) -> Response:
        await ops.remove_sender_entry(domain, None, kind, entry)
        return Response(status_code=204)

    @api.delete(A + "/senders/{kind}/{entry:path}", tags=["spam filter"], status_code=204,
                summary="Remove a sender from the address's allow or block list")
    async def remove_address_sender(domain: str, address: str, kind: str, entry: str, ops: OpsDep) -> Response:
        await ops.remove_sender_entry(domain, address, kind, entry)
        return Response(status_code=204)

    # -- Sieve filters (issue 16) ------------------------------------------------------

    def filters_dict(data: dict[str, Any]) -> dict[str, Any]:
        from dataclasses import asdict
        f = data["filters"]
        return {"rules": [asdict(r) for r in f.rules], "vacation": asdict(f.vacation), "custom": data["custom"],
                "script": data["active"].content if data["active"] is not None else None}

    @api.get("/domains/{domain}/addresses/{address}/filters", tags=["filters"],
             summary="The rules and vacation reply (custom: the active script was not written by the panel)")
    async def get_filters(domain: str, address: str, ops: OpsDep) -> dict[str, Any]:
        return filters_dict(await ops.filters(domain, address))

    @api.put("/domains/{domain}/addresses/{address}/filters", tags=["filters"],
             summary="Replace the rules and vacation reply; written as Sieve and made the active script")
    async def put_filters(domain: str, address: str, body: FiltersIn, ops: OpsDep) -> dict[str, Any]:
        from ...sieve.rules import Filters, Rule, VacationSettings
        filters = Filters(tuple(Rule(**r.model_dump()) for r in body.rules), VacationSettings(**body.vacation.model_dump()))
        await ops.save_filters(domain, address, filters)
        return filters_dict(await ops.filters(domain, address))

    @api.put("/domains/{domain}/addresses/{address}/sieve-script", tags=["filters"],
             summary="Replace the active Sieve script's text (refused when it does not parse)")
    async def put_script(domain: str, address: str, body: ScriptIn, ops: OpsDep) -> dict[str, Any]:
        await ops.save_raw_script(domain, address, body.script)
        return filters_dict(await ops.filters(domain, address))

    # -- app passwords (issue 16) ------------------------------------------------------

    @api.get("/domains/{domain}/addresses/{address}/app-passwords", tags=["addresses"],
             summary="App passwords of the address (never the passwords themselves)")
    async def list_app_passwords(domain: str, address: str, ops: OpsDep) -> list[dict[str, Any]]:
        return [app_password_dict(a) for a in await ops.app_passwords(domain, address)]

    @api.post("/domains/{domain}/addresses/{address}/app-passwords", tags=["addresses"], status_code=201,
              summary="Create an app password scoped to protocols; the password is in this answer only")
    async def add_app_password(domain: str, address: str, body: AppPasswordIn, ops: OpsDep) -> dict[str, Any]:
        created = await ops.add_app_password(domain, address, body.name, body.protocols, body.expires_at)
        return {**app_password_dict(created.app_password), "password": created.password}

    @api.delete("/domains/{domain}/addresses/{address}/app-passwords/{app_id}", tags=["addresses"],
                status_code=204, summary="Revoke an app password; the sessions that used it end")
    async def delete_app_password(domain: str, address: str, app_id: int, ops: OpsDep) -> Response:
        await ops.revoke_app_password(domain, address, app_id)
        return Response(status_code=204)

    # -- aliases -------------------------------------------------------------------------

    @api.get("/domains/{domain}/aliases", tags=["aliases"])
    async def list_aliases(domain: str, ops: OpsDep) -> list[dict[str, Any]]:
        return [alias_dict(a) for a in await ops.aliases(domain)]

    @api.post("/domains/{domain}/aliases", tags=["aliases"], status_code=201)
    async def add_alias(domain: str, body: AliasIn, ops: OpsDep) -> dict[str, Any]:
        return alias_dict(await ops.add_alias(domain, body.address, body.targets))

    @api.delete("/domains/{domain}/aliases/{alias}", tags=["aliases"], status_code=204)
    async def delete_alias(domain: str, alias: str, ops: OpsDep) -> Response:
        await ops.remove_alias(domain, alias)
        return Response(status_code=204)

    # -- client settings and DNS ---------------------------------------------------------

    @api.get("/domains/{domain}/client-settings", tags=["client settings"],
             summary="Servers, ports and security for mail clients")
    async def client_settings(domain: str, ops: OpsDep) -> list[dict[str, Any]]:
        return [e.as_dict() for e in await ops.client_settings(domain)]

    @api.get("/domains/{domain}/dns", tags=["client settings"], summary="DNS records the domain needs")
    async def dns(domain: str, ops: OpsDep) -> dict[str, Any]:
        records, has_dkim = await ops.dns_records(domain)
        return {"records": [r.as_dict() for r in records], "dkim_key": has_dkim}

    # -- logins and tokens ---------------------------------------------------------------

    @api.get("/logins", tags=["logins"], summary="Panel logins (admins)")
    async def list_logins(ops: OpsDep) -> list[dict[str, Any]]:
        ops.who.require_admin()
        return [{k: v for k, v in login.items() if k != "id"} for login in await panel_users.list_logins()]

    @api.post("/logins", tags=["logins"], status_code=201, summary="Create an admin or a domain owner (admins)")
    async def add_login(body: LoginIn, ops: OpsDep) -> dict[str, Any]:
        ops.who.require_admin()
        login = await panel_users.add_login(body.username, body.password, body.role, body.domains)
        return {k: v for k, v in login.items() if k != "id"}

    @api.put("/logins/{username}/domains", tags=["logins"], summary="Set a domain owner's domains (admins)")
    async def set_login_domains(username: str, body: DomainsIn, ops: OpsDep) -> dict[str, Any]:
        ops.who.require_admin()
        return {"username": username, "domains": await panel_users.set_login_domains(username, body.domains)}

    @api.delete("/logins/{username}", tags=["logins"], status_code=204)
    async def delete_login(username: str, ops: OpsDep) -> Response:
        ops.who.require_admin()
        await panel_users.remove_login(username, ops.who)
        return Response(status_code=204)

    @api.get("/tokens", tags=["tokens"], summary="This login's API tokens (never the secrets)")
    async def list_tokens(ops: OpsDep) -> list[dict[str, Any]]:
        return await panel_users.list_tokens(ops.who)

    @api.post("/tokens", tags=["tokens"], status_code=201, summary="Create a token; the secret is shown once")
    async def create_token(body: TokenIn, ops: OpsDep) -> dict[str, Any]:
        token_id, token = await panel_users.create_token(ops.who, body.name)
        return {"id": token_id, "name": body.name.strip(), "token": token}

    @api.delete("/tokens/{token_id}", tags=["tokens"], status_code=204)
    async def delete_token(token_id: int, ops: OpsDep) -> Response:
        await panel_users.revoke_token(ops.who, token_id)
        return Response(status_code=204)

    # -- outbound queue (issue #7; admin tokens only) ------------------------------------

    @api.get("/queue", tags=["queue"], summary="Outbound mail waiting for remote servers (admins)")
    async def list_queue(ops: OpsDep) -> list[dict[str, Any]]:
        return [queue_entry_dict(e) for e in await ops.queue()]

    @api.post("/queue/retry", tags=["queue"], summary="Make every queue entry due now (admins)")
    async def retry_queue(ops: OpsDep) -> dict[str, Any]:
        return {"retried": await ops.retry_queue(None)}

    @api.get("/queue/{queue_id}", tags=["queue"],
             summary="One queue entry: recipients with their last error, and the message's headers (admins)")
    async def get_queue_entry(queue_id: int, ops: OpsDep) -> dict[str, Any]:
        return (await ops.queue_entry(queue_id)).as_dict()

    @api.post("/queue/{queue_id}/retry", tags=["queue"], summary="Make one queue entry due now (admins)")
    async def retry_queue_entry(queue_id: int, ops: OpsDep) -> dict[str, Any]:
        return {"retried": await ops.retry_queue(queue_id)}

    @api.delete("/queue/{queue_id}", tags=["queue"], status_code=204,
                summary="Drop a queue entry without a bounce (admins)")
    async def delete_queue_entry(queue_id: int, ops: OpsDep) -> Response:
        await ops.delete_queue_entry(queue_id)
        return Response(status_code=204)

    return api
