"""Mail queue page and /api/v1/queue (issue #7): administrators only, CSRF on every form."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from postoffice.app import Postoffice
from postoffice.web.pages.queue import age

from .conftest import add_owner, api_token, csrf_of, login, post

API = "/api/v1"
MESSAGE = (b"From: Alice <alice@example.com>\r\n"
           b"To: Remote <someone@remote.example>, other@elsewhere.example\r\n"
           b"Subject: =?utf-8?q?Quarterly_r=C3=A9port?= <b>bold</b>\r\n"
           b"Date: Tue, 02 Jan 2024 10:00:00 +0000\r\n"
           b"Message-ID: <q1@example.com>\r\n"
           b"\r\n"
           b"Hello there.\r\n")
ERROR = "451 4.7.1 greylisted, try again later"


class FakeWorker:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


@pytest.fixture
async def queued(office: Postoffice) -> int:
    """One entry for two remote recipients after a first attempt: one deferred with an error."""
    queue_id = await office.store.enqueue("alice@example.com",
                                          ["someone@remote.example", "other@elsewhere.example"], MESSAGE)
    rows = (await office.store.queue_get(queue_id))["recipients"]
    await office.store.queue_finish(queue_id, deferred=[(rows[0]["id"], ERROR)], next_attempt=time.time() + 3600)
    return queue_id


@pytest.fixture
def worker(office: Postoffice, monkeypatch: pytest.MonkeyPatch) -> FakeWorker:
    fake = FakeWorker()
    monkeypatch.setattr(office, "worker", fake)
    return fake


async def entry(office: Postoffice, queue_id: int) -> dict[str, Any] | None:
    return await office.store.queue_get(queue_id)


# -- the page ------------------------------------------------------------------------------


async def test_queue_page_needs_a_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/queue")
    assert response.status_code == 303 and "/login?next=" in response.headers["location"]


async def test_admin_sees_the_link_and_the_queued_entry(admin: httpx.AsyncClient, queued: int) -> None:
    overview = (await admin.get("/")).text
    assert 'href="http://testserver/queue">Mail queue</a>' in overview
    response = await admin.get("/queue")
    assert response.status_code == 200
    page = response.text
    assert f'data-queue-id="{queued}"' in page
    assert "alice@example.com" in page
    assert "someone@remote.example" in page and "other@elsewhere.example" in page
    assert 'data-status="pending"' in page and ERROR in page
    assert f'action="http://testserver/queue/{queued}/retry"' in page
    assert f'data-action="http://testserver/queue/{queued}/delete"' in page and "data-confirm" in page
    assert 'action="http://testserver/queue/retry"' in page  # Retry all now
    assert "<td>1</td>" in page  # one attempt so far


async def test_entry_page_shows_headers_and_each_recipients_error(admin: httpx.AsyncClient, queued: int) -> None:
    response = await admin.get(f"/queue/{queued}")
    assert response.status_code == 200
    page = response.text
    assert "Alice &lt;alice@example.com&gt;" in page
    assert "Remote &lt;someone@remote.example&gt;, other@elsewhere.example" in page
    assert "Quarterly réport &lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page  # decoded, escaped
    assert "Tue, 02 Jan 2024 10:00:00 +0000" in page
    assert ERROR in page and "none yet" in page  # the second recipient has no error yet
    assert (await admin.get("/queue/99999")).status_code == 404


async def test_empty_queue(admin: httpx.AsyncClient) -> None:
    page = (await admin.get("/queue")).text
    assert "The queue is empty" in page and "Retry all now" not in page


async def test_retry_and_delete_via_the_page(admin: httpx.AsyncClient, office: Postoffice, queued: int,
                                             worker: FakeWorker) -> None:
    second = await office.store.enqueue("alice@example.com", ["x@remote.example"], MESSAGE)
    await office.store.queue_finish(second, deferred=[], next_attempt=time.time() + 3600)
    assert (await entry(office, queued))["next_attempt"] > time.time()

    response = await post(admin, f"/queue/{queued}/retry", {}, page=f"/queue/{queued}")
    assert response.status_code == 303 and response.headers["location"].endswith(f"/queue/{queued}")
    assert (await entry(office, queued))["next_attempt"] == 0
    assert (await entry(office, second))["next_attempt"] > time.time()  # only that one
    assert worker.wakes == 1
    assert "will be retried now" in (await admin.get(f"/queue/{queued}")).text

    response = await post(admin, "/queue/retry", {}, page="/queue")
    assert response.status_code == 303 and response.headers["location"].endswith("/queue")
    assert (await entry(office, second))["next_attempt"] == 0
    assert worker.wakes == 2
    assert "2 entries will be retried now" in (await admin.get("/queue")).text

    response = await post(admin, f"/queue/{queued}/delete", {}, page="/queue")
    assert response.status_code == 303 and response.headers["location"].endswith("/queue")
    assert await entry(office, queued) is None and await entry(office, second) is not None
    page = (await admin.get("/queue")).text
    assert f"Queue entry {queued} was deleted" in page and f'data-queue-id="{queued}"' not in page

    # Unknown ids are 404s, and nothing else changes.
    assert (await post(admin, f"/queue/{queued}/delete", {}, page="/queue")).status_code == 404
    assert (await post(admin, f"/queue/{queued}/retry", {}, page="/queue")).status_code == 404
    assert await entry(office, second) is not None


async def test_missing_or_forged_csrf_changes_nothing(admin: httpx.AsyncClient, office: Postoffice,
                                                      queued: int, worker: FakeWorker) -> None:
    before = await entry(office, queued)
    for path in (f"/queue/{queued}/retry", "/queue/retry", f"/queue/{queued}/delete"):
        assert (await admin.post(path, data={})).status_code == 403, path
        response = await admin.post(path, data={"csrf_token": "forged"})
        assert response.status_code == 403 and "not sent from this panel" in response.text, path
    assert await entry(office, queued) == before
    assert worker.wakes == 0


async def test_owner_and_mailbox_user_get_403(make_client: Any, office: Postoffice, queued: int,
                                              worker: FakeWorker) -> None:
    await add_owner(office, "olga", ["example.com"])
    olga = make_client()
    assert (await login(olga, "olga", "owner-password")).status_code == 303
    assert "Mail queue" not in (await olga.get("/")).text
    user = make_client("192.0.2.30")
    assert (await login(user, "alice@example.com", "alice-password")).status_code == 303
    before = await entry(office, queued)
    for who, csrf_page in ((olga, "/"), (user, "/me")):
        for path in ("/queue", f"/queue/{queued}"):
            response = await who.get(path)
            assert response.status_code == 403, path
            assert "Mail queue" not in response.text and "someone@remote.example" not in response.text
        token = await csrf_of(who, csrf_page)  # a valid token does not help
        for path in (f"/queue/{queued}/retry", "/queue/retry", f"/queue/{queued}/delete"):
            assert (await who.post(path, data={"csrf_token": token})).status_code == 403, path
    assert await entry(office, queued) == before
    assert worker.wakes == 0


def test_age() -> None:
    assert age(100, 145) == "45 s"
    assert age(0, 12 * 60 + 5) == "12 min"
    assert age(0, 3 * 3600 + 5 * 60) == "3 h 5 min"
    assert age(0, 2 * 86400) == "2 d"
    assert age(0, 2 * 86400 + 4 * 3600 + 7) == "2 d 4 h"
    assert age(200, 100) == "0 s"  # clock skew


# -- the API -------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_api_queue_for_admin_tokens(client: httpx.AsyncClient, office: Postoffice, queued: int,
                                          worker: FakeWorker) -> None:
    h = bearer(await api_token(office, "admin"))
    listed = (await client.get(API + "/queue", headers=h)).json()
    assert [e["id"] for e in listed] == [queued]
    assert listed[0]["mail_from"] == "alice@example.com" and listed[0]["attempts"] == 1
    assert listed[0]["recipients"] == [
        {"recipient": "someone@remote.example", "domain": "remote.example", "status": "pending", "last_error": ERROR},
        {"recipient": "other@elsewhere.example", "domain": "elsewhere.example", "status": "pending",
         "last_error": ""}]

    detail = (await client.get(f"{API}/queue/{queued}", headers=h)).json()
    assert detail["headers"] == {"from": "Alice <alice@example.com>",
                                 "to": "Remote <someone@remote.example>, other@elsewhere.example",
                                 "subject": "Quarterly réport <b>bold</b>",
                                 "date": "Tue, 02 Jan 2024 10:00:00 +0000"}
    assert detail["recipients"][0]["last_error"] == ERROR
    assert (await client.get(API + "/queue/99999", headers=h)).status_code == 404

    response = await client.post(f"{API}/queue/{queued}/retry", headers=h)
    assert response.status_code == 200 and response.json() == {"retried": 1}
    assert (await entry(office, queued))["next_attempt"] == 0 and worker.wakes == 1
    assert (await client.post(API + "/queue/99999/retry", headers=h)).status_code == 404

    await office.store.enqueue("", ["bounce@remote.example"], MESSAGE)
    response = await client.post(API + "/queue/retry", headers=h)
    assert response.json() == {"retried": 2} and worker.wakes == 2  # the unknown id woke nothing
    assert [e["is_bounce"] for e in (await client.get(API + "/queue", headers=h)).json()] == [False, True]

    assert (await client.delete(f"{API}/queue/{queued}", headers=h)).status_code == 204
    assert await entry(office, queued) is None
    assert (await client.delete(f"{API}/queue/{queued}", headers=h)).status_code == 404


async def test_api_queue_refuses_owner_tokens(client: httpx.AsyncClient, office: Postoffice, queued: int,
                                              worker: FakeWorker) -> None:
    await add_owner(office, "olga", ["example.com"])
    h = bearer(await api_token(office, "olga"))
    before = await entry(office, queued)
    for method, path in (("GET", "/queue"), ("GET", f"/queue/{queued}"), ("POST", f"/queue/{queued}/retry"),
                         ("POST", "/queue/retry"), ("DELETE", f"/queue/{queued}"),
                         ("GET", "/queue/99999"), ("DELETE", "/queue/99999")):  # 403 before 404: nothing leaks
        response = await client.request(method, API + path, headers=h)
        assert response.status_code == 403, (method, path)
    assert await entry(office, queued) == before
    assert worker.wakes == 0
    assert (await client.get(API + "/queue")).status_code == 401


async def test_openapi_lists_the_queue_endpoints(client: httpx.AsyncClient) -> None:
    paths = (await client.get(API + "/openapi.json")).json()["paths"]
    assert set(paths["/queue"]) == {"get"} and set(paths["/queue/retry"]) == {"post"}
    assert set(paths["/queue/{queue_id}"]) == {"get", "delete"} and set(paths["/queue/{queue_id}/retry"]) == {"post"}
