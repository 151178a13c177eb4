"""What a mail client needs to know: the settings table, automatic configuration, DNS records.

Everything here is derived from the configuration, the ports the server really listens on and
the protocol-access decision (services/access.py), so the panel page, the API and the automatic
configuration endpoints can never disagree:

- `endpoints` lists the servers a client may use (the source article's table: IMAP 993 SSL /
  143, POP3 995 SSL / 110, SMTP 465 SSL / 587 TLS / 25) with this instance's real ports;
- `offered` says which protocols an address may be offered: a POP3-only address gets POP3, an
  IMAP-only one IMAP, and a protocol that is off is never offered;
- `autoconfig_xml` (Thunderbird), `autodiscover_xml` (Microsoft "POX" Autodiscover) and
  `mobileconfig` (Apple configuration profile) render those offers;
- `dns_records` gives MX, SPF, DMARC, DKIM (when a key exists) and the SRV records of RFC 6186
  as updated by RFC 8314.
"""

from __future__ import annotations

import plistlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from ..config import Config, HostPort
from ..store import Account, Domain, Store
from .access import effective_protocols

# listener -> (protocol, standard port, security, recommended, what the article calls it)
LISTENER_INFO: dict[str, tuple[str, int, str, bool]] = {
    "imaps": ("imap", 993, "SSL/TLS", True),
    "imap": ("imap", 143, "STARTTLS", False),
    "pop3s": ("pop3", 995, "SSL/TLS", True),
    "pop3": ("pop3", 110, "STARTTLS", False),
    "submissions": ("smtp", 465, "SSL/TLS", True),
    "submission": ("smtp", 587, "STARTTLS", False),
    "smtp": ("smtp", 25, "STARTTLS", False),
}
PROTOCOL_LABELS = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}



@dataclass(frozen=True)
class Endpoint:
    listener: str
    protocol: str  # imap | pop3 | smtp
    host: str
    port: int
    standard_port: int
    security: str  # SSL/TLS | STARTTLS
    recommended: bool

    @property
    def label(self) -> str:
        return PROTOCOL_LABELS[self.protocol]

    @property
    def implicit_tls(self) -> bool:
        return self.security == "SSL/TLS"

    @property
    def for_clients(self) -> bool:
        """Port 25 is for other mail servers; clients submit on 465 or 587."""
        return self.listener != "smtp"

    def as_dict(self) -> dict[str, object]:
        return {"listener": self.listener, "protocol": self.protocol, "host": self.host, "port": self.port,
                "standard_port": self.standard_port, "security": self.security,
                "recommended": self.recommended, "for_clients": self.for_clients}


def endpoints(config: Config, bound: Mapping[str, HostPort] | None = None) -> list[Endpoint]:
    """The servers of this instance, in the article's order, with the ports really in use."""
    configured = config.listen.addresses()
    result = []
    for listener, (protocol, standard, security, recommended) in LISTENER_INFO.items():
        addr = (bound or {}).get(listener) or configured.get(listener)
        if addr is None:
            continue  # switched off in the configuration
        result.append(Endpoint(listener, protocol, config.hostname, addr.port or standard, standard,
                               security, recommended))
    return result


def offered(account: Account | None, domain: Domain) -> dict[str, bool]:
    """Protocols to offer a client of ``account`` (or of the domain, for an unknown address)."""
    if account is None:
        policy = domain.protocol_policy
        return {"imap": policy != "pop3-only", "pop3": policy != "imap-only", "smtp": True}
    return {p: d.allowed for p, d in effective_protocols(account, domain).items()}


def client_offers(config: Config, bound: Mapping[str, HostPort] | None, account: Account | None,
                  domain: Domain) -> list[Endpoint]:
    """The endpoints to put into automatic configuration, best first (SSL before STARTTLS)."""
    allowed = offered(account, domain)
    chosen = [e for e in endpoints(config, bound) if e.for_clients and allowed[e.protocol]]
    order = {"imap": 0, "pop3": 1, "smtp": 2}
    return sorted(chosen, key=lambda e: (order[e.protocol], not e.recommended))


# -- Thunderbird autoconfig ------------------------------------------------------------------


