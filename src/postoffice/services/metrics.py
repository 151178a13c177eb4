"""Operational metrics for Prometheus, served by the panel at ``/metrics``.

One `CollectorRegistry` per `Postoffice` (never prometheus_client's global one: the tests run
many servers in one process). Counters are bumped where things happen (listener accepts, the
authenticator, the event bus); the open-session and queue gauges are computed at scrape time:
`refresh()` reads the queue counts from the store (awaited by the endpoint), then `render()`
produces the exposition text, whose collector also reads the session registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..store import MessagesAdded

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes


class _ScrapeTimeGauges(Collector):
    """Open sessions per protocol and the outbound queue, as of the last `Metrics.refresh`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = GaugeMetricFamily("postoffice_sessions_open", "Authenticated sessions open now",
                                     labels=["protocol"])
        counts: dict[str, int] = dict.fromkeys(("imap", "pop3", "smtp"), 0)
        for session in self.metrics.sessions.all() if self.metrics.sessions is not None else []:
            counts[session.protocol] = counts.get(session.protocol, 0) + 1
        for protocol, count in sorted(counts.items()):
            sessions.add_metric([protocol], count)
        yield sessions
        queue = self.metrics.queue
        entries = GaugeMetricFamily("postoffice_queue_entries", "Messages in the outbound queue")
        entries.add_metric([], queue.get("entries", 0))
        yield entries
        recipients = GaugeMetricFamily("postoffice_queue_recipients",
                                       "Recipients of queued outbound messages, by status", labels=["status"])
        for status, count in sorted(queue.get("recipients", {}).items()):
            recipients.add_metric([status], count)
        yield recipients


class Metrics:
    def __init__(self, store: Any = None, sessions: Any = None) -> None:
        self.store = store
        self.sessions = sessions
        self.queue: dict[str, Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Counter("postoffice_connections_accepted", "TCP connections accepted",
                                   ["listener"], registry=self.registry)
        self.refused = Counter("postoffice_connections_refused",
                               "Connections refused by the per-IP or total connection limit",
                               ["listener"], registry=self.registry)
        self.auth = Counter("postoffice_auth_attempts", "Login attempts by protocol and result",
                            ["protocol", "result"], registry=self.registry)
        self.messages = Counter("postoffice_messages_stored", "Messages added to mailboxes",
                                registry=self.registry)
        self.registry.register(_ScrapeTimeGauges(self))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    # -- hooks ------------------------------------------------------------------------------

    def connection(self, listener: str, admitted: bool) -> None:
        """`servers.listener.serve` callback: one accepted connection, refused or not."""
        self.connections.labels(listener).inc()
        if not admitted:
            self.refused.labels(listener).inc()

    def auth_result(self, protocol: str, result: str) -> None:
        self.auth.labels(protocol, result).inc()

    def on_event(self, event: Any) -> None:
        """Event-bus listener."""
        if isinstance(event, MessagesAdded):
            self.messages.inc(len(event.uids))

    # -- scraping ---------------------------------------------------------------------------

    async def refresh(self) -> None:
        if self.store is not None:
            self.queue = await self.store.queue_counts()

    def render(self) -> bytes:
        return generate_latest(self.registry)
