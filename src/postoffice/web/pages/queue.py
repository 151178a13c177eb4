"""Mail queue (issue #7): outbound mail waiting for remote servers, for administrators only.

The list, one entry's details, "Retry now" (one entry or all) and "Delete". Every rule (who may
look, what an unknown id is) lives in Operations; domain owners and mailbox users get 403.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from ..auth import checked_form, flash
from ..operations import Operations
from .common import page, redirect, render


def age(since: float, now: float) -> str:
    """How long ago ``since`` was, in the largest two units: "45 s", "12 min", "3 h 5 min", "2 d 4 h"."""
    seconds = max(0, int(now - since))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    days = hours // 24
    return f"{days} d {hours % 24} h" if hours % 24 else f"{days} d"


def _entries_text(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


@page(staff=False)
async def queue_list(request: Request, ops: Operations) -> Response:
    entries = await ops.queue()
    return render(request, "queue/list.html", entries=entries, now=time.time(), age=age)


@page(staff=False)
async def queue_entry(request: Request, ops: Operations) -> Response:
    detail = await ops.queue_entry(request.path_params["queue_id"])
    return render(request, "queue/entry.html", entry=detail.entry, headers=detail.headers, now=time.time(),
                  age=age)


@page(staff=False)
async def queue_retry_all(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    count = await ops.retry_queue(None)
    flash(request, f"{_entries_text(count)} will be retried now." if count else "The queue is empty.")
    return redirect(request, "queue")


@page(staff=False)
async def queue_retry(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    queue_id = request.path_params["queue_id"]
    await ops.retry_queue(queue_id)
    flash(request, f"Queue entry {queue_id} will be retried now.")
    return redirect(request, "queue_entry", queue_id=str(queue_id))


@page(staff=False)
async def queue_delete(request: Request, ops: Operations) -> Response:
    await checked_form(request)
    queue_id = request.path_params["queue_id"]
    await ops.delete_queue_entry(queue_id)
    flash(request, f"Queue entry {queue_id} was deleted; the sender was not told.")
    return redirect(request, "queue")
