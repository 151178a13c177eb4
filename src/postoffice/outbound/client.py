"""One SMTP transaction to one host (aiosmtplib), with per-recipient outcomes.

Every outcome is classified for the queue: ``delivered``, or failed ``permanent`` (5xx: bounce)
or temporary (4xx, connection problems, timeouts, garbage, a drop mid-DATA: retry later).
"""

from __future__ import annotations

import enum
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib

from ..protocols.smtp.grammar import xtext_encode

__all__ = [
    "TLSPolicy",
    "SmarthostAuth",
    "RecipientResult",
    "deliver_to_host",
    "enhanced_status",
]


class TLSPolicy(enum.Enum):
    #: STARTTLS whenever offered, certificate not checked; plaintext if not offered or if the
    #: handshake fails (RFC 3207 opportunistic TLS; RFC 7435).
    OPPORTUNISTIC = "opportunistic"
    #: STARTTLS is mandatory and the certificate must be valid for the MX host name
    #: (MTA-STS mode enforce, RFC 8461 4.2). Failure is temporary.
    VERIFY = "verify"
    #: Never start TLS (tests, or a local relay).
    NONE = "none"


@dataclass(frozen=True)
class SmarthostAuth:
    """Credentials for a relay. ``implicit_tls`` = TLS from the first byte (port 465);
    otherwise STARTTLS is required before AUTH unless ``require_tls`` is False (config
    ``smarthost_tls = "none"``: STARTTLS only if offered). ``verify_certs`` checks the relay's
    certificate."""

    username: str
    password: str
    implicit_tls: bool = False
    verify_certs: bool = True
    require_tls: bool = True


@dataclass(frozen=True)
class RecipientResult:
    recipient: str
    delivered: bool
    permanent: bool  # only meaningful when not delivered: True -> bounce, False -> retry
    code: int  # the remote reply code; 0 when there was no usable reply
    status: str  # RFC 3463 enhanced status code ("2.0.0", "5.1.1", "4.4.1", ...)
    message: str  # the remote's reply text (or our description of a local failure)
    remote_host: str
    stage: str  # "connect", "tls", "ehlo", "auth", "mail", "rcpt", "data" or "done"
    tls: bool = False
    #: The remote advertised DSN, so the RFC 3461 parameters went on with the recipient and
    #: any success report is the next hop's job (RFC 3461 §5.2.2).
    dsn: bool = False

    @property
    def temporary(self) -> bool:
        return not self.delivered and not self.permanent

    @property
    def try_next_host(self) -> bool:
        """Try the next MX for this recipient within the same attempt (RFC 5321 §5.1; Postfix:
        "when mail delivery fails due to a recoverable error condition, the SMTP client will
        try to deliver the mail to an alternate host"): any failure of the host itself
        (connect, TLS, greeting, EHLO; a 5xx greeting too), and a temporary one -- a 4xx
        reply or a dropped connection -- before the message went out: at MAIL FROM, or this
        recipient's RCPT TO. Never once DATA began: the message may have arrived there, and a
        later retry is better than a second copy now."""
        if self.delivered:
            return False
        if self.stage in ("connect", "tls", "ehlo"):
            return True
        return not self.permanent and self.stage in ("mail", "rcpt")

    @property
    def diagnostic(self) -> str:
        """RFC 3464 Diagnostic-Code value: ``smtp; 550 5.1.1 ...`` for remote replies."""
        if self.code:
            text = " ".join(self.message.split())
            return f"smtp; {self.code} {text}".strip()
        return f"X-Postoffice; {' '.join(self.message.split())}"


_ENHANCED_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


def enhanced_status(code: int, text: str, default_detail: str = "0.0") -> str:
    """The RFC 3463 code from the reply text, or one derived from the basic reply code."""
    m = _ENHANCED_RE.match(text.strip())
    if m and code and str(code)[0] == m.group(1):
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    if 200 <= code < 300:
        return "2.0.0"
    if 500 <= code < 600:
        return f"5.{default_detail}"
    return f"4.{default_detail}"


