"""The generated certificate and the one TLS policy, through real handshakes."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from pathlib import Path

import pytest
from cryptography import x509

from postoffice.config import ConfigError
from postoffice.tls import ensure_certificate, server_context
from tests.support.server import make_config


def names(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName))


def handshake(ctx: ssl.SSLContext, client: ssl.SSLContext, server_name: str) -> tuple[str, bytes]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                result["version"] = tls.version()
                tls.sendall(b"hello")
        except ssl.SSLError as exc:
            result["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with client.wrap_socket(raw, server_hostname=server_name) as tls:
                data = tls.recv(5)
                peer = tls.getpeercert(binary_form=True)
    finally:
        thread.join(5)
        listener.close()
    assert "error" not in result
    return str(result["version"]), peer or b""


def test_self_signed_is_generated_once_and_reused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    cert, key = ensure_certificate(config, ["example.com"])
    assert {"mail.test", "localhost", "example.com", "imap.example.com", "smtp.example.com"} <= names(cert)
    stamp = cert.stat().st_mtime_ns
    assert ensure_certificate(config, ["example.com"]) == (cert, key)
    assert cert.stat().st_mtime_ns == stamp
    assert key.stat().st_mode & 0o077 == 0
    # a new hosted domain gets a certificate naming it
    ensure_certificate(config, ["example.com", "example.org"])
    assert "pop3.example.org" in names(cert)


def test_handshake_with_generated_certificate_is_tls12_or_better(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ctx = server_context(config, ["example.com"])
    client = ssl.create_default_context(cafile=str(tmp_path / "tls" / "selfsigned.crt"))
    version, _ = handshake(ctx, client, "imap.example.com")
    assert version in ("TLSv1.2", "TLSv1.3")
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point: an old client
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        handshake(ctx, old, "localhost")


def test_sni_chooses_the_domain_certificate(tmp_path: Path) -> None:
    from postoffice.tls import generate_self_signed

    generate_self_signed(["example.org"], tmp_path / "org.crt", tmp_path / "org.key")
    config = make_config(tmp_path / "data", tls={"sni": {"example.org": {"cert": str(tmp_path / "org.crt"),
                                                                         "key": str(tmp_path / "org.key")}}})
    ctx = server_context(config)
    org_client = ssl.create_default_context(cafile=str(tmp_path / "org.crt"))
    org_client.check_hostname = False
    _, peer = handshake(ctx, org_client, "mail.example.org")
    assert peer == ssl.PEM_cert_to_DER_cert((tmp_path / "org.crt").read_text())
    default_client = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / "selfsigned.crt"))
    _, peer = handshake(ctx, default_client, "localhost")
    assert peer != ssl.PEM_cert_to_DER_cert((tmp_path / "org.crt").read_text())


def test_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    config = make_config(tmp_path, tls={"cert": str(bad), "key": str(bad)})
    with pytest.raises(ConfigError, match="not a valid PEM pair"):
        server_context(config)
    config = make_config(tmp_path, tls={"cert": str(tmp_path / "missing.pem"), "key": str(bad)})
    with pytest.raises(ConfigError, match="not found"):
        server_context(config)


def test_tls12_suites_are_ecdhe_aead_only(tmp_path: Path) -> None:
    ctx = server_context(make_config(tmp_path))
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["aead"] and c["kea"] == "kx-ecdhe" for c in tls12), [c["name"] for c in tls12]


def test_client_hello_alpn_is_read_from_a_real_client_hello() -> None:
    """The ClientHello OpenSSL writes, parsed for its ALPN list (and None without one)."""
    from postoffice.tls import client_hello_alpn

    def hello(alpn: list[str] | None) -> bytes:
        ctx = ssl.create_default_context()
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="mail.test")
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        record = outgoing.read()
        assert record[0] == 22  # handshake record; the message follows the 5-byte header
        return record[5:]

    assert client_hello_alpn(hello(["http/1.1"])) == [b"http/1.1"]
    assert client_hello_alpn(hello(["h2", "imap"])) == [b"h2", b"imap"]
    assert client_hello_alpn(hello(None)) is None
    assert client_hello_alpn(b"\x01\x00") is None  # truncated: cannot tell
