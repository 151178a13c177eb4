"""TLS policy for every listener: one way to build a server SSLContext.

- TLS 1.2 minimum, the ssl module's secure cipher defaults, no compression, no renegotiation.
- Certificates: the configured PEM pair, or a self-signed one generated on first start under
  ``data_dir/tls`` naming the host name, ``localhost`` and the hosted domains' mail/imap/pop3/smtp
  names (some clients check the name even for a pinned certificate). It is regenerated when a
  hosted domain is missing from it, and otherwise reused.
- Per-domain certificates chosen by SNI (``[tls.sni."example.com"]``), for the domain itself and
  its subdomains.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .config import Config, ConfigError

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


def _base_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if hasattr(ssl, "OP_NO_RENEGOTIATION"):
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


def _load(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS certificate file not found: {exc.filename or cert}") from None
    except PermissionError as exc:
        raise ConfigError(f"TLS certificate file not readable: {exc.filename or cert}") from None
    except ssl.SSLError as exc:
        raise ConfigError(f"TLS certificate {cert} or key {key} is not a valid PEM pair: {exc.reason}") from None


def server_context(config: Config, domains: Iterable[str] = ()) -> ssl.SSLContext:
    """The one SSLContext every listener uses (implicit TLS and STARTTLS alike)."""
    cert, key = ensure_certificate(config, domains)
    ctx = _base_context()
    _load(ctx, cert, key)
    sni: dict[str, ssl.SSLContext] = {}
    for domain, pair in config.tls.sni.items():
        sub = _base_context()
        _load(sub, Path(pair["cert"]), Path(pair["key"]))
        sni[domain.lower().rstrip(".")] = sub
    if sni:
        def choose(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            if not server_name:
                return
            name = server_name.lower().rstrip(".")
            while name:
                if name in sni:
                    sock.context = sni[name]
                    return
                name = name.partition(".")[2]
        ctx.sni_callback = choose  # type: ignore[assignment]
    return ctx


def client_context_trusting(cert_path: Path) -> ssl.SSLContext:
    """A client context that trusts exactly our certificate (tests, health checks)."""
    ctx = ssl.create_default_context(cafile=str(cert_path))
    return ctx
