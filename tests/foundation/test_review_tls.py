"""Review: the self-signed certificate is reused across starts, but not once it expires, and
a half-replaced pair (crash during regeneration) must not keep the server from starting."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import postoffice.tls as tls
from tests.support.server import make_config


def test_an_expiring_self_signed_certificate_is_renewed(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    config = make_config(tmp_path / "data")
    cert_path, key_path = tls.ensure_certificate(config, ["example.com"])
    names = tls.certificate_names(config.hostname, ["example.com"])
    # The same names, generated 824 days ago: it expires tomorrow.
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    old = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=824))
           .not_valid_after(now + datetime.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    cert_path.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    tls.ensure_certificate(config, ["example.com"])
    renewed = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert renewed.not_valid_after_utc > now + datetime.timedelta(days=30)


def test_a_key_that_does_not_match_the_certificate_is_regenerated(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    cert_path, key_path = tls.ensure_certificate(config, [])
    # A crash between the key's rename and the certificate's: new key, old certificate.
    other = ec.generate_private_key(ec.SECP256R1())
    key_path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    ctx = tls.server_context(config, [])  # must not raise ConfigError: the pair is ours to remake
    # Afterwards the pair on disk matches, still names this host, and the context serves it.
    assert public_key(key_path) == public_key(cert_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(tls.certificate_names(config.hostname, [])) <= set(san.get_values_for_type(x509.DNSName))
    assert handshake(ctx, cert_path, "localhost") == cert.public_bytes(serialization.Encoding.DER)
    # ... and it is kept from now on (no new pair at every start)
    pair = (cert_path.read_bytes(), key_path.read_bytes())
    tls.server_context(config, [])
    assert (cert_path.read_bytes(), key_path.read_bytes()) == pair


def public_key(path: Path) -> bytes:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, None).public_key()
    else:
        key = x509.load_pem_x509_certificate(data).public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def handshake(server_ctx: ssl.SSLContext, trusted: Path, hostname: str) -> bytes:
    """A TLS handshake in memory between `server_ctx` and a client that trusts only `trusted` and
    checks `hostname`; returns the certificate the server presented (DER)."""
    server_in, server_out, client_in, client_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(server_in, server_out, server_side=True)
    client = tls.client_context_trusting(trusted).wrap_bio(client_in, client_out, server_hostname=hostname)
    done = {"server": False, "client": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if all(done.values()):
            break
    assert all(done.values()), done
    presented = client.getpeercert(binary_form=True)
    assert presented is not None
    return presented
