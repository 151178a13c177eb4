"""Automatic client configuration: Thunderbird autoconfig and Microsoft Autodiscover.

Public endpoints (mail clients call them before they have a password). The answer follows the
address's effective protocols: a POP3-only address is offered POP3, an IMAP-only one IMAP, a
protocol that is off is never offered. An unknown address of a hosted domain gets the domain's
offer, so these endpoints do not reveal which addresses exist.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ...mail.address import InvalidAddress, normalize_address
from ...services import clientconfig
from ...store import Account, Domain


async def _lookup(request: Request, address: str) -> tuple[Account | None, Domain] | None:
    office = request.app.state.office
    domain_name = ""
    if address:
        try:
            address = normalize_address(address)
        except InvalidAddress:
            return None
        domain_name = address.rpartition("@")[2]
    else:  # autoconfig.<domain> asked without an address
        host = (request.headers.get("host") or "").split(":")[0].lower()
        domain_name = host.removeprefix("autoconfig.").removeprefix("autodiscover.")
    domain = await office.store.get_domain(domain_name)
    if domain is None:
        return None
    account = await office.store.get_account(address) if address else None
    if account is not None and account.domain_id != domain.id:
        account = None
    return account, domain


async def autoconfig(request: Request) -> Response:
    found = await _lookup(request, request.query_params.get("emailaddress", ""))
    if found is None:
        return PlainTextResponse("no such mail domain here\n", status_code=404)
    account, domain = found
    office = request.app.state.office
    offers = clientconfig.client_offers(office.config, office.bound, account, domain)
    return Response(clientconfig.autoconfig_xml(domain, offers), media_type="application/xml")


async def autodiscover(request: Request) -> Response:
    if request.method == "POST":
        address = clientconfig.autodiscover_request_address(await request.body())
    else:
        address = request.query_params.get("email", "")
    found = await _lookup(request, address) if address else None
    if found is None:
        return PlainTextResponse("no such mail address here\n", status_code=404)
    account, domain = found
    office = request.app.state.office
    offers = clientconfig.client_offers(office.config, office.bound, account, domain)
    # The canonical address (found valid by _lookup), never the raw text of the request.
    login_name = account.address if account is not None else normalize_address(address)
    return Response(clientconfig.autodiscover_xml(login_name, offers), media_type="application/xml")