class _Failure(Exception):
    """A failure that applies to every recipient not yet settled."""

    def __init__(self, stage: str, code: int, message: str, *, permanent: bool, status: str):
        super().__init__(message)
        self.stage = stage
        self.code = code
        self.message = message
        self.permanent = permanent
        self.status = status


def _reply_failure(stage: str, exc: aiosmtplib.SMTPResponseException) -> _Failure:
    code = exc.code if 100 <= exc.code <= 599 else 0
    message = exc.message or ""
    if code == 0:
        return _Failure(stage, 0, f"invalid reply: {message}"[:500], permanent=False, status="4.5.0")
    permanent = 500 <= code < 600
    return _Failure(
        stage, code, message, permanent=permanent, status=enhanced_status(code, message)
    )


def _connection_failure(stage: str, exc: BaseException) -> _Failure:
    """Connection-level trouble is always temporary (RFC 5321 4.5.4.1)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        failure = _reply_failure(stage, exc)
        if failure.code == 0:
            return failure
    if isinstance(exc, (TimeoutError, aiosmtplib.SMTPTimeoutError)):
        return _Failure(stage, 0, f"timeout during {stage}", permanent=False, status="4.4.2")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return _Failure(
            stage, 0, f"connection lost during {stage}: {exc}", permanent=False, status="4.4.2"
        )
    if isinstance(exc, aiosmtplib.SMTPConnectError) or isinstance(exc, OSError):
        return _Failure(stage, 0, f"cannot connect: {exc}", permanent=False, status="4.4.1")
    if isinstance(exc, ssl.SSLError):
        return _Failure(stage, 0, f"TLS failure: {exc}", permanent=False, status="4.7.5")
    return _Failure(stage, 0, f"{stage}: {exc.__class__.__name__}: {exc}", permanent=False,
                    status="4.4.2")


def _no_verify_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _has_8bit(message: bytes) -> bool:
    # bytes.isascii is one C pass (a 50 MB message: ~5 ms); the generator it replaces walked
    # every octet in Python on the event loop (seconds), at each delivery attempt.
    return not message.isascii()


async def deliver_to_host(
    host: str,
    port: int,
    mail_from: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    helo_name: str,
    tls_policy: TLSPolicy = TLSPolicy.OPPORTUNISTIC,
    timeout: float = 60.0,
    smarthost_auth: SmarthostAuth | None = None,
    tls_context: ssl.SSLContext | None = None,
    tls_server_name: str | None = None,
    envid: str | None = None,
    ret: str | None = None,
    rcpt_dsn: Sequence[tuple[str | None, str | None]] | None = None,
) -> list[RecipientResult]:
    """Run one SMTP transaction with ``host:port`` for ``recipients``; one result each, in order.

    ``mail_from`` "" sends ``MAIL FROM:<>`` (bounces). ``tls_context`` overrides the verifying
    context used with TLSPolicy.VERIFY / smart hosts (tests pass one trusting their own CA);
    ``tls_server_name`` the name the certificate must carry after STARTTLS (default ``host``;
    with implicit TLS the certificate is always checked against ``host``).
    ``timeout`` applies to each command.

    DSN (RFC 3461 §5.2): when the remote advertises it, ``ret`` / ``envid`` go on MAIL FROM and
    each recipient's ``rcpt_dsn`` entry (notify, orcpt "addr-type;address") on its RCPT.
    """
    dsn_args = dict(envid=envid, ret=ret, rcpt_dsn=rcpt_dsn)
    try:
        return await _deliver(
            host, port, mail_from, recipients, message, helo_name=helo_name,
            tls_policy=tls_policy, timeout=timeout, smarthost_auth=smarthost_auth,
            tls_context=tls_context, tls_server_name=tls_server_name, allow_tls=True, **dsn_args,
        )
    except _RetryWithoutTLS:
        return await _deliver(
            host, port, mail_from, recipients, message, helo_name=helo_name,
            tls_policy=tls_policy, timeout=timeout, smarthost_auth=smarthost_auth,
            tls_context=tls_context, tls_server_name=tls_server_name, allow_tls=False, **dsn_args,
        )


class _RetryWithoutTLS(Exception):
    pass


async def _deliver(
    host: str,
    port: int,
    mail_from: str,
    recipients: Sequence[str],
    message: bytes,
    *,
    helo_name: str,
    tls_policy: TLSPolicy,
    timeout: float,
    smarthost_auth: SmarthostAuth | None,
    tls_context: ssl.SSLContext | None,
    tls_server_name: str | None,
    allow_tls: bool,
    envid: str | None = None,
    ret: str | None = None,
    rcpt_dsn: Sequence[tuple[str | None, str | None]] | None = None,
) -> list[RecipientResult]:
    verifying = tls_policy == TLSPolicy.VERIFY or (
        smarthost_auth is not None and smarthost_auth.verify_certs
    )
    verify_ctx = tls_context or ssl.create_default_context()
    implicit = smarthost_auth is not None and smarthost_auth.implicit_tls
    smtp = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        local_hostname=helo_name,
        timeout=timeout,
        use_tls=implicit,
        start_tls=False,
        validate_certs=verifying,
        tls_context=(verify_ctx if verifying else _no_verify_context()) if implicit else None,
    )
    settled: dict[int, RecipientResult] = {}
    tls_on = implicit
    dsn_on = False
    stage = "connect"

    def result(i: int, rcpt: str, **kw: object) -> RecipientResult:
        return RecipientResult(recipient=rcpt, remote_host=host, tls=tls_on, dsn=dsn_on,  # type: ignore[arg-type]
                               **kw)

    try:
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise _reply_failure("connect", exc) from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
            raise _connection_failure("connect", exc) from None

        stage = "ehlo"
        await _greet(smtp)

        if not implicit:
            must = tls_policy == TLSPolicy.VERIFY or (
                smarthost_auth is not None and smarthost_auth.require_tls
            )
            want = must or (allow_tls and tls_policy == TLSPolicy.OPPORTUNISTIC)
            offered = smtp.supports_extension("starttls")
            if want and offered:
                stage = "tls"
                try:
                    await smtp.starttls(
                        server_hostname=tls_server_name or host,
                        validate_certs=verifying,
                        tls_context=verify_ctx if verifying else _no_verify_context(),
                    )
                except aiosmtplib.SMTPResponseException as exc:
                    if must or exc.code <= 0:
                        raise _reply_failure("tls", exc) from None
                    # STARTTLS refused: carry on in plaintext on this connection (RFC 3207).
                    stage = "ehlo"
                    await _greet(smtp)
                except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
                    if must:
                        f = _connection_failure("tls", exc)
                        raise _Failure("tls", 0, f"TLS required but failed: {f.message}",
                                       permanent=False, status="4.7.5") from None
                    _close(smtp)
                    raise _RetryWithoutTLS() from None  # the failed handshake broke the session
                else:
                    tls_on = True
                    stage = "ehlo"
                    await _greet(smtp)  # RFC 3207 4.2: forget the pre-TLS EHLO answer
            elif must:
                raise _Failure("tls", 0, "TLS required but STARTTLS not offered",
                               permanent=False, status="4.7.4")

        if smarthost_auth is not None:
            stage = "auth"
            # One mechanism, chosen by us: retrying the password with several mechanisms after a
            # 535 gains nothing and some servers stall on it.
            methods = [m.upper() for m in smtp.server_auth_methods]
            user, password = smarthost_auth.username, smarthost_auth.password
            try:
                if "PLAIN" in methods:
                    await smtp.auth_plain(user, password)
                elif "LOGIN" in methods:
                    await smtp.auth_login(user, password)
                elif "CRAM-MD5" in methods:
                    await smtp.auth_crammd5(user, password)
                else:
                    raise _Failure("auth", 0, "relay offers no usable AUTH mechanism",
                                   permanent=False, status="4.7.8")
            except aiosmtplib.SMTPResponseException as exc:
                f = _reply_failure("auth", exc)
                # A rejected login is our configuration problem: keep the mail and retry.
                raise _Failure("auth", f.code, f.message, permanent=False,
                               status=f.status.replace("5.", "4.", 1)) from None
            except aiosmtplib.SMTPException as exc:
                raise _Failure("auth", 0, f"AUTH failed: {exc}", permanent=False,
                               status="4.7.8") from None

        stage = "mail"
        options: list[str] = []
        if _has_8bit(message) and smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if smtp.supports_extension("size"):
            options.append(f"SIZE={len(message)}")
        dsn_on = smtp.supports_extension("dsn")
        if dsn_on:
            if ret:
                options.append(f"RET={ret.upper()}")
            if envid:
                options.append(f"ENVID={xtext_encode(envid)}")
        try:
            await smtp.mail(mail_from, options=options)
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_failure("mail", exc) from None

        stage = "rcpt"
        accepted: list[int] = []
        for i, rcpt in enumerate(recipients):
            rcpt_options: list[str] = []
            if dsn_on and rcpt_dsn is not None and i < len(rcpt_dsn):
                notify, orcpt = rcpt_dsn[i]
                if notify:
                    rcpt_options.append(f"NOTIFY={notify.upper()}")
                if orcpt and ";" in orcpt:
                    addr_type, _, addr = orcpt.partition(";")
                    rcpt_options.append(f"ORCPT={addr_type.strip()};{xtext_encode(addr.strip())}")
            try:
                resp = await smtp.rcpt(rcpt, options=rcpt_options)
            except aiosmtplib.SMTPRecipientRefused as exc:
                f = _reply_failure("rcpt", exc)
                if f.code == 0:
                    raise f from None
                settled[i] = result(
                    i, rcpt, delivered=False, permanent=f.permanent, code=f.code,
                    status=f.status, message=f.message, stage="rcpt",
                )
                continue
            except aiosmtplib.SMTPResponseException as exc:
                raise _reply_failure("rcpt", exc) from None
            accepted.append(i)
            _ = resp

        if not accepted:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                pass
            return [settled[i] for i in range(len(recipients))]

        stage = "data"
        try:
            resp = await smtp.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            raise _reply_failure("data", exc) from None
        for i in accepted:
            settled[i] = result(
                i, recipients[i], delivered=True, permanent=False, code=resp.code,
                status=enhanced_status(resp.code, resp.message), message=resp.message,
                stage="done",
            )
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass  # the message is accepted; a bad QUIT changes nothing
    except _Failure as f:
        _close(smtp)
        for i, rcpt in enumerate(recipients):
            if i not in settled:
                settled[i] = result(
                    i, rcpt, delivered=False, permanent=f.permanent, code=f.code,
                    status=f.status, message=f.message, stage=f.stage,
                )
    except _RetryWithoutTLS:
        raise
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError, TimeoutError) as exc:
        # Drops, timeouts and garbage at any point: temporary for whoever is not settled yet.
        # A drop after DATA was sent but before the final reply is temporary too (RFC 5321
        # 6.1 accepts the risk of a duplicate rather than a loss).
        _close(smtp)
        f = _connection_failure(stage, exc)
        for i, rcpt in enumerate(recipients):
            if i not in settled:
                settled[i] = result(
                    i, rcpt, delivered=False, permanent=False, code=f.code,
                    status=f.status, message=f.message, stage=stage,
                )
    return [settled[i] for i in range(len(recipients))]


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, falling back to HELO when EHLO is refused with 5xx (RFC 5321 3.2)."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError as exc:
        if not (500 <= exc.code < 600):
            raise _reply_failure("ehlo", exc) from None
        try:
            await smtp.helo()
        except aiosmtplib.SMTPHeloError as exc2:
            raise _reply_failure("ehlo", exc2) from None


def _close(smtp: aiosmtplib.SMTP) -> None:
    try:
        smtp.close()
    except Exception:
        pass
