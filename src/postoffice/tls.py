"""TLS policy for every listener: one way to build a server SSLContext.

- TLS 1.2 minimum; on TLS 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (no CBC,
  no static RSA: RFC 7525 §4.2, BCP 195); TLS 1.3 suites are all AEAD. No compression, no
  renegotiation.
- ALPN (RFC 7301; the ALPACA cross-protocol attacks): a context made for one protocol (``imap``,
  ``pop3``, ``smtp``, ``managesieve``) answers a client that offers ALPN without that protocol
  with a fatal ``no_application_protocol`` alert (RFC 7301 §3.2), and selects it when offered.
  A client that offers no ALPN at all (most mail clients) is served as before. Python's ssl
  only *selects* (on a mismatch OpenSSL goes on without ALPN), so the offered list is read from
  the ClientHello through the context's message callback and the refusal made in the SNI
  callback, which runs after the ClientHello is read and may end the handshake with an alert.
- SNI (RFC 6066 §3): a name that is neither in one of our certificates nor a hosted domain (or a
  name under one, such as ``mail.example.com``) gets a fatal ``unrecognized_name`` alert, unless
  ``tls.default_for_unknown_names`` is set (then the default certificate). Hosted domains are a
  live set (`HostedDomains`), so a domain added while the server runs is served at once, before
  the certificate is regenerated. No SNI at all (clients connecting by IP address send none)
  gets the default certificate.
- Certificates: the configured PEM pair, or a self-signed one generated on first start under
  ``data_dir/tls`` naming the host name, ``localhost`` and the hosted domains' mail/imap/pop3/smtp
  names (some clients check the name even for a pinned certificate). It is regenerated when a
  hosted domain is missing from it, and otherwise reused.
- Per-domain certificates chosen by SNI (``[tls.sni."example.com"]``), for the domain itself and
  its subdomains.
"""

from __future__ import annotations

import _ssl
import datetime
import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .config import Config, ConfigError
from .dns import is_ip

log = logging.getLogger(__name__)

#: TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only (no CBC; RFC 7525 §4.2).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
#: ALPN protocol ids of the IANA registry (RFC 7301 §6) for the protocols we serve.
ALPN_IDS = {"imap": "imap", "pop3": "pop3", "smtp": "smtp", "managesieve": "managesieve"}
ALERT_NO_APPLICATION_PROTOCOL = 120  # RFC 7301 §3.2
_ALPN_EXTENSION = 16
_OFFERED = "_postoffice_alpn_offered"  # set on the SSLObject by the message callback

SERVICE_PREFIXES = ("mail", "imap", "pop3", "smtp", "autoconfig", "autodiscover")


def certificate_names(hostname: str, domains: Iterable[str]) -> list[str]:
    names = [hostname, "localhost"]
    for domain in domains:
        names.append(domain)
        names.extend(f"{prefix}.{domain}" for prefix in SERVICE_PREFIXES)
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.lower(), None)
    return list(seen)


