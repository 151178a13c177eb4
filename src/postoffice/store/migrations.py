"""Numbered schema migrations, applied in order and recorded in ``schema_migrations``.

Each migration is a list of SQL statements written in the subset SQLite and PostgreSQL share
(INTEGER, TEXT, BLOB, REAL). A migration never changes once released: a schema change is a new
entry at the end of `MIGRATIONS`. `migrate()` runs the missing ones inside one transaction each,
so a crash mid-migration leaves the previous version intact.

Schema notes:
- ``messages.flags`` is a bit set of the IMAP system flags (see store.flags), ``keywords`` the
  space-separated user keywords; both are what SEARCH and FETCH FLAGS read without a join.
- Every change to a message bumps ``mailboxes.highestmodseq`` and stamps the message
  (RFC 7162 §3); an expunge leaves a row in ``expunged`` with its modseq so QRESYNC can answer
  VANISHED (RFC 7162 §3.2.10).
- ``messages.internal_date`` is the INTERNALDATE instant (UTC seconds), ``internal_zone`` the
  zone it was given in (minutes east of UTC; migration 18).
- ``blobs`` keeps what delivery learned by parsing the message once: IMAP ENVELOPE and
  BODYSTRUCTURE, the MIME part map and the header fields SEARCH uses.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable

from ..mail.address import InvalidAddress, normalize_address
from .db import Tx

log = logging.getLogger(__name__)

#: A step is an SQL statement or, for data that SQL cannot compute, a function of the
#: transaction (it runs inside the same one).
Step = str | Callable[[Tx], None]


def _renormalise_addresses(tx: Tx) -> None:
    """Issue #12: the address policy (mail.address) no longer case-folds local parts
    (``casefold`` mapped ``ß`` to ``ss`` and ``ſ``/``ﬃ``/Kelvin onto ASCII); it lower-cases and
    refuses look-alike characters. Stored keys were made by the old rule; each is put in the
    new form where that differs, so what users type still finds them. A key the new rule
    refuses, or whose new form is taken, is left as it was and logged for the administrator."""
    taken = {row[0] for row in tx.all("SELECT address FROM accounts")}
    taken |= {row[0] for row in tx.all("SELECT address FROM aliases")}

    def new_form(address: str, what: str) -> str:
        try:
            new = normalize_address(address)
        except InvalidAddress as exc:
            log.warning("%s %s cannot be written under the address rules (%s); rename it",
                        what, address, exc.reason or "invalid")
            return address
        return new

    def rename(table: str, row_id: int, address: str, what: str) -> None:
        new = new_form(address, what)
        if new == address:
            return
        if new in taken:
            log.warning("%s %s would become %s, which exists already; left as it was", what, address, new)
            return
        tx.execute(f"UPDATE {table} SET address = ? WHERE id = ?", (new, row_id))
        taken.discard(address)
        taken.add(new)
        log.info("%s %s is now stored as %s", what, address, new)

    def rewrite_list(text: str, sep: str, what: str) -> str:
        return sep.join(new_form(t, what) for t in text.split(sep) if t)

    for row_id, address in tx.all("SELECT id, address FROM accounts"):
        rename("accounts", row_id, address, "address")
    for row_id, address in tx.all("SELECT id, address FROM aliases"):
        rename("aliases", row_id, address, "alias")
    for row_id, targets in tx.all("SELECT id, targets FROM aliases"):
        new = rewrite_list(targets, "\n", "alias target")
        if new != targets:
            tx.execute("UPDATE aliases SET targets = ? WHERE id = ?", (new, row_id))
    for row_id, forward in tx.all("SELECT id, forward_to FROM accounts WHERE forward_to != ''"):
        new = rewrite_list(forward, " ", "forwarding target")
        if new != forward:
            tx.execute("UPDATE accounts SET forward_to = ? WHERE id = ?", (new, row_id))
    for row_id, catch_all in tx.all("SELECT id, catch_all FROM domains WHERE catch_all IS NOT NULL"):
        new = new_form(catch_all, "catch-all")
        if new != catch_all:
            tx.execute("UPDATE domains SET catch_all = ? WHERE id = ?", (new, row_id))


def _nfc_mailbox_names(tx: Tx) -> None:
    """Issue #12: mailbox names are stored in NFC (RFC 9051 §5.1; store.validate_mailbox_name)
    and every name a client sends is normalised before the lookup, so a name stored in another
    form would be unreachable: it is renamed to NFC. Were the NFC name taken already (two
    look-alike mailboxes made before), it becomes "<name> (2)" (or the next free number):
    both stay reachable and nothing is merged."""
    rows = tx.all("SELECT id, account_id, name FROM mailboxes ORDER BY id")
    taken = {(account_id, name) for _, account_id, name in rows}
    for mailbox_id, account_id, name in rows:
        nfc = unicodedata.normalize("NFC", name)
        if nfc == name:
            continue
        new, n = nfc, 1
        while (account_id, new) in taken:
            n += 1
            new = f"{nfc} ({n})"
        tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new, mailbox_id))
        taken.discard((account_id, name))
        taken.add((account_id, new))
        log.info("mailbox %r of account %d is now named %r (NFC)", name, account_id, new)
    for account_id, name in tx.all("SELECT account_id, name FROM subscriptions"):
        nfc = unicodedata.normalize("NFC", name)
        if nfc != name:
            tx.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name))
            tx.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                       (account_id, nfc))


MIGRATIONS: list[list[Step]] = [
    # 1: the foundation schema
    [
        """CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
        """CREATE TABLE domains (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            protocol_policy TEXT NOT NULL DEFAULT 'any',
            catch_all TEXT,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
            address TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL DEFAULT '',
            password_hash TEXT NOT NULL,
            password_changed_at REAL NOT NULL,
            imap_enabled INTEGER NOT NULL DEFAULT 1,
            pop3_enabled INTEGER NOT NULL DEFAULT 1,
            smtp_enabled INTEGER NOT NULL DEFAULT 1,
            quota_bytes INTEGER NOT NULL DEFAULT 0,
            forward_to TEXT NOT NULL DEFAULT '',
            pop3_policy TEXT NOT NULL DEFAULT 'delete',
            pop3_since REAL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX accounts_domain ON accounts(domain_id)",
        """CREATE TABLE aliases (
            id INTEGER PRIMARY KEY,
            domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
            address TEXT NOT NULL UNIQUE,
            targets TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX aliases_domain ON aliases(domain_id)",
        """CREATE TABLE mailboxes (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            special_use TEXT,
            uidvalidity INTEGER NOT NULL,
            uidnext INTEGER NOT NULL DEFAULT 1,
            highestmodseq INTEGER NOT NULL DEFAULT 1,
            subscribed INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            UNIQUE (account_id, name)
        )""",
        """CREATE TABLE blobs (
            id TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            header_size INTEGER NOT NULL,
            envelope BLOB,
            bodystructure BLOB,
            body BLOB,
            structure TEXT,
            subject TEXT,
            from_addr TEXT,
            to_addr TEXT,
            cc_addr TEXT,
            bcc_addr TEXT,
            message_id TEXT,
            in_reply_to TEXT,
            sent_date REAL,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
            uid INTEGER NOT NULL,
            blob_id TEXT NOT NULL REFERENCES blobs(id),
            size INTEGER NOT NULL,
            flags INTEGER NOT NULL DEFAULT 0,
            keywords TEXT NOT NULL DEFAULT '',
            internal_date REAL NOT NULL,
            modseq INTEGER NOT NULL,
            saved_at REAL NOT NULL,
            UNIQUE (mailbox_id, uid)
        )""",
        "CREATE INDEX messages_blob ON messages(blob_id)",
        "CREATE INDEX messages_modseq ON messages(mailbox_id, modseq)",
        """CREATE TABLE expunged (
            mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
            uid INTEGER NOT NULL,
            modseq INTEGER NOT NULL,
            PRIMARY KEY (mailbox_id, uid)
        )""",
        "CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq)",
        """CREATE TABLE admins (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL DEFAULT 'admin',
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE domain_owners (
            admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
            domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
            PRIMARY KEY (admin_id, domain_id)
        )""",
        """CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            admin_id INTEGER NOT NULL REFERENCES admins(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_used_at REAL
        )""",
        """CREATE TABLE queue (
            id INTEGER PRIMARY KEY,
            mail_from TEXT NOT NULL,
            blob_id TEXT NOT NULL REFERENCES blobs(id),
            account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            next_attempt REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            delay_notified INTEGER NOT NULL DEFAULT 0,
            envid TEXT,
            ret TEXT
        )""",
        "CREATE INDEX queue_next ON queue(next_attempt)",
        """CREATE TABLE queue_recipients (
            id INTEGER PRIMARY KEY,
            queue_id INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
            recipient TEXT NOT NULL,
            domain TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            last_error TEXT NOT NULL DEFAULT '',
            updated_at REAL NOT NULL,
            notify TEXT,
            orcpt TEXT
        )""",
        "CREATE INDEX queue_recipients_queue ON queue_recipients(queue_id)",
    ],
    # 2: POP3 "retired" messages: downloaded and deleted by a POP3 client while the address's
    # POP3 policy kept them on the server (keep / mark-read). They stay in INBOX for IMAP and
    # the panel but are never offered to POP3 again (services/maildrop.py). UIDs never repeat
    # within a mailbox's UIDVALIDITY, so (mailbox, uid) names one message for good.
    [
        """CREATE TABLE pop3_retired (
            mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
            uid INTEGER NOT NULL,
            retired_at REAL NOT NULL,
            PRIMARY KEY (mailbox_id, uid)
        )""",
    ],
    # 3 (issue #7, outbound): a queue entry is claimed by the worker delivering it until
    # ``claimed_until`` (so one entry is never processed twice at once; a crashed worker's claim
    # lapses). DKIM key pairs per domain, generated on demand (services/mailauth.py).
    [
        "ALTER TABLE queue ADD COLUMN claimed_until REAL",
        """CREATE TABLE dkim_keys (
            id INTEGER PRIMARY KEY,
            domain TEXT NOT NULL,
            selector TEXT NOT NULL,
            algorithm TEXT NOT NULL,
            private_key TEXT NOT NULL,
            public_txt TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (domain, selector)
        )""",
    ],
    # 4 (IMAP performance): a covering index for the IMAP server's per-mailbox index
    # (Store.flag_index: uid, flags, modseq, keywords; Store.message_details: size,
    # internal_date), read in UID order straight from the index, without a table lookup per
    # message (cold SELECT of a 100,000-message mailbox).
    [
        "CREATE INDEX messages_index ON messages(mailbox_id, uid, flags, modseq, keywords, size, internal_date)",
    ],
    # 5 (issue 11, IMAP conformance):
    # - ``blobs.sent_local``: the Date: header as written, ISO 8601 with its own zone offset,
    #   so SENTBEFORE/SENTON/SENTSINCE compare the sender's calendar date (RFC 3501 6.4.4);
    #   ``sent_date`` (UTC seconds) stays for older rows, which have no ``sent_local``.
    # - ``mailboxes.recent_uid``: the first UID no session has claimed as \Recent yet
    #   (RFC 3501 2.3.2). A read-write IMAP4rev1 session advances it in one transaction when it
    #   selects the mailbox or learns of new mail, so exactly one session sees a message as
    #   recent, whichever process it runs in. Existing messages count as claimed.
    # - ``subscriptions``: the subscription list is its own list of names (RFC 3501 6.3.6,
    #   RFC 5258 3.5): a name stays subscribed when its mailbox is deleted, and CREATE does not
    #   subscribe. The old ``mailboxes.subscribed`` column is copied over and no longer read.
    [
        "ALTER TABLE blobs ADD COLUMN sent_local TEXT",
        "ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1",
        "UPDATE mailboxes SET recent_uid = uidnext",
        """CREATE TABLE subscriptions (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            PRIMARY KEY (account_id, name)
        )""",
        "INSERT INTO subscriptions (account_id, name) SELECT account_id, name FROM mailboxes WHERE subscribed != 0",
    ],
    # 6 (issue #11, SORT/THREAD): what RFC 5256 SORT and THREAD compare (base subject, first
    # From/To/Cc, display names, Message-ID, References, sent date), computed once at delivery
    # (mail.sortkeys, a small JSON list). NULL for blobs stored before: the IMAP server computes
    # those on first use and writes them back (Store.sort_rows).
    [
        "ALTER TABLE blobs ADD COLUMN sortkeys TEXT",
    ],
    # 7 (issue 16, Sieve): each address's Sieve scripts (RFC 5804: named scripts, at most one
    # active) and the vacation responses already sent (RFC 5230 §4.2: one reply per sender and
    # handle within :days; ``until`` is when another may go).
    [
        """CREATE TABLE sieve_scripts (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            content TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL,
            UNIQUE (account_id, name)
        )""",
        """CREATE TABLE sieve_vacation (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            sender TEXT NOT NULL,
            handle TEXT NOT NULL,
            until REAL NOT NULL,
            PRIMARY KEY (account_id, sender, handle)
        )""",
    ],
    # 8 (issue #12): stored addresses re-keyed under the look-alike-safe address policy.
    [
        _renormalise_addresses,
    ],
    # 9 (issue #12): mailbox names in NFC.
    [
        _nfc_mailbox_names,
    ],
    # 10 (issue 16, app passwords): per-address passwords for one device, scoped to protocols
    # ("imap pop3 smtp", space-separated) and optionally expiring. Generated by the server
    # (about 94 bits of randomness), so a SHA-256 digest is enough to store (like API tokens);
    # ``last_used_at`` feeds the panel.
    [
        """CREATE TABLE app_passwords (
            id INTEGER PRIMARY KEY,
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            protocols TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            last_used_at REAL
        )""",
        "CREATE INDEX app_passwords_account ON app_passwords(account_id)",
    ],
    # 11 (issue 16): panel sessions kept on the server, so signing out (or "sign out everywhere
    # else") ends a session even if its signed cookie was copied; ``id`` is the SHA-256 of the
    # random session id the cookie carries.
    [
        """CREATE TABLE panel_sessions (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX panel_sessions_who ON panel_sessions(kind, name)",
    ],
    # 12 (issue #11, URLAUTH, RFC 4467 section 7): one random mailbox access key per user and
    # mailbox name, made by the first GENURLAUTH and deleted by RESETKEY.
    [
        """CREATE TABLE urlauth_keys (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            mailbox TEXT NOT NULL,
            key TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (account_id, mailbox)
        )""",
    ],
    # 13 (issue 16, two-factor login): a panel login's TOTP secret (RFC 6238; ``last_step`` is
    # the last time step accepted, so a code works once), its one-time recovery codes (SHA-256
    # digests), and per address whether IMAP/POP3/SMTP accept app passwords only.
    [
        """CREATE TABLE panel_totp (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            secret TEXT NOT NULL,
            last_step INTEGER,
            enabled_at REAL NOT NULL,
            PRIMARY KEY (kind, name)
        )""",
        """CREATE TABLE panel_recovery_codes (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            used_at REAL,
            PRIMARY KEY (kind, name, code_hash)
        )""",
        """CREATE TABLE account_security (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            app_passwords_only INTEGER NOT NULL DEFAULT 0
        )""",
    ],
    # 14 (issue #11, METADATA, RFC 5464): server (mailbox_id 0) and mailbox entries per account;
    # names lower-cased (they are case-insensitive), values octets.
    [
        """CREATE TABLE metadata (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            mailbox_id INTEGER NOT NULL,
            uidvalidity INTEGER NOT NULL,
            name TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (account_id, mailbox_id, uidvalidity, name)
        )""",
    ],
    # 15 (issue 15, spam filtering): rspamd's verdict on each message received on port 25, one
    # row per local recipient account ("unknown": rspamd could not be asked), for the panel's
    # counts of received, rejected and junked mail.
    [
        """CREATE TABLE filter_verdicts (
            queue_id TEXT NOT NULL,
            account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,
            action TEXT NOT NULL,
            score REAL,
            at REAL NOT NULL
        )""",
        "CREATE INDEX filter_verdicts_account ON filter_verdicts(account_id, at)",
    ],
    # 16 (issue 15): spam filtering switched on or off per domain and per address (no row: the
    # domain's setting, and for a domain: on).
    [
        """CREATE TABLE domain_spam_filter (
            domain_id INTEGER PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
            enabled INTEGER NOT NULL
        )""",
        """CREATE TABLE account_spam_filter (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            enabled INTEGER NOT NULL
        )""",
    ],
    # 17 (issue 15): the score at which mail goes to Junk, per domain and per address (no row:
    # rspamd's own action decides; an address's row overrides its domain's), and the allow and
    # block lists of senders (an address, a domain, or "*.domain" for its subdomains).
    [
        """CREATE TABLE domain_spam_threshold (
            domain_id INTEGER PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
            score REAL NOT NULL
        )""",
        """CREATE TABLE account_spam_threshold (
            account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            score REAL NOT NULL
        )""",
        """CREATE TABLE domain_sender_lists (
            domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
            entry TEXT NOT NULL,
            PRIMARY KEY (domain_id, kind, entry)
        )""",
        """CREATE TABLE account_sender_lists (
            account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('allow', 'block')),
            entry TEXT NOT NULL,
            PRIMARY KEY (account_id, kind, entry)
        )""",
    ],
    # 18: the time zone of each message's INTERNALDATE, in minutes east of UTC, as APPEND gave
    # it (0 for delivered mail): FETCH INTERNALDATE writes the instant in that zone and SEARCH
    # BEFORE/ON/SINCE compare the date as written there (RFC 9051 6.4.4). The covering index
    # takes the column, so Store.message_details still reads no table rows.
    [
        "ALTER TABLE messages ADD COLUMN internal_zone INTEGER NOT NULL DEFAULT 0",
        "DROP INDEX messages_index",
        "CREATE INDEX messages_index ON messages(mailbox_id, uid, flags, modseq, keywords, size, internal_date, "
        "internal_zone)",
    ],
]


def current_version(tx: Tx) -> int:
    return int(tx.scalar("SELECT coalesce(max(version), 0) FROM schema_migrations") or 0)


def migrate(tx: Tx) -> list[int]:
    """Apply every migration newer than the database; return the versions applied.

    Two nodes starting at once on one PostgreSQL database: the first to take the schema lock
    migrates, the other waits for its commit, then finds nothing left to do."""
    if tx.dialect.schema_lock:
        tx.execute(tx.dialect.schema_lock)
    tx.execute(tx.dialect.ddl(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    ))
    have = current_version(tx)
    if have > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {have}, newer than this postoffice ({len(MIGRATIONS)})"
        )
    applied = []
    for version, statements in enumerate(MIGRATIONS, start=1):
        if version <= have:
            continue
        for step in statements:
            if callable(step):
                step(tx)
            else:
                tx.execute(tx.dialect.ddl(step))
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))
        applied.append(version)
    return applied
