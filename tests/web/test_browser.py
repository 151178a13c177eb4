"""The source article's path through the control panel, in a real browser (Debian's chromium
driven by Playwright): log in, open the domain, Email > Overview > Email, the three dots, Edit
settings, Advanced settings, switch POP3 off, Save; then force the domain to POP3 only.

The effect is checked through the store and the protocol-access decision every server calls
(services/access.py), and `test_protocol_logins_follow_the_panel` (no browser needed) checks it
with poplib and imaplib against the running servers. Screenshots of the main pages go to
docs/screenshots/ with `POSTOFFICE_SCREENSHOTS=1 .venv/bin/pytest tests/web/test_browser.py`.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright import sync_api  # a declared test dependency (pyproject.toml): never skipped

from postoffice.services.access import protocol_access
from postoffice.services.sessions import OpenSession
from tests.support.tools import require_tool

from .conftest import ADMIN_PASSWORD, CSRF_RE

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def browser() -> Any:
    # Debian's chromium (`make test-deps`); Playwright downloads no browser of its own.
    chromium = require_tool("chromium", "chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shot(tmp_path: Path) -> Callable[[Any, str], None]:
    """Screenshots go to the test's temporary folder, so a test run leaves the work tree clean;
    POSTOFFICE_SCREENSHOTS=1 writes them to docs/screenshots/ (the README shows them)."""
    folder = DOCS_SCREENSHOTS if os.environ.get("POSTOFFICE_SCREENSHOTS") == "1" else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> None:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        assert path.stat().st_size > 1000
    return take


def access(live: Any, address: str, protocol: str) -> Any:
    async def decide() -> Any:
        account = await live.office.store.get_account(address)
        domain = await live.office.store.get_domain_by_id(account.domain_id)
        return protocol_access(account, domain, protocol)
    return live.call(decide())


def add_demo_sessions(live: Any) -> None:
    """Two devices of alice, as the servers would register them (for Connected devices)."""
    async def add() -> None:
        account = await live.office.store.get_account("alice@example.com")
        now = time.time()
        live.office.sessions.add(OpenSession("imap", account.id, account.address, "203.0.113.7", True, 993,
                                             since=now - 3600, client_id="Thunderbird 128.3.0"))
        live.office.sessions.add(OpenSession("pop3", account.id, account.address, "198.51.100.23", False, 110,
                                             since=now - 600))
        live.office.sessions.add(OpenSession("smtp", account.id, account.address, "203.0.113.7", True, 465,
                                             since=now - 60))
    live.call(add())


def sessions_of(live: Any, address: str) -> list[str]:
    async def get() -> list[str]:
        account = await live.office.store.get_account(address)
        return sorted(s.protocol for s in live.office.sessions.for_account(account.id))
    return live.call(get())


def test_article_path_switch_pop3_off_then_force_pop3_only(live: Any, browser: Any, shot: Any) -> None:
    add_demo_sessions(live)
    page = browser.new_page(viewport={"width": 1360, "height": 860})
    page.set_default_timeout(10000)

    # Log in
    page.goto(live.url + "/")
    assert "/login" in page.url
    shot(page, "login")
    page.get_by_label("Login or email address").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    # Service overview: click the email domain
    page.get_by_role("heading", name="Service overview").wait_for()
    shot(page, "overview")
    page.get_by_role("link", name="example.com", exact=True).click()

    # Email > Overview > Email
    menu = page.get_by_role("complementary", name="Domain menu")
    menu.get_by_text("Overview", exact=True).click()
    menu.get_by_role("link", name="Email", exact=True).click()
    page.get_by_role("heading", name="Email addresses").wait_for()
    row = page.locator('tr[data-address="alice@example.com"]')
    assert row.locator('[data-protocol="pop3"]').get_attribute("data-allowed") == "yes"
    shot(page, "domain-addresses")

    # Connected devices (the three dots of alice's row)
    row.get_by_label("Actions for alice@example.com").click()
    row.get_by_role("menuitem", name="Connected devices").click()
    page.get_by_role("heading", name="Connected devices").wait_for()
    assert page.get_by_text("not encrypted").count() == 1
    shot(page, "connected-devices")
    page.go_back()

    # The three dots beside the address, Edit settings
    row = page.locator('tr[data-address="alice@example.com"]')
    row.get_by_label("Actions for alice@example.com").click()
    shot(page, "address-menu")
    row.get_by_role("menuitem", name="Edit settings").click()
    page.get_by_role("heading", name="Edit settings").wait_for()

    # Advanced settings: switch POP3 off, Save
    page.get_by_text("Advanced settings", exact=True).click()
    pop3 = page.locator("#t-pop3")
    assert pop3.is_checked()
    page.locator('label[for="t-pop3"]').click()
    assert not pop3.is_checked()
    shot(page, "edit-settings-advanced")
    page.get_by_role("button", name="Save").click()

    page.get_by_text("were saved and apply at once").wait_for()
    row = page.locator('tr[data-address="alice@example.com"]')
    assert row.locator('[data-protocol="pop3"]').get_attribute("data-allowed") == "no"
    assert row.locator('[data-protocol="imap"]').get_attribute("data-allowed") == "yes"

    # The servers' decision follows at once, and the open POP3 session was ended.
    refused = access(live, "alice@example.com", "pop3")
    assert not refused.allowed
    assert refused.reason == "POP3 is disabled for this address by its administrator"
    assert access(live, "alice@example.com", "imap").allowed
    for _ in range(50):
        if "pop3" not in sessions_of(live, "alice@example.com"):
            break
        time.sleep(0.05)
    assert sessions_of(live, "alice@example.com") == ["imap", "smtp"]

    # Client settings and DNS records
    menu = page.get_by_role("complementary", name="Domain menu")
    menu.get_by_role("link", name="Client settings").click()
    page.get_by_text("We always recommend running SSL").wait_for()
    shot(page, "client-settings")
    menu.get_by_role("link", name="DNS records").click()
    page.get_by_role("heading", name="DNS records").wait_for()
    shot(page, "dns-records")

    # Force the whole domain to POP3 only
    menu.get_by_role("link", name="Protocols").click()
    page.get_by_text("Force POP3 only").click()
    page.get_by_role("button", name="Save").click()
    page.locator("#policy-banner").wait_for()
    shot(page, "domain-protocols")
    imap = access(live, "alice@example.com", "imap")
    assert not imap.allowed and imap.forced_by_domain
    assert "set to POP3 only" in imap.reason
    assert access(live, "alice@example.com", "pop3").allowed  # the domain setting overrides the switch
    assert "imap" not in sessions_of(live, "alice@example.com")

    # Every address it affects shows it
    menu.get_by_text("Overview", exact=True).click()
    menu.get_by_role("link", name="Email", exact=True).click()
    assert page.locator('[data-protocol="imap"][data-allowed="no"]').count() == 3
    page.close()


def test_forms_show_errors_in_the_browser(live: Any, browser: Any, shot: Any) -> None:
    page = browser.new_page(viewport={"width": 1360, "height": 860})
    page.goto(live.url + "/login")
    page.get_by_label("Login or email address").fill("admin")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("invalid username or password").wait_for()
    assert page.get_by_label("Login or email address").input_value() == "admin"
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(live.url + "/domains/example.com/email")
    page.get_by_role("button", name="+ New address").click()
    page.get_by_label("Address", exact=True).fill("not valid@@")
    page.get_by_label("Password").fill("long-enough-pw")
    page.get_by_role("button", name="Create address").click()
    page.get_by_text("is not a valid email address").wait_for()
    assert page.get_by_label("Address", exact=True).input_value() == "not valid@@"
    shot(page, "form-errors")
    # Delete with the confirmation dialog
    row = page.locator('tr[data-address="sales@example.com"]')
    row.get_by_label("Actions for sales@example.com").click()
    row.get_by_role("menuitem", name="Delete").click()
    dialog = page.locator("#confirm-dialog")
    assert dialog.is_visible()
    dialog.get_by_role("button", name="Delete").click()
    page.get_by_text("sales@example.com and its mail were deleted").wait_for()
    assert page.locator('tr[data-address="sales@example.com"]').count() == 0
    page.close()


def _panel_post(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    token = CSRF_RE.search(client.get(path).text)
    assert token
    return client.post(path, data={**data, "csrf_token": token.group(1)})


def test_protocol_logins_follow_the_panel(live_with_mail: Any) -> None:
    """After the panel switches POP3 off, poplib is refused with the reason and imaplib works;
    after the domain is forced to POP3 only, imaplib is refused."""
    live = live_with_mail
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    pop_port, imap_port = live.office.bound["pop3s"].port, live.office.bound["imaps"].port
    edit = "/domains/example.com/email/alice@example.com/edit"
    with httpx.Client(base_url=live.url, follow_redirects=False) as panel:
        _panel_post(panel, "/login", {"username": "admin", "password": ADMIN_PASSWORD})
        response = _panel_post(panel, edit, {"switches": "1", "imap": "on", "smtp": "on", "display_name": "Alice",
                                             "quota": "500", "pop3_policy": "delete"})
        assert response.status_code == 303

        pop = poplib.POP3_SSL("127.0.0.1", pop_port, context=tls, timeout=10)
        pop.user("alice@example.com")
        with pytest.raises(poplib.error_proto) as refused:
            pop.pass_("alice-password")
        assert b"POP3 is disabled for this address" in refused.value.args[0]
        pop.close()

        imap = imaplib.IMAP4_SSL("127.0.0.1", imap_port, ssl_context=tls, timeout=10)
        assert imap.login("alice@example.com", "alice-password")[0] == "OK"
        imap.logout()

        response = _panel_post(panel, "/domains/example.com/protocols", {"protocol_policy": "pop3-only"})
        assert response.status_code == 303
        imap = imaplib.IMAP4_SSL("127.0.0.1", imap_port, ssl_context=tls, timeout=10)
        with pytest.raises(imaplib.IMAP4.error) as refused_imap:
            imap.login("alice@example.com", "alice-password")
        assert "POP3 only" in str(refused_imap.value)
        imap.shutdown()


def test_rules_editor_and_vacation_form_file_real_mail(live_with_mail: Any, browser: Any, shot: Any) -> None:
    """Issue 16: the Filters and vacation page in a browser writes Sieve that the SMTP server's
    delivery then runs: a rule files mail into Archive, the vacation reply answers a sender."""
    import smtplib
    from datetime import date, timedelta

    live = live_with_mail
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(10000)
    page.goto(live.url + "/login")
    page.get_by_label("Login or email address").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Service overview").wait_for()
    page.goto(live.url + "/domains/example.com/email")
    row = page.locator('tr[data-address="alice@example.com"]')
    row.get_by_label("Actions for alice@example.com").click()
    row.get_by_role("menuitem", name="Filters and vacation").click()
    page.get_by_role("heading", name="Filters and vacation").wait_for()

    page.get_by_label("Rule 1 field").select_option("subject")
    page.get_by_label("Rule 1 text").fill("[news]")
    page.get_by_label("Rule 1 action").select_option("move")
    page.get_by_label("Rule 1 folder or address").fill("Archive")
    page.get_by_label("Rule 2 field").select_option("from")
    page.get_by_label("Rule 2 text").fill("boss@")
    page.get_by_label("Rule 2 action").select_option("forward")
    page.get_by_label("Rule 2 folder or address").fill("not-an-address")
    page.locator("#vacation-enabled").check()
    page.get_by_label("Subject", exact=True).fill("Out of office")
    page.get_by_label("Reply", exact=True).fill("I am away this week.")
    today = date.today()
    page.get_by_label("First day").fill((today - timedelta(days=1)).isoformat())
    page.get_by_label("Last day").fill((today + timedelta(days=7)).isoformat())
    page.get_by_role("button", name="Save rules and vacation").click()
    page.get_by_text("give the address to forward to").wait_for()  # the bad rule, shown beside it
    assert page.get_by_label("Rule 1 text").input_value() == "[news]"  # what was typed is kept
    page.get_by_label("Rule 2 text").fill("")  # drop the bad rule
    page.get_by_role("button", name="Save rules and vacation").click()
    page.get_by_text("The filters and vacation reply were saved").wait_for()
    shot(page, "filters-and-vacation")
    assert page.get_by_label("Rule 1 folder or address").input_value() == "Archive"
    assert page.get_by_label("Reply", exact=True).input_value() == "I am away this week."

    smtp_port = live.office.bound["smtp"].port
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
        smtp.sendmail("list@news.example", ["alice@example.com"],
                      b"From: list@news.example\r\nTo: alice@example.com\r\nList-Id: <weekly.news.example>\r\n"
                      b"Subject: [news] weekly\r\n\r\nhi\r\n")
        smtp.sendmail("friend@far.example", ["alice@example.com"],
                      b"From: friend@far.example\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nhi\r\n")

    async def state() -> tuple[int, int, list[str]]:
        account = await live.office.store.get_account("alice@example.com")
        archive = await live.office.store.get_mailbox(account.id, "Archive")
        inbox = await live.office.store.get_mailbox(account.id, "INBOX")
        replied = await live.office.store.db.read(lambda tx: [r[0] for r in tx.all(
            "SELECT sender FROM sieve_vacation WHERE account_id = ?", (account.id,))])
        return (len(await live.office.store.list_messages(archive.id)),
                len(await live.office.store.list_messages(inbox.id)), replied)
    archived, inbox, replied = live.call(state())
    assert (archived, inbox) == (1, 1)
    assert replied == ["friend@far.example"]  # the list message got no reply
    page.close()


def test_totp_enrolment_and_login_in_the_browser(live: Any, browser: Any, shot: Any) -> None:
    """Issue 16: set up two-factor login in a browser (the panel's clock fixed), then log in
    with password and code in a second browser context."""
    from postoffice.services import totp

    fixed = [1_900_000_000.0]
    live.office.clock = lambda: fixed[0]
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(10000)
    page.goto(live.url + "/login")
    page.get_by_label("Login or email address").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Service overview").wait_for()
    page.get_by_role("link", name="Two-factor login").click()
    page.get_by_role("button", name="Set up two-factor login").click()
    secret = page.locator("[data-totp-secret]").inner_text()
    shot(page, "totp-setup")
    page.get_by_label("Code from the app").fill(totp.totp(secret, int(fixed[0] // 30)))
    page.get_by_role("button", name="Turn on").click()
    page.locator("#recovery-codes").wait_for()
    assert page.locator("[data-recovery-code]").count() == 10
    page.close()

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    other = context.new_page()
    other.set_default_timeout(10000)
    other.goto(live.url + "/login")
    other.get_by_label("Login or email address").fill("admin")
    other.get_by_label("Password").fill(ADMIN_PASSWORD)
    other.get_by_role("button", name="Log in").click()
    other.get_by_role("heading", name="Two-factor login").wait_for()
    fixed[0] += 30
    other.get_by_label("Authentication code").fill(totp.totp(secret, int(fixed[0] // 30)))
    other.get_by_role("button", name="Continue").click()
    other.get_by_role("heading", name="Service overview").wait_for()
    context.close()


def test_spam_settings_forms_in_the_browser(live_with_mail: Any, browser: Any, shot: Any) -> None:
    """Issue 15: the Junk threshold and the sender lists of a domain and of an address, set in a
    browser (errors beside the field, removal behind a confirmation) and obeyed on port 25."""
    import smtplib

    live = live_with_mail
    store = live.office.store
    page = browser.new_page(viewport={"width": 1360, "height": 1100})
    page.set_default_timeout(10000)
    page.goto(live.url + "/login")
    page.get_by_label("Login or email address").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Service overview").wait_for()
    page.goto(live.url + "/domains/example.com/spam-filter")
    threshold = page.get_by_label("Score at which mail goes to Junk")
    threshold.fill("lots")
    page.get_by_role("button", name="Save threshold").click()
    page.get_by_text("the Junk threshold must be a number").wait_for()
    assert page.get_by_label("Score at which mail goes to Junk").input_value() == "lots"
    page.get_by_label("Score at which mail goes to Junk").fill("7.5")
    page.get_by_role("button", name="Save threshold").click()
    page.get_by_text("Junk threshold of example.com: 7.5.").wait_for()
    domain = live.call(store.get_domain("example.com"))
    assert live.call(store.spam_threshold(domain_id=domain.id)) == 7.5

    page.get_by_label("Sender").fill("bad sender@")
    page.get_by_role("button", name="Add sender").click()
    page.get_by_text("is not an address, a domain or *.domain").wait_for()
    page.get_by_label("Sender").fill("*.Spammy.Example")
    page.get_by_role("button", name="Add sender").click()
    page.get_by_text("*.spammy.example was added to the block list of example.com").wait_for()
    shot(page, "spam-filter-settings")
    smtp_port = live.office.bound["smtp"].port

    def rcpt(sender: str, rcpt: str = "alice@example.com") -> int:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.ehlo("mx.far.example")
            smtp.mail(sender)
            return smtp.rcpt(rcpt)[0]

    assert rcpt("bulk@mx.spammy.example") == 550
    assert rcpt("friend@far.example") == 250

    # The address's own page (three dots > Spam settings): its allow entry beats the domain's block.
    page.goto(live.url + "/domains/example.com/email")
    row = page.locator('tr[data-address="alice@example.com"]')
    row.get_by_label("Actions for alice@example.com").click()
    row.get_by_role("menuitem", name="Spam settings").click()
    page.get_by_role("heading", name="Spam settings").wait_for()
    assert page.get_by_label("Score at which mail goes to Junk").get_attribute("placeholder") == "as the domain (7.5)"
    page.get_by_label("Sender").fill("news@mx.spammy.example")
    page.get_by_text("Allow", exact=True).click()
    page.get_by_role("button", name="Add sender").click()
    page.get_by_text("news@mx.spammy.example was added to the allow list of alice@example.com").wait_for()
    assert rcpt("news@mx.spammy.example") == 250
    assert rcpt("news@mx.spammy.example", "info@example.com") == 550  # info has no such entry
    page.get_by_label("Score at which mail goes to Junk").fill("0")
    page.get_by_role("button", name="Save threshold").click()
    page.get_by_text("must be above 0").wait_for()
    page.get_by_label("Score at which mail goes to Junk").fill("12")
    page.get_by_role("button", name="Save threshold").click()
    page.get_by_text("Junk threshold of alice@example.com: 12.").wait_for()
    alice = live.call(store.get_account("alice@example.com"))
    assert live.call(store.spam_policies([alice.id]))[alice.id][1] == 12

    # Removal asks first; cancelling keeps the entry.
    page.goto(live.url + "/domains/example.com/spam-filter")
    entry = page.locator('#block-list tr[data-entry="*.spammy.example"]')
    entry.get_by_role("button", name="Remove").click()
    dialog = page.locator("#confirm-dialog")
    assert dialog.is_visible()
    assert "Remove *.spammy.example from the block list?" in dialog.inner_text()
    dialog.get_by_role("button", name="Remove").click()
    page.get_by_text("*.spammy.example was removed from the block list of example.com").wait_for()
    assert page.locator('#block-list tr[data-entry="*.spammy.example"]').count() == 0
    assert live.call(store.sender_lists(domain_id=domain.id)) == {"allow": [], "block": []}
    assert rcpt("bulk@mx.spammy.example") == 250
    page.close()
