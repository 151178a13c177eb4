"""Spam filter pages (issue 15): a domain's page (on/off per domain and address, the last 7
days, the domain's Junk threshold and sender lists) and an address's own Junk threshold and
sender lists. The forms post to one handler per action, for a domain or (with ``address`` in
the URL) an address; a refused value re-shows the page with the message beside its field."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...services.accounts import UserError
from ..auth import checked_form, flash
from ..operations import Operations
from .common import page, redirect, render


def _target(request: Request) -> tuple[str, str | None]:
    return request.path_params["domain"], request.path_params.get("address")


async def _show(request: Request, ops: Operations, status: int = 200, **context: Any) -> Response:
    domain_name, address = _target(request)
    domain = await ops.domain(domain_name)
    settings = await ops.spam_settings(domain.name, address)
    if address is None:
        return render(request, "domain/spam_filter.html", status, domain=domain, section="spam", settings=settings,
                      spam=await ops.spam_overview(domain.name), **context)
    return render(request, "domain/address_spam.html", status, domain=domain, section="spam", settings=settings,
                  address=settings["address"], **context)


def _back(request: Request) -> Response:
    domain_name, address = _target(request)
    if address is None:
        return redirect(request, "spam_filter", domain=domain_name)
    return redirect(request, "address_spam", domain=domain_name, address=address)


async def _refused(request: Request, ops: Operations, exc: UserError, form: Any) -> Response:
    return await _show(request, ops, 400, errors={exc.field or "form": str(exc)}, values=dict(form))


@page
async def spam_filter(request: Request, ops: Operations) -> Response:
    """The domain's page; POST saves the on/off switches of the domain and its addresses."""
    domain = await ops.domain(request.path_params["domain"])
    if request.method == "POST":
        form = await checked_form(request)
        await ops.set_spam_filter(domain.name, None, form.get("domain") != "off")
        for info in await ops.addresses(domain.name):
            choice = form.get(f"address:{info.account.address}")
            if choice in ("on", "off", "inherit"):
                await ops.set_spam_filter(domain.name, info.account.address,
                                          None if choice == "inherit" else choice == "on")
        flash(request, f"Spam filter settings of {domain.name} saved.")
        return redirect(request, "spam_filter", domain=domain.name)
    return await _show(request, ops)


@page
async def address_spam(request: Request, ops: Operations) -> Response:
    return await _show(request, ops)


@page
async def junk_score(request: Request, ops: Operations) -> Response:
    form = await checked_form(request)
    domain_name, address = _target(request)
    try:
        settings = await ops.set_junk_score(domain_name, address, str(form.get("junk_score", "")))
    except UserError as exc:
        return await _refused(request, ops, exc, form)
    score = settings["junk_score"]
    flash(request, f"Junk threshold of {address or domain_name}: "
                   + (f"{score:g}." if score is not None else "not set."))
    return _back(request)


@page
async def sender_add(request: Request, ops: Operations) -> Response:
    form = await checked_form(request)
    domain_name, address = _target(request)
    kind = str(form.get("list", ""))
    try:
        entry = await ops.add_sender_entry(domain_name, address, kind, str(form.get("entry", "")))
    except UserError as exc:
        return await _refused(request, ops, exc, form)
    flash(request, f"{entry} was added to the {kind} list of {address or domain_name}.")
    return _back(request)


@page
async def sender_remove(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    domain_name, address = _target(request)
    kind, entry = request.path_params["kind"], request.path_params["entry"]
    try:
        await ops.remove_sender_entry(domain_name, address, kind, entry)
    except UserError as exc:
        return await _refused(request, ops, exc, {})
    flash(request, f"{entry} was removed from the {kind} list of {address or domain_name}.")
    return _back(request)
