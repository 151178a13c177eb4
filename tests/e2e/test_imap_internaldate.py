"""INTERNALDATE keeps the zone APPEND gave it: FETCH writes the instant in that zone, SEARCH
BEFORE/ON/SINCE compare the date as written there (RFC 9051 6.4.4 "disregarding time and
timezone"), COPY and MOVE keep it. The day-boundary cases are imaptest's ``search-intdate``."""

from __future__ import annotations

import imaplib
import itertools
import re
from collections.abc import Iterator

import pytest

from tests.support.pg import BACKENDS, backend_overrides
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)
MESSAGE = b"From: a@example.org\r\nSubject: dated\r\n\r\nbody\r\n"

# imaptest src/tests/search-intdate.mbox: around the EET -> EEST change (1-7) and back (8-16)
DATES = [
    "24-Mar-2007 23:00:00 +0200", "25-Mar-2007 00:00:00 +0200", "25-Mar-2007 01:00:00 +0200",
    "25-Mar-2007 02:00:00 +0200", "25-Mar-2007 04:00:00 +0300", "25-Mar-2007 23:00:00 +0300",
    "26-Mar-2007 00:00:00 +0300", "27-Oct-2007 23:00:00 +0300", "28-Oct-2007 00:00:00 +0300",
    "28-Oct-2007 01:00:00 +0300", "28-Oct-2007 02:00:00 +0300", "28-Oct-2007 03:00:00 +0300",
    "28-Oct-2007 03:00:00 +0200", "28-Oct-2007 04:00:00 +0200", "28-Oct-2007 23:00:00 +0200",
    "29-Oct-2007 00:00:00 +0200",
]

# imaptest src/tests/search-intdate: (criteria, expected sequence numbers)
SEARCHES = [
    ("BEFORE 24-Mar-2007", []), ("BEFORE 25-Mar-2007", [1]), ("BEFORE 26-Mar-2007", [1, 2, 3, 4, 5, 6]),
    ("BEFORE 27-Mar-2007", [1, 2, 3, 4, 5, 6, 7]),
    ("ON 23-Mar-2007", []), ("ON 24-Mar-2007", [1]), ("ON 25-Mar-2007", [2, 3, 4, 5, 6]), ("ON 26-Mar-2007", [7]),
    ("1:7 SINCE 24-Mar-2007", [1, 2, 3, 4, 5, 6, 7]), ("1:7 SINCE 25-Mar-2007", [2, 3, 4, 5, 6, 7]),
    ("1:7 SINCE 26-Mar-2007", [7]), ("1:7 SINCE 27-Mar-2007", []),
    ("8:* BEFORE 27-Oct-2007", []), ("8:* BEFORE 28-Oct-2007", [8]),
    ("8:* BEFORE 29-Oct-2007", [8, 9, 10, 11, 12, 13, 14, 15]),
    ("8:* BEFORE 30-Oct-2007", [8, 9, 10, 11, 12, 13, 14, 15, 16]),
    ("8:* ON 26-Oct-2007", []), ("8:* ON 27-Oct-2007", [8]), ("8:* ON 28-Oct-2007", [9, 10, 11, 12, 13, 14, 15]),
    ("8:* ON 29-Oct-2007", [16]),
    ("8:* SINCE 27-Oct-2007", [8, 9, 10, 11, 12, 13, 14, 15, 16]),
    ("8:* SINCE 28-Oct-2007", [9, 10, 11, 12, 13, 14, 15, 16]), ("8:* SINCE 29-Oct-2007", [16]),
    ("8:* SINCE 30-Oct-2007", []),
]


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("imap") / "data"
    with RunningServer(data, **backend_overrides(request.param, request)) as server:
        yield server


@pytest.fixture
def imap(srv: RunningServer) -> Iterator[imaplib.IMAP4_SSL]:
    address = f"zone{next(_numbers)}@example.com"
    srv.add_account(address, PASSWORD)
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    m.login(address, PASSWORD)
    yield m
    m.logout()


def append(m: imaplib.IMAP4_SSL, mailbox: str, when: str) -> None:
    assert m.append(mailbox, "(\\Seen)", f'"{when}"', MESSAGE)[0] == "OK"


def internal_dates(m: imaplib.IMAP4_SSL, which: str = "1:*") -> list[str]:
    typ, data = m.fetch(which, "(INTERNALDATE)")
    assert typ == "OK"
    return [re.search(rb'INTERNALDATE "([^"]+)"', d).group(1).decode().strip() for d in data]


def search(m: imaplib.IMAP4_SSL, criteria: str) -> list[int]:
    typ, data = m.search(None, criteria)
    assert typ == "OK"
    return [int(n) for n in data[0].split()]


def test_imaptest_search_intdate(imap: imaplib.IMAP4_SSL) -> None:
    for when in DATES:
        append(imap, "INBOX", when)
    imap.select("INBOX")
    failed = [(criteria, got, want) for criteria, want in SEARCHES if (got := search(imap, criteria)) != want]
    assert failed == []
    assert internal_dates(imap) == [d.lstrip("0") for d in DATES]


def test_fetch_and_search_follow_the_zone_at_a_day_boundary(imap: imaplib.IMAP4_SSL) -> None:
    append(imap, "INBOX", "01-Jan-2024 23:30:00 +0200")  # 21:30 UTC
    append(imap, "INBOX", "01-Jan-2024 22:15:00 -0730")  # 2-Jan 05:45 UTC
    imap.select("INBOX")
    assert internal_dates(imap) == ["1-Jan-2024 23:30:00 +0200", "1-Jan-2024 22:15:00 -0730"]
    assert search(imap, "ON 1-Jan-2024") == [1, 2]
    assert search(imap, "ON 2-Jan-2024") == []
    assert search(imap, "BEFORE 2-Jan-2024") == [1, 2]
    assert search(imap, "SINCE 2-Jan-2024") == []
    assert imap.uid("SEARCH", "RETURN (COUNT MIN) ON 1-Jan-2024")[0] == "OK"  # ESEARCH shares the evaluation
    _, data = imap.response("ESEARCH")
    assert b"COUNT 2" in data[0] and b"MIN 1" in data[0]
    # a message appended while the index is loaded joins it with its zone
    append(imap, "INBOX", "03-Jan-2024 00:10:00 +0100")  # 2-Jan 23:10 UTC
    imap.noop()
    assert internal_dates(imap, "3") == ["3-Jan-2024 00:10:00 +0100"]
    assert search(imap, "ON 3-Jan-2024") == [3]


def test_copy_and_move_keep_the_zone(imap: imaplib.IMAP4_SSL) -> None:
    imap.create("Kept")
    append(imap, "INBOX", "01-Jan-2024 00:30:00 +0200")  # 31-Dec 22:30 UTC
    append(imap, "INBOX", "31-Dec-2023 22:30:00 -0500")  # 1-Jan 03:30 UTC
    imap.select("INBOX")
    assert imap.copy("1", "Kept")[0] == "OK"
    assert imap._simple_command("MOVE", "2", "Kept")[0] == "OK"
    imap.select("Kept")
    assert internal_dates(imap) == ["1-Jan-2024 00:30:00 +0200", "31-Dec-2023 22:30:00 -0500"]
    assert search(imap, "ON 1-Jan-2024") == [1]
    assert search(imap, "ON 31-Dec-2023") == [2]


def test_append_without_a_date_is_utc(imap: imaplib.IMAP4_SSL) -> None:
    assert imap.append("INBOX", None, None, MESSAGE)[0] == "OK"
    imap.select("INBOX")
    assert internal_dates(imap)[0].endswith("+0000")
