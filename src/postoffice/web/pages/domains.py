"""Service overview (the domain list) and the domain-wide pages of the left menu."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ...services.accounts import UserError
from ..auth import checked_form, flash
from ..operations import Operations
from .common import form_error, page, redirect, render

POLICY_LABELS = {
    "any": "Allow both IMAP and POP3 (each address's own switches decide)",
    "imap-only": "Force IMAP only",
    "pop3-only": "Force POP3 only",
}


@page
async def overview(request: Request, ops: Operations) -> Response:
    context = {"domains": await ops.domains(), "policies": POLICY_LABELS}
    if request.method == "GET":
        return render(request, "overview.html", **context)
    form = await checked_form(request)
    try:
        domain = await ops.add_domain(str(form.get("name", "")))
    except UserError as exc:
        return form_error(request, "overview.html", exc, form, **context)
    flash(request, f"The domain {domain.name} was added.")
    return redirect(request, "addresses", domain=domain.name)


@page
async def domain_delete(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    name = request.path_params["domain"]
    await ops.remove_domain(name)
    flash(request, f"The domain {name} and all its addresses were removed.")
    return redirect(request, "overview")


@page
async def domain_home(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    infos = await ops.addresses(domain.name)
    return render(request, "domain/home.html", domain=domain, section="home", addresses=infos,
                  aliases=await ops.aliases(domain.name), policies=POLICY_LABELS,
                  sessions=sum(len(i.sessions) for i in infos),
                  insecure=sum(1 for i in infos for s in i.sessions if not s.tls))


@page
async def protocols(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    context = {"domain": domain, "section": "protocols", "policies": POLICY_LABELS,
               "addresses": await ops.addresses(domain.name)}
    if request.method == "GET":
        return render(request, "domain/protocols.html", **context)
    form = await checked_form(request)
    try:
        domain = await ops.set_domain_policy(domain.name, str(form.get("protocol_policy", "")))
    except UserError as exc:
        return form_error(request, "domain/protocols.html", exc, form, **context)
    flash(request, f"Protocol policy of {domain.name}: {POLICY_LABELS[domain.protocol_policy]}.")
    return redirect(request, "protocols", domain=domain.name)


@page
async def aliases(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    context = {"domain": domain, "section": "aliases", "aliases": await ops.aliases(domain.name)}
    if request.method == "GET":
        return render(request, "domain/aliases.html", **context)
    form = await checked_form(request)
    targets = str(form.get("targets", "")).replace(",", " ").split()
    try:
        alias = await ops.add_alias(domain.name, str(form.get("address", "")), targets)
    except UserError as exc:
        return form_error(request, "domain/aliases.html", exc, form, **context)
    flash(request, f"The alias {alias.address} was added.")
    return redirect(request, "aliases", domain=domain.name)


@page
async def alias_delete(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    domain = request.path_params["domain"]
    await ops.remove_alias(domain, request.path_params["alias"])
    flash(request, f"The alias {request.path_params['alias']} was removed.")
    return redirect(request, "aliases", domain=domain)


@page
async def client_settings(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    endpoints = await ops.client_settings(domain.name)
    unprivileged = any(e.port != e.standard_port for e in endpoints)
    return render(request, "domain/client_settings.html", domain=domain, section="client",
                  endpoints=endpoints, unprivileged=unprivileged,
                  addresses=await ops.addresses(domain.name))


@page
async def dns(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    records, has_dkim = await ops.dns_records(domain.name)
    return render(request, "domain/dns.html", domain=domain, section="dns", records=records, has_dkim=has_dkim)
