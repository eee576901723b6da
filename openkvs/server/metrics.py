"""Prometheus metrics: what flows in and out, per stream and in total (``GET /metrics``).

One registry per server (not prometheus-client's global one), so tests and embedders
can run several. Per-stream series are bounded: the first ``max_streams`` streams get
their own label, later ones share ``stream="_other"``, and ``per_stream=False`` puts
every stream under ``stream="_all"``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER, ALL = "_other", "_all"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)
"""From a live reader's fraction of a second to a replay of yesterday."""


class Metrics:
    def __init__(self, per_stream: bool = True, max_streams: int = 1000) -> None:
        self.per_stream, self.max_streams = per_stream, max_streams
        self._labelled: set[str] = set()
        self.registry = registry = CollectorRegistry()
        self.fragments_in = Counter(
            "openkvs_ingest_fragments",
            "Fragments received by PutMedia.",
            ["stream"],
            registry=registry,
        )
        self.bytes_in = Counter(
            "openkvs_ingest_bytes",
            "Bytes of fragments received by PutMedia.",
            ["stream"],
            registry=registry,
        )
        self.last_fragment = Gauge(
            "openkvs_ingest_last_fragment_timestamp_seconds",
            "Unix time the newest fragment was received by PutMedia.",
            ["stream"],
            registry=registry,
        )
        self.acks = Counter(
            "openkvs_putmedia_acks",
            "PutMedia ACKs sent, by event and ErrorId.",
            ["event", "error_id"],
            registry=registry,
        )
        self.persisted_latency = Histogram(
            "openkvs_persisted_latency_seconds",
            "From a fragment's last byte received to its PERSISTED ACK.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.bytes_out = Counter(
            "openkvs_getmedia_bytes",
            "Bytes of GetMedia response bodies written (HTTP chunk framing included).",
            ["stream"],
            registry=registry,
        )
        self.fragments_out = Counter(
            "openkvs_getmedia_fragments",
            "Fragments (chunks) GetMedia sent.",
            ["stream"],
            registry=registry,
        )
        self.getmedia_lag = Histogram(
            "openkvs_getmedia_lag_seconds",
            "Now minus the server timestamp (the start) of each fragment GetMedia sent, as"
            " its MILLIS_BEHIND_NOW says: about a fragment's length for a live reader.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.getmedia_sessions = Gauge(
            "openkvs_getmedia_sessions", "GetMedia responses in progress.", registry=registry
        )
        self.live_readers = Gauge(
            "openkvs_getmedia_live_readers",
            "GetMedia readers at the live edge (caught up), not reading stored fragments.",
            ["stream"],
            registry=registry,
        )
        self.playback_sessions = Gauge(
            "openkvs_playback_sessions",
            "Open HLS and DASH streaming sessions.",
            ["protocol"],
            registry=registry,
        )
        self.quota_refusals = Counter(
            "openkvs_quota_refusals",
            "Requests refused by a per-stream quota.",
            ["operation"],
            registry=registry,
        )
        self.retention_deleted = Counter(
            "openkvs_retention_deleted_fragments",
            "Fragments deleted by retention.",
            registry=registry,
        )
        self.streams = Gauge("openkvs_streams", "Streams this node knows.", registry=registry)
        self.store_bytes = Gauge(
            "openkvs_store_bytes",
            "Bytes the data dir holds (embedded store).",
            registry=registry,
        )
        self.store_free_bytes = Gauge(
            "openkvs_store_free_bytes",
            "Free bytes on the data dir's disk (embedded store).",
            registry=registry,
        )
        self.loop_lag = Gauge(
            "openkvs_event_loop_lag_seconds",
            "How late the event loop ran a 1 s timer.",
            registry=registry,
        )

    def stream(self, name: str) -> str:
        """The ``stream`` label for ``name``, within the bound."""
        if not self.per_stream:
            return ALL
        if name in self._labelled:
            return name
        if len(self._labelled) < self.max_streams:
            self._labelled.add(name)
            return name
        return OTHER
