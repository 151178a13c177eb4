"""Sender authentication: SPF (RFC 7208), DKIM (RFC 6376/8463), DMARC (RFC 7489) and the
Authentication-Results header (RFC 8601). DNS comes in as a :class:`postoffice.dns.Resolver`."""

from __future__ import annotations

from postoffice.authn.inbound import InboundVerdict, authenticate_inbound

__all__ = ["InboundVerdict", "authenticate_inbound"]