def autoconfig_xml(domain: Domain, offers: list[Endpoint], display_name: str = "") -> str:
    """Mozilla's clientConfig v1.1 (wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<clientConfig version="1.1">',
             f"  <emailProvider id={quoteattr(domain.name)}>",
             f"    <domain>{escape(domain.name)}</domain>",
             f"    <displayName>{escape(display_name or domain.name)}</displayName>",
             f"    <displayShortName>{escape(domain.name)}</displayShortName>"]
    for e in offers:
        tag = "outgoingServer" if e.protocol == "smtp" else "incomingServer"
        lines += [f'    <{tag} type="{e.protocol}">',
                  f"      <hostname>{escape(e.host)}</hostname>",
                  f"      <port>{e.port}</port>",
                  f"      <socketType>{'SSL' if e.implicit_tls else 'STARTTLS'}</socketType>",
                  "      <username>%EMAILADDRESS%</username>",
                  "      <authentication>password-cleartext</authentication>",
                  f"    </{tag}>"]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(lines)


# -- Microsoft Autodiscover (POX) ------------------------------------------------------------

AUTODISCOVER_RESPONSE_SCHEMA = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def autodiscover_xml(address: str, offers: list[Endpoint]) -> str:
    protocols = []
    for e in offers:
        protocols.append("\n".join([
            "      <Protocol>",
            f"        <Type>{e.label}</Type>",
            f"        <Server>{escape(e.host)}</Server>",
            f"        <Port>{e.port}</Port>",
            f"        <LoginName>{escape(address)}</LoginName>",
            "        <DomainRequired>off</DomainRequired>",
            "        <SPA>off</SPA>",
            f"        <SSL>{'on' if e.implicit_tls else 'off'}</SSL>",
            f"        <Encryption>{'SSL' if e.implicit_tls else 'TLS'}</Encryption>",
            "        <AuthRequired>on</AuthRequired>",
            "      </Protocol>"]))
    return "\n".join([
        '<?xml version="1.0" encoding="utf-8"?>',
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">',
        f'  <Response xmlns="{AUTODISCOVER_RESPONSE_SCHEMA}">',
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
        *protocols,
        "    </Account>",
        "  </Response>",
        "</Autodiscover>", ""])


def autodiscover_request_address(body: bytes) -> str:
    """The EMailAddress of an Autodiscover POX request ('' when absent or unreadable).

    Parsed with expat directly and refusing any DTD: no entity (internal or external) is ever
    declared, expanded or fetched, whatever the expat version (no XXE, no billion laughs)."""
    from xml.parsers import expat

    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    found: list[str] = []
    text: list[str] | None = None

    def refuse(*args: object) -> None:
        raise ValueError("DTDs and entities are not accepted")

    def start(name: str, attrs: object) -> None:
        nonlocal text
        if text is None and not found and name.rsplit("}", 1)[-1] == "EMailAddress":
            text = []

    def end(name: str) -> None:
        nonlocal text
        if text is not None and name.rsplit("}", 1)[-1] == "EMailAddress":
            if "".join(text).strip():
                found.append("".join(text).strip())
            text = None

    def chars(data: str) -> None:
        if text is not None:
            text.append(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SkippedEntityHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(body[:65536], True)
    except (expat.ExpatError, ValueError):
        return ""
    return found[0] if found else ""


# -- Apple configuration profile -------------------------------------------------------------


class NoMailboxProtocol(Exception):
    """Neither IMAP nor POP3 may be offered to this address."""


def mobileconfig(address: str, display_name: str, offers: list[Endpoint]) -> bytes:
    """An unsigned .mobileconfig with one com.apple.mail.managed payload (IMAP preferred)."""
    incoming = next((e for e in offers if e.protocol in ("imap", "pop3")), None)
    if incoming is None:
        raise NoMailboxProtocol(f"neither IMAP nor POP3 is enabled for {address}")
    outgoing = next((e for e in offers if e.protocol == "smtp"), None)
    payload: dict[str, object] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"postoffice.mail.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}#mail")).upper(),
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": display_name or address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.host,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": address,
    }
    if outgoing is not None:
        payload.update({
            "OutgoingMailServerAuthentication": "EmailAuthPassword",
            "OutgoingMailServerHostName": outgoing.host,
            "OutgoingMailServerPortNumber": outgoing.port,
            "OutgoingMailServerUseSSL": True,
            "OutgoingMailServerUsername": address,
            "OutgoingPasswordSameAsIncomingPassword": True,
        })
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"postoffice.profile.{address}",
        "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{address}")).upper(),
        "PayloadDisplayName": f"Email: {address}",
        "PayloadDescription": f"Mail settings for {address}",
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile)


# -- DNS records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsRecord:
    name: str  # fully qualified, with the trailing dot
    type: str
    value: str
    purpose: str

    @property
    def zone_line(self) -> str:
        return f"{self.name} 3600 IN {self.type} {self.value}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "value": self.value, "purpose": self.purpose,
                "zone_line": self.zone_line}


async def dkim_key(store: Store, domain: str, config: Config | None = None) -> list[tuple[str, str]]:
    """[(record name, TXT value)] of the domain's DKIM keys (RSA and Ed25519), generated on demand
    by the signing service (services.mailauth) so the page and the signer always agree."""
    from .mailauth import dkim_records

    return await dkim_records(store, domain, config)


def _txt(value: str) -> str:
    # RFC 1035 §3.3.14: one character-string holds at most 255 octets; longer values are split.
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def dns_records(config: Config, domain: Domain, bound: Mapping[str, HostPort] | None = None,
                dkim: Sequence[tuple[str, str]] = ()) -> list[DnsRecord]:
    host = config.hostname.rstrip(".") + "."
    zone = domain.name + "."
    records = [
        DnsRecord(zone, "MX", f"10 {host}", "Mail for the domain is delivered to this server (RFC 5321 §5)"),
        DnsRecord(zone, "TXT", _txt("v=spf1 mx -all"), "SPF: only the domain's MX hosts send its mail (RFC 7208)"),
    ]
    for name, value in dkim:
        records.append(DnsRecord(name.rstrip(".") + ".", "TXT", _txt(value),
                                 "DKIM public key for signatures made by this server (RFC 6376, RFC 8463)"))
    records.append(DnsRecord(f"_dmarc.{zone}", "TXT",
                             _txt(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain.name}"),
                             "DMARC policy and where reports go (RFC 7489)"))
    # RFC 6186 §3: SRV records for IMAP, POP3 and submission; RFC 8314 §5.1 adds _submissions
    # and asks for implicit TLS to be preferred (a lower priority number). A protocol the domain
    # does not offer is published with the target "." (RFC 6186 §3.4: "not available").
    allowed = offered(None, domain)
    ports = {e.listener: e.port for e in endpoints(config, bound)}
    services = [("_imaps", "imaps", "imap", 0), ("_imap", "imap", "imap", 10),
                ("_pop3s", "pop3s", "pop3", 10), ("_pop3", "pop3", "pop3", 20),
                ("_submissions", "submissions", "smtp", 0), ("_submission", "submission", "smtp", 10)]
    if domain.protocol_policy == "pop3-only":  # then POP3 is what clients should pick first
        services = [(s, li, p, 0 if li == "pop3s" else prio) for s, li, p, prio in services]
    for service, listener, protocol, priority in services:
        name = f"{service}._tcp.{zone}"
        if not allowed[protocol] or listener not in ports:
            records.append(DnsRecord(name, "SRV", "0 0 0 .", f"{PROTOCOL_LABELS[protocol]} is not offered"))
            continue
        security = "SSL/TLS" if LISTENER_INFO[listener][2] == "SSL/TLS" else "STARTTLS"
        records.append(DnsRecord(name, "SRV", f"{priority} 1 {ports[listener]} {host}",
                                 f"{PROTOCOL_LABELS[protocol]} {security} for automatic client setup (RFC 6186)"))
    records.append(DnsRecord(f"autoconfig.{zone}", "CNAME", host,
                             "Thunderbird finds /mail/config-v1.1.xml on the panel's web port"))
    records.append(DnsRecord(f"autodiscover.{zone}", "CNAME", host,
                             "Outlook finds /autodiscover/autodiscover.xml on the panel's web port"))
    return records
