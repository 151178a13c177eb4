"""DKIM (RFC 6376, RFC 8463) signing, verification and key generation with dkimpy.

Verification looks the selector keys up through our own :class:`~postoffice.dns.Resolver`
(asynchronously, so the nameserver from the configuration -- and the tests' server -- is used),
then hands dkimpy a synchronous ``dnsfunc`` that answers from those prefetched records. dkimpy's
own async support needs aiodns, which we do not depend on.

Ed25519 (RFC 8463) in dkimpy needs PyNaCl.
"""

from __future__ import annotations

import base64
import enum
import logging
from dataclasses import dataclass
from typing import Any

import dkim as _dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postoffice import cpu
from postoffice.dns import NoData, NXDomain, Resolver, TempDNSError
from postoffice.mail.headers import find_fields, unfold
from postoffice.store.spool import MessageSource, needs_process

__all__ = [
    "DKIMResult",
    "DKIMSignatureResult",
    "DKIMKeyPair",
    "verify",
    "verify_signatures",
    "sign",
    "generate_dkim_keys",
    "MAX_SIGNATURES",
]

MAX_SIGNATURES = 10  # bound the work an incoming message can ask of us

_log = logging.getLogger(__name__)
_quiet = logging.getLogger("postoffice.authn.dkim.dkimpy")
_quiet.setLevel(logging.WARNING)


class DKIMResult(enum.StrEnum):
    """RFC 8601 2.7.1 result values for dkim."""

    NONE = "none"
    PASS = "pass"
    FAIL = "fail"
    POLICY = "policy"
    NEUTRAL = "neutral"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True)
class DKIMSignatureResult:
    result: DKIMResult
    domain: str  # d=
    selector: str  # s=
    algorithm: str = ""  # a=
    reason: str = ""
    header_b: str = ""  # first 8 characters of b= (RFC 6008 header.b)


@dataclass(frozen=True)
class DKIMKeyPair:
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    private_key_pem: bytes
    dns_txt: str  # value to publish at <selector>._domainkey.<domain>


def _tag(sig: dict[bytes, bytes], name: bytes) -> str:
    value = sig.get(name, b"")
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


async def verify(resolver: Resolver, message: bytes | MessageSource) -> list[DKIMSignatureResult]:
    """Verify every DKIM-Signature header (up to :data:`MAX_SIGNATURES`), top-down.

    An empty list means the message carries no signature (dkim=none).

    The signature fields are found in the header block here (no dkimpy parse at all for an
    unsigned message), their keys looked up through ``resolver``, and then one verifier parses
    the message once and checks every signature (:func:`verify_signatures`), in a worker
    process for a large message: dkimpy's parsing is Python and its header parsing is
    quadratic in a field's folded lines, so it must never run on an event loop.
    """
    source = MessageSource.of(message)
    header = source.header_block()
    # (Regular expressions over the block: it may be a megabyte of folded lines, and this
    # part runs on the event loop.)
    values = [unfold(field.partition(b":")[2])
              for field in find_fields(header, b"dkim-signature", MAX_SIGNATURES)]
    if not values:
        return []
    results: list[DKIMSignatureResult | None] = []
    keys: dict[str, str | None] = {}
    lookups: dict[str, DKIMSignatureResult | str] = {}
    for value in values[:MAX_SIGNATURES]:
        try:
            sig = _dkim.util.parse_tag_value(value)
        except Exception:  # noqa: BLE001 - the verifier reports the syntax error
            sig = {}
        domain, selector, algo = _tag(sig, b"d"), _tag(sig, b"s"), _tag(sig, b"a")
        if not domain or not selector:
            results.append(None)
            continue
        name = f"{selector}._domainkey.{domain}"
        key = name.lower().rstrip(".")
        if key not in lookups:
            try:
                records = await resolver.txt(name)
                lookups[key] = records[0] if records else ""
            except (NXDomain, NoData):
                lookups[key] = DKIMSignatureResult(DKIMResult.PERMERROR, domain, selector, algo, f"no key at {name}")
            except TempDNSError as exc:
                lookups[key] = DKIMSignatureResult(DKIMResult.TEMPERROR, domain, selector, algo, str(exc))
        found = lookups[key]
        if isinstance(found, DKIMSignatureResult):
            b_short = "".join(_tag(sig, b"b").split())[:8]
            results.append(DKIMSignatureResult(found.result, domain, selector, algo, found.reason, b_short))
        else:
            keys[key] = found or None
            results.append(None)
    pending = [idx for idx, result in enumerate(results) if result is None]
    if pending:
        verified = await cpu.offload(needs_process(source), verify_signatures, source, pending, keys)
        for idx, result in zip(pending, verified):
            results[idx] = result
    return [r for r in results if r is not None]


def verify_signatures(message: bytes | MessageSource, indices: list[int],
                      keys: dict[str, str | None]) -> list[DKIMSignatureResult]:
    """Check the signatures at ``indices`` with one dkimpy verifier (one parse of the message).

    ``keys`` maps ``selector._domainkey.domain`` (lower case) to the TXT record already looked
    up. Blocking and CPU-bound: runs in a thread or a worker process (see :func:`verify`)."""
    raw = message.read() if isinstance(message, MessageSource) else message
    try:
        d = _dkim.DKIM(raw, logger=_quiet)
    except Exception as exc:  # noqa: BLE001 - unparseable message
        return [DKIMSignatureResult(DKIMResult.PERMERROR, "", "", reason=f"bad message: {exc}") for _ in indices]

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        record = keys.get(name.decode("ascii", "replace").lower().rstrip("."))
        return record.encode("latin-1", "replace") if record else None

    return [_verify_one(d, idx, dnsfunc) for idx in indices]


