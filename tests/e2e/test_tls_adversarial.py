"""TLS on every mail port under attack (issue #12): no CBC suites on TLS 1.2, ALPN checked against
the port's protocol (RFC 7301; the ALPACA cross-protocol attacks), unknown SNI names refused
(RFC 6066 §3). Real handshakes with Python's ssl client (OpenSSL) and curl as an HTTPS client."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer
from tests.support.tools import require_tool

# listener -> (protocol's ALPN id, how to get from connect to the TLS handshake)
IMPLICIT = {"imaps": "imap", "pop3s": "pop3", "submissions": "smtp"}
STARTTLS = {"imap": "imap", "pop3": "pop3", "submission": "smtp", "smtp": "smtp", "managesieve": "managesieve"}


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _starttls(listener: str, sock: socket.socket) -> None:
    """Speak the plaintext part up to the handshake."""
    if listener in ("smtp", "submission"):
        while _read_line(sock)[3:4] == b"-":
            pass
        sock.sendall(b"EHLO client.test\r\n")
        while _read_line(sock)[3:4] == b"-":
            pass
        sock.sendall(b"STARTTLS\r\n")
        assert _read_line(sock).startswith(b"220")
    elif listener == "managesieve":  # RFC 5804 §2.2: capabilities, then OK
        while not _read_line(sock).startswith(b"OK"):
            pass
        sock.sendall(b"STARTTLS\r\n")
        assert _read_line(sock).startswith(b"OK")
    elif listener == "imap":
        _read_line(sock)
        sock.sendall(b"a STARTTLS\r\n")
        assert _read_line(sock).startswith(b"a OK")
    else:
        _read_line(sock)
        sock.sendall(b"STLS\r\n")
        assert _read_line(sock).startswith(b"+OK")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("tlsadv") / "data") as server:
        yield server


def handshake(srv: RunningServer, listener: str, *, alpn: list[str] | None = None,
              server_name: str | None = None,
              configure: Callable[[ssl.SSLContext], None] | None = None) -> ssl.SSLSocket:
    ctx = srv.client_tls()
    ctx.check_hostname = False
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    if configure is not None:
        configure(ctx)
    sock = socket.create_connection(("127.0.0.1", srv.port(listener)), timeout=10)
    try:
        if listener not in IMPLICIT:
            _starttls(listener, sock)
        return ctx.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


ALL = sorted([*IMPLICIT, *STARTTLS])


def protocol_of(listener: str) -> str:
    return IMPLICIT.get(listener) or STARTTLS[listener]


@pytest.mark.parametrize("listener", ALL)
def test_alpn_of_another_protocol_gets_no_application_protocol(srv: RunningServer, listener: str) -> None:
    """RFC 7301 §3.2: no protocol in common -> a fatal no_application_protocol alert (ALPACA:
    a browser talked into sending HTTPS to a mail port is turned away at the handshake)."""
    for offered in (["http/1.1"], ["h2", "http/1.1"],
                    sorted({"imap", "pop3", "smtp", "managesieve"} - {protocol_of(listener)})):
        with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application protocol"):
            handshake(srv, listener, alpn=offered).close()


@pytest.mark.parametrize("listener", ALL)
def test_alpn_of_the_port_is_selected_and_no_alpn_still_works(srv: RunningServer, listener: str) -> None:
    with handshake(srv, listener, alpn=["h2", protocol_of(listener)]) as tls:
        assert tls.selected_alpn_protocol() == protocol_of(listener)
    with handshake(srv, listener) as tls:  # most mail clients offer no ALPN
        assert tls.selected_alpn_protocol() is None and tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("listener", sorted(IMPLICIT))
def test_curl_speaking_https_gets_the_alert(srv: RunningServer, listener: str, tmp_path: Path) -> None:
    """A real HTTPS client (curl, ALPN http/1.1 only) against an implicit-TLS mail port."""
    curl = require_tool("curl", "curl")
    out = subprocess.run([curl, "--silent", "--show-error", "--http1.1", "--insecure", "--max-time", "10",
                          f"https://127.0.0.1:{srv.port(listener)}/"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 35, (out.returncode, out.stderr)  # CURLE_SSL_CONNECT_ERROR
    assert "no application protocol" in out.stderr.lower(), out.stderr


@pytest.mark.parametrize("listener", sorted(IMPLICIT))
def test_plaintext_on_an_implicit_tls_port_is_closed_at_once(srv: RunningServer, listener: str) -> None:
    """A client speaking plaintext (or plain HTTP) to 993/995/465 gets no alert from OpenSSL
    (there is none for WRONG_VERSION_NUMBER or HTTP_REQUEST), so the connection is closed at
    once instead of holding a slot until the 30 s handshake timeout."""
    for hello in (b"a1 LOGIN someone secret\r\n", b"USER someone\r\n", b"EHLO client\r\n",
                  b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", srv.port(listener)), timeout=10) as sock:
            sock.sendall(hello)
            started = time.monotonic()
            try:
                data = sock.recv(100)
            except ConnectionResetError:
                data = b""
            assert data == b"" and time.monotonic() - started < 3, (hello, data)


@pytest.mark.parametrize("listener", ALL)
def test_unknown_server_names_get_unrecognized_name(srv: RunningServer, listener: str) -> None:
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(srv, listener, server_name="www.attacker.example").close()
    for known in ("localhost", "mail.test", None):  # the certificate's names, and no SNI (by IP)
        with handshake(srv, listener, server_name=known) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_unknown_server_names_get_the_default_certificate_when_configured(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", tls={"default_for_unknown_names": True}) as srv:
        for listener in ("imaps", "submission"):
            with handshake(srv, listener, server_name="www.attacker.example") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")


CBC_SUITES = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:" \
             "ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA256:AES128-SHA:AES256-SHA:AES128-SHA256"


def _tls12(ciphers: str) -> Callable[[ssl.SSLContext], None]:
    def configure(ctx: ssl.SSLContext) -> None:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
    return configure


@pytest.mark.parametrize("listener", ALL)
def test_tls12_offers_only_ecdhe_with_aead(srv: RunningServer, listener: str) -> None:
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE|handshake failure|NO_SHARED_CIPHER"):
        handshake(srv, listener, configure=_tls12(CBC_SUITES)).close()
    for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"):
        with handshake(srv, listener, configure=_tls12(suite)) as tls:
            assert tls.version() == "TLSv1.2" and tls.cipher()[0] == suite


def test_a_domain_added_while_running_is_recognised_by_sni(tmp_path: Path) -> None:
    """A customer's own host name (mail.<their domain>) works as soon as the domain exists,
    without a restart (the certificate naming it comes at the next start)."""
    with RunningServer(tmp_path / "data") as srv:
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            handshake(srv, "imaps", server_name="mail.newcustomer.example").close()
        srv.add_domain("newcustomer.example")
        deadline = time.monotonic() + 10
        while True:
            try:
                with handshake(srv, "imaps", server_name="mail.newcustomer.example") as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3")
                break
            except ssl.SSLError:
                assert time.monotonic() < deadline, "the new domain was never recognised"
                time.sleep(0.2)
        with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
            handshake(srv, "imaps", server_name="newcustomer.example.attacker.example").close()
