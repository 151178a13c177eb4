"""Email > Overview > Email: the addresses of a domain, Edit settings, Advanced settings,
delete, Connected devices and the Apple profile download."""

from __future__ import annotations

import re
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from ...services.accounts import UserError
from ..auth import checked_form, flash
from ..operations import AddressChanges, Operations
from .common import form_error, page, redirect, render
from .session import POP3_POLICY_LABELS

MIB = 1024 * 1024


def parse_quota(text: str) -> int:
    """Quota in MB as typed (blank or 0 = unlimited) to bytes."""
    text = text.strip().replace(",", ".")
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        raise UserError("the quota is a number of megabytes (0 for no limit)", "quota") from None
    if value < 0 or value != value or value > 1e9:
        raise UserError("the quota cannot be negative", "quota")
    return int(value * MIB)


@page
async def addresses(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    context = {"domain": domain, "section": "email", "addresses": await ops.addresses(domain.name)}
    if request.method == "GET":
        return render(request, "domain/addresses.html", **context)
    form = await checked_form(request)
    try:
        info = await ops.add_address(domain.name, str(form.get("address", "")), str(form.get("password", "")),
                                     display_name=str(form.get("display_name", "")),
                                     quota_bytes=parse_quota(str(form.get("quota", ""))))
    except UserError as exc:
        context["show_add"] = True
        return form_error(request, "domain/addresses.html", exc, form, **context)
    flash(request, f"The address {info.account.address} was created.")
    return redirect(request, "addresses", domain=domain.name)


def changes_from_form(form: FormData) -> AddressChanges:
    return AddressChanges(
        display_name=str(form.get("display_name", "")),
        password=str(form.get("password", "")) or None,
        quota_bytes=parse_quota(str(form.get("quota", ""))),
        aliases=str(form.get("aliases", "")).replace(",", " ").split(),
        forward_to=str(form.get("forward_to", "")),
        # A switch is a checkbox: present means on. The hidden "switches" field tells an
        # unchecked box from a form that does not have the Advanced section.
        imap=("imap" in form) if "switches" in form else None,
        pop3=("pop3" in form) if "switches" in form else None,
        smtp=("smtp" in form) if "switches" in form else None,
        pop3_policy=str(form["pop3_policy"]) if "pop3_policy" in form else None,
    )


@page
async def edit(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    info = await ops.address(domain.name, request.path_params["address"])
    context = {"domain": domain, "section": "email", "info": info, "policies": POP3_POLICY_LABELS}
    if request.method == "GET":
        return render(request, "domain/edit.html", **context)
    form = await checked_form(request)
    try:
        if form.get("password") and form.get("password") != form.get("password_confirm"):
            raise UserError("the two passwords differ", "password_confirm")
        info = await ops.save_address(domain.name, info.account.address, changes_from_form(form))
    except UserError as exc:
        values = dict(form)
        for name in ("imap", "pop3", "smtp"):
            values[name] = name in form
        values.pop("password", None)
        values.pop("password_confirm", None)
        context["open_advanced"] = exc.field in ("imap", "pop3", "smtp", "pop3_policy")
        return render(request, "domain/edit.html", 400, errors={exc.field or "form": str(exc)},
                      values=values, edited=True, **context)
    flash(request, f"The settings of {info.account.address} were saved and apply at once.")
    return redirect(request, "addresses", domain=domain.name)


@page
async def delete(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    domain = request.path_params["domain"]
    address = request.path_params["address"]
    await ops.delete_address(domain, address)
    flash(request, f"The address {address} and its mail were deleted.")
    return redirect(request, "addresses", domain=domain)


@page
async def devices(request: Request, ops: Operations) -> Response:
    domain = await ops.domain(request.path_params["domain"])
    info = await ops.address(domain.name, request.path_params["address"])
    template = "domain/_devices_table.html" if request.headers.get("hx-request") else "domain/devices.html"
    return render(request, template, domain=domain, section="email", info=info)


def filters_from_form(form: FormData) -> object:
    from ...sieve.rules import Filters, Rule, VacationSettings

    rules = []
    for i in range(int(str(form.get("rows", "0")) or 0)):
        value = str(form.get(f"rule-{i}-value", "")).strip()
        if not value:
            continue  # an empty row is no rule
        rules.append(Rule(field=str(form.get(f"rule-{i}-field", "subject")), match=str(form.get(f"rule-{i}-match", "contains")),
                          value=value, action=str(form.get(f"rule-{i}-action", "move")),
                          target=str(form.get(f"rule-{i}-target", "")), header=str(form.get(f"rule-{i}-header", ""))))
    days = str(form.get("vacation_days", "7")).strip() or "7"
    vacation = VacationSettings(
        enabled="vacation_enabled" in form, subject=str(form.get("vacation_subject", "")),
        text=str(form.get("vacation_text", "")), start=str(form.get("vacation_start", "")),
        end=str(form.get("vacation_end", "")), days=int(days) if days.isdigit() else 0)
    return Filters(tuple(rules), vacation)


async def _domain_of(ops: Operations, request: Request) -> object:
    """The domain in the URL; for a mailbox user, their own address's domain (ops.address then
    checks that the address in the URL is theirs)."""
    if ops.who.is_user:
        info = await ops.address("", request.path_params["address"])
        return await ops.store.get_domain_by_id(info.account.domain_id)
    return await ops.domain(request.path_params["domain"])


@page(staff=False)
async def filters(request: Request, ops: Operations) -> Response:
    """Filters and vacation: the rules editor for the common cases, the vacation reply, and the
    raw Sieve script for everything else (staff, and the mailbox user for their own address)."""
    domain: Any = await _domain_of(ops, request)
    address = request.path_params["address"]
    data = await ops.filters(domain.name, address)
    info = data["info"]
    mailboxes = [m.name for m in await ops.store.list_mailboxes(info.account.id)]
    context: dict[str, object] = {"domain": domain, "section": "email", "mailboxes": mailboxes, **data}
    if request.method == "POST":
        form = await checked_form(request)
        try:
            if form.get("kind") == "raw":
                await ops.save_raw_script(domain.name, info.account.address, str(form.get("script", "")))
                flash(request, "The Sieve script was saved and applies to the next message.")
            else:
                await ops.save_filters(domain.name, info.account.address, filters_from_form(form))
                flash(request, "The filters and vacation reply were saved and apply to the next message.")
        except UserError as exc:
            context["values"] = dict(form)
            return render(request, "domain/filters.html", 400, errors={exc.field or "form": str(exc)}, **context)
        return redirect(request, "filters", domain=domain.name, address=info.account.address)
    return render(request, "domain/filters.html", **context)


@page(staff=False)
async def app_passwords(request: Request, ops: Operations) -> Response:
    """App passwords of an address: create one (shown once, on this answer only) or revoke
    (staff, and the mailbox user for their own address)."""
    import time

    domain: Any = await _domain_of(ops, request)
    info = await ops.address(domain.name, request.path_params["address"])
    context: dict[str, object] = {"domain": domain, "section": "email", "info": info}
    if request.method == "POST":
        form = await checked_form(request)
        days = str(form.get("expires_days", "")).strip()
        try:
            try:
                expires = time.time() + float(days) * 86400 if days else None
            except ValueError:
                raise UserError("the expiry is a number of days (empty: never)", "expires_days") from None
            created = await ops.add_app_password(domain.name, info.account.address, str(form.get("name", "")),
                                                 [p for p in ("imap", "pop3", "smtp") if p in form], expires)
        except UserError as exc:
            context["apps"] = await ops.app_passwords(domain.name, info.account.address)
            return form_error(request, "domain/app_passwords.html", exc, form, **context)
        context["created"] = created
    context["apps"] = await ops.app_passwords(domain.name, info.account.address)
    return render(request, "domain/app_passwords.html", **context)


@page(staff=False)
async def app_password_delete(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    domain, address = request.path_params["domain"], request.path_params["address"]
    try:
        await ops.revoke_app_password(domain, address, int(request.path_params["app_id"]))
    except UserError as exc:
        flash(request, str(exc))
    else:
        flash(request, "The app password was revoked; devices using it were disconnected.")
    return redirect(request, "app_passwords", domain=domain, address=address)


async def mobileconfig_response(request: Request, ops: Operations, domain: str, address: str) -> Response:
    try:
        body = await ops.mobileconfig(domain, address)
    except UserError as exc:
        return render(request, "error.html", 409, status=409, message=str(exc))
    # The file name comes from the URL: keep only harmless characters (no quotes, no line breaks).
    filename = re.sub(r"[^a-z0-9._+-]", "_", address.strip().lower().replace("@", "_at_")) + ".mobileconfig"
    return Response(body, media_type="application/x-apple-aspen-config",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@page
async def mobileconfig(request: Request, ops: Operations) -> Response:
    return await mobileconfig_response(request, ops, request.path_params["domain"], request.path_params["address"])