def generate_self_signed(names: list[str], cert_path: Path, key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postoffice self-signed")])
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    alt.append(x509.IPAddress(ipaddress.ip_address("::1")))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.replace(tmp_key, key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_cert, cert_path)


def _names_in(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {n.lower() for n in san.get_values_for_type(x509.DNSName)}


def _still_usable(cert_path: Path, key_path: Path) -> bool:
    """Our self-signed pair is reused only while it has a month left and the key is the
    certificate's (a crash between the two renames in `generate_self_signed` leaves a mismatched
    pair, which would otherwise keep every TLS listener from starting)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30):
        return False
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt))


def ensure_certificate(config: Config, domains: Iterable[str] = ()) -> tuple[Path, Path]:
    """The (cert, key) paths to use, generating a self-signed pair when none is configured."""
    if config.tls.cert:
        return Path(config.tls.cert), Path(config.tls.key)
    directory = config.data_path / "tls"
    cert_path, key_path = directory / "selfsigned.crt", directory / "selfsigned.key"
    names = certificate_names(config.hostname, domains)
    if cert_path.exists() and key_path.exists():
        try:
            if set(names) <= _names_in(cert_path) and _still_usable(cert_path, key_path):
                return cert_path, key_path
        except (ValueError, TypeError):
            pass  # unreadable: make a new one
    generate_self_signed(names, cert_path, key_path)
    return cert_path, key_path


class AlertingSSLObject(ssl.SSLObject):
    """An SSLObject whose failed handshake still tells the client why.

    asyncio's (and uvloop's) SSL transport closes the connection as soon as ``do_handshake()``
    raises, without sending what OpenSSL has just written to the outgoing BIO: the fatal alert
    (no_application_protocol, unrecognized_name, protocol_version...). The client then sees a
    bare EOF. So the first failure is reported as "want read": the transport sends the pending
    bytes, alert included, and waits; the client hangs up on the alert (or the handshake
    timeout ends it), and any later call raises the real error. Installed through the
    documented ``SSLContext.sslobject_class``."""

    _failure: ssl.SSLError | None = None
    _outgoing: ssl.MemoryBIO | None = None

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *args: Any, **kwargs: Any) -> Any:
        # (what SSLContext.wrap_bio calls) keep the outgoing BIO, to see whether there is an alert
        obj = super()._create(incoming, outgoing, *args, **kwargs)  # type: ignore[misc]
        obj._outgoing = outgoing
        return obj

    def do_handshake(self) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            if self._outgoing is not None and not self._outgoing.pending:
                # Nothing to tell (plaintext on a TLS port: OpenSSL writes no alert for
                # WRONG_VERSION_NUMBER or HTTP_REQUEST): close now, not at the handshake timeout.
                raise
            self._failure = exc
            raise ssl.SSLWantReadError("handshake failed; the alert goes out first") from exc


def _base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = AlertingSSLObject
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


def client_hello_alpn(message: bytes) -> list[bytes] | None:
    """The ALPN protocol names a ClientHello handshake message offers (RFC 8446 §4.1.2,
    RFC 7301 §3.1), or None when it has no ALPN extension (or cannot be read)."""
    try:
        if message[0] != 1:  # HandshakeType client_hello
            return None
        pos = 4 + 2 + 32  # header, legacy_version, random
        pos += 1 + message[pos]  # legacy_session_id
        pos += 2 + int.from_bytes(message[pos:pos + 2], "big")  # cipher_suites
        pos += 1 + message[pos]  # legacy_compression_methods
        end = min(len(message), pos + 2 + int.from_bytes(message[pos:pos + 2], "big"))
        pos += 2
        while pos + 4 <= end:
            kind = int.from_bytes(message[pos:pos + 2], "big")
            size = int.from_bytes(message[pos + 2:pos + 4], "big")
            body = message[pos + 4:pos + 4 + size]
            pos += 4 + size
            if kind != _ALPN_EXTENSION:
                continue
            names, i = [], 2
            while i < len(body):
                n = body[i]
                names.append(bytes(body[i + 1:i + 1 + n]))
                i += 1 + n
            return names
    except IndexError:
        return None
    return None


def _remember_alpn(conn: object, direction: str, version: int, content_type: int, msg_type: int,
                   data: bytes) -> None:
    """The context's message callback: keep what a ClientHello offers for the SNI callback.
    Called for every TLS record, so everything else returns at once."""
    if content_type == 22 and msg_type == 1 and direction == "read":
        try:
            setattr(conn, _OFFERED, client_hello_alpn(data))
        except AttributeError:
            pass


def _hosts_of(cert_path: Path) -> set[str]:
    try:
        return _names_in(cert_path)
    except (ValueError, OSError):
        return set()


def _covers(names: set[str], host: str) -> bool:
    """Whether a certificate for ``names`` is for ``host`` (RFC 6125: one wildcard label)."""
    if host in names:
        return True
    parent = host.partition(".")[2]
    return bool(parent) and f"*.{parent}" in names


def _load(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS certificate file not found: {exc.filename or cert}") from None
    except PermissionError as exc:
        raise ConfigError(f"TLS certificate file not readable: {exc.filename or cert}") from None
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS certificate {cert} or key {key} is not a valid PEM pair: {exc.reason}") from None


class HostedDomains:
    """The hosted domain names, kept current by the server (app.py) while it runs, so the SNI
    callback (which runs inside the handshake and cannot query the store) knows them."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names: frozenset[str] = frozenset()
        self.replace(names)

    def replace(self, names: Iterable[str]) -> None:
        self.names = frozenset(n.lower().rstrip(".") for n in names)

    def covers(self, host: str) -> bool:
        """``host`` is a hosted domain or a name under one."""
        name = host
        while name:
            if name in self.names:
                return True
            name = name.partition(".")[2]
        return False


def server_context(config: Config, domains: Iterable[str] = (), protocol: str | None = None,
                   hosted: HostedDomains | None = None) -> ssl.SSLContext:
    """The SSLContext of a listener (implicit TLS and STARTTLS alike); with ``protocol``
    (imap, pop3, smtp, managesieve) it also enforces that protocol's ALPN id. ``hosted``: the
    live set of hosted domains whose names are recognised (default: ``domains``, fixed)."""
    domains = list(domains)
    if hosted is None:
        hosted = HostedDomains(domains)
    cert, key = ensure_certificate(config, domains)
    ctx = _base_context()
    _load(ctx, cert, key)
    sni: dict[str, ssl.SSLContext] = {}
    for domain, pair in config.tls.sni.items():
        sub = _base_context()
        _load(sub, Path(pair["cert"]), Path(pair["key"]))
        sni[domain.lower().rstrip(".")] = sub
    default_names = _hosts_of(cert)
    alpn = ALPN_IDS[protocol].encode() if protocol else None
    if alpn is not None:
        for c in (ctx, *sni.values()):
            c.set_alpn_protocols([alpn.decode()])
        if not _watch_client_hello(ctx):
            alpn = None  # cannot see what was offered: select when offered, never refuse
    ctx.sni_callback = _chooser(sni, default_names, hosted, config.tls.default_for_unknown_names, alpn)  # type: ignore[assignment]
    return ctx


def _watch_client_hello(ctx: ssl.SSLContext) -> bool:
    """Install `_remember_alpn` as the context's message callback, below ssl.py's wrapper
    (which would turn every record's numbers into enums on the event loop). False when this
    Python has no message callback (then ALPN is only selected, never refused)."""
    try:
        _ssl._SSLContext._msg_callback.__set__(ctx, _remember_alpn)  # type: ignore[attr-defined]
    except AttributeError:
        log.warning("this Python's ssl module has no message callback: ALPN mismatches are not refused")
        return False
    return True


def _chooser(sni: dict[str, ssl.SSLContext], default_names: set[str], hosted: HostedDomains,
             default_for_unknown: bool, alpn: bytes | None) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]:
    def choose(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        if alpn is not None:
            offered = getattr(sock, _OFFERED, None)
            if offered is not None and alpn not in offered:
                # RFC 7301 §3.2: none of the client's protocols is ours (an HTTPS client sent
                # here by an attacker, ALPACA): a fatal no_application_protocol alert.
                return ALERT_NO_APPLICATION_PROTOCOL
        if not server_name:
            return None  # no SNI (clients connecting by IP address): the default certificate
        name = server_name.lower().rstrip(".")
        while name:
            if name in sni:
                sock.context = sni[name]
                return None
            name = name.partition(".")[2]
        host = server_name.lower().rstrip(".")
        if default_for_unknown or _covers(default_names, host) or hosted.covers(host) or is_ip(host):
            return None
        return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # RFC 6066 §3
    return choose



def client_context_trusting(cert_path: Path) -> ssl.SSLContext:
    """A client context that trusts exactly our certificate (tests, health checks)."""
    ctx = ssl.create_default_context(cafile=str(cert_path))
    return ctx