def _verify_one(d: _dkim.DKIM, idx: int, dnsfunc: Any) -> DKIMSignatureResult:
    try:
        prep = d.verify_headerprep(idx)
    except _dkim.DKIMException as exc:
        # Malformed signature header (missing tags, bad syntax): RFC 6376 6.1.1 PERMFAIL.
        sig = _safe_tags(d, idx)
        return DKIMSignatureResult(
            DKIMResult.PERMERROR, _tag(sig, b"d"), _tag(sig, b"s"), _tag(sig, b"a"), str(exc)
        )
    except Exception as exc:  # noqa: BLE001 - dkimpy can raise plain errors on hostile input
        return DKIMSignatureResult(DKIMResult.PERMERROR, "", "", reason=str(exc))
    if not prep:
        return DKIMSignatureResult(DKIMResult.PERMERROR, "", "", reason="signature not found")
    sig, include_headers, sigheaders = prep
    domain, selector, algo = _tag(sig, b"d"), _tag(sig, b"s"), _tag(sig, b"a")
    b_short = "".join(_tag(sig, b"b").split())[:8]
    if dnsfunc(f"{selector}._domainkey.{domain}".encode()) is None:
        return DKIMSignatureResult(
            DKIMResult.PERMERROR, domain, selector, algo, f"no key at {selector}._domainkey.{domain}", b_short
        )
    try:
        ok = d.verify_sig(sig, include_headers, sigheaders[idx], dnsfunc)
    except _dkim.ValidationError as exc:  # e.g. body hash mismatch: RFC 6376 PERMFAIL -> fail
        return DKIMSignatureResult(DKIMResult.FAIL, domain, selector, algo, str(exc), b_short)
    except _dkim.DKIMException as exc:
        return DKIMSignatureResult(DKIMResult.PERMERROR, domain, selector, algo, str(exc), b_short)
    except Exception as exc:  # dkimpy can raise plain errors on hostile input
        return DKIMSignatureResult(DKIMResult.PERMERROR, domain, selector, algo, str(exc), b_short)
    if ok:
        return DKIMSignatureResult(DKIMResult.PASS, domain, selector, algo, "", b_short)
    return DKIMSignatureResult(
        DKIMResult.FAIL, domain, selector, algo, "signature did not verify", b_short
    )


def _safe_tags(d: _dkim.DKIM, idx: int) -> dict[bytes, bytes]:
    try:
        sigs = [v for k, v in d.headers if k.lower() == b"dkim-signature"]
        return _dkim.util.parse_tag_value(sigs[idx])  # type: ignore[no-any-return]
    except Exception:
        return {}


# -- signing -----------------------------------------------------------------------------------

_SIGN_HEADERS = [
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"in-reply-to",
    b"references", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"list-id", b"list-unsubscribe", b"list-unsubscribe-post", b"sender",
]


def sign(
    message: bytes,
    domain: str,
    selector: str,
    private_key_pem: bytes | str,
    algorithm: str = "rsa-sha256",
) -> bytes:
    """Return the ``DKIM-Signature: ...\\r\\n`` header line to prepend to ``message``.

    ``algorithm`` is ``"rsa-sha256"`` or ``"ed25519-sha256"``; the PEM may be PKCS#8 or PKCS#1.
    Canonicalisation is relaxed/relaxed; the From field is signed once more than it occurs
    (oversigning) so that a second From cannot be added later.
    """
    if isinstance(private_key_pem, str):
        private_key_pem = private_key_pem.encode()
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if algorithm == "rsa-sha256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("rsa-sha256 needs an RSA private key")
        privkey = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    elif algorithm == "ed25519-sha256":
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("ed25519-sha256 needs an Ed25519 private key")
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        privkey = base64.b64encode(seed)  # dkimpy/PyNaCl take the base64 seed
    else:
        raise ValueError(f"unsupported DKIM algorithm {algorithm!r}")
    signer = _dkim.DKIM(message, logger=_quiet, signature_algorithm=algorithm.encode())
    present = {name.lower() for name, _ in signer.headers}
    include = [h for h in _SIGN_HEADERS if h in present]
    if b"from" not in include:
        raise ValueError("a message without a From field cannot be DKIM-signed")
    include.append(b"from")  # oversign From (RFC 6376 8.15)
    header: bytes = signer.sign(
        selector.encode(),
        domain.encode(),
        privkey,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=include,
    )
    return header


def generate_dkim_keys(algorithm: str = "rsa-sha256", rsa_bits: int = 2048) -> DKIMKeyPair:
    """Generate a key pair; ``dns_txt`` is the record value to publish for the selector.

    RSA: ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>``.
    Ed25519 (RFC 8463 4.2): ``v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte public key>``.
    The private key is PKCS#8 PEM in both cases.
    """
    pub: bytes
    if algorithm in ("rsa", "rsa-sha256"):
        rkey = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        pem = rkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pub = rkey.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return DKIMKeyPair("rsa-sha256", pem, f"v=DKIM1; k=rsa; p={base64.b64encode(pub).decode()}")
    if algorithm in ("ed25519", "ed25519-sha256"):
        ekey = ed25519.Ed25519PrivateKey.generate()
        pem = ekey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        pub = ekey.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DKIMKeyPair(
            "ed25519-sha256", pem, f"v=DKIM1; k=ed25519; p={base64.b64encode(pub).decode()}"
        )
    raise ValueError(f"unsupported DKIM algorithm {algorithm!r}")
