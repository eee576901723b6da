"""Prometheus metrics: what flows in and out, per stream and in total (``GET /metrics``).

One registry per server (not prometheus-client's global one), so tests and embedders
can run several. Per-stream series are bounded: the first ``max_streams`` streams get
their own label, later ones share ``stream="_other"``, and ``per_stream=False`` puts
every stream under ``stream="_all"``.

The per-stream families are ours (``PerStream``), not prometheus-client's: its series
cost ~10 µs each to collect and render, so 1,000 streams' 6,000 series held the event
loop ~60 ms a scrape (bench/observe.py, figure 17); a ``Tally`` is a float bumped in
place and the family renders itself as the same text format (without the ``_created``
series). ``Metrics.render`` is the whole page: the registry holds only the totals.
"""

from __future__ import annotations

import math
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.utils import floatToGoString

OTHER, ALL = "_other", "_all"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0)
"""From a live reader's fraction of a second to a replay of yesterday."""


class Tally:
    """One series' value, changed on the event loop and read by a scrape."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def set_to_current_time(self) -> None:
        self.value = time.time()


class PerStream:
    """A family of series labelled ``stream``, in the text format prometheus-client writes."""

    def __init__(self, name: str, kind: str, help_text: str, key: str) -> None:
        self.sample = name + "_total" if kind == "counter" else name
        self.head = f"# HELP {self.sample} {help_text}\n# TYPE {self.sample} {kind}\n"
        self.key = key  # its name in the console's JSON
        self.series: dict[str, Tally] = {}

    def labels(self, stream: str) -> Tally:
        tally = self.series.get(stream)
        if tally is None:
            tally = self.series[stream] = Tally()
        return tally

    def render(self) -> str:
        lines = [self.head]
        lines += [
            f'{self.sample}{{stream="{_escaped(stream)}"}} {_number(tally.value)}\n'
            for stream, tally in self.series.items()
        ]
        return "".join(lines)


def _number(value: float) -> str:
    return repr(value) if math.isfinite(value) else floatToGoString(value)  # +Inf, NaN


def _escaped(label: str) -> str:
    return label.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self, per_stream: bool = True, max_streams: int = 1000) -> None:
        self.per_stream, self.max_streams = per_stream, max_streams
        self._labelled: set[str] = set()
        self.registry = registry = CollectorRegistry()
        self.fragments_in = PerStream(
            "openkvs_ingest_fragments", "counter", "Fragments received by PutMedia.", "fragmentsIn"
        )
        self.bytes_in = PerStream(
            "openkvs_ingest_bytes", "counter", "Bytes of fragments received by PutMedia.", "bytesIn"
        )
        self.last_fragment = PerStream(
            "openkvs_ingest_last_fragment_timestamp_seconds",
            "gauge",
            "Unix time the newest fragment was received by PutMedia.",
            "lastFragment",
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
        self.bytes_out = PerStream(
            "openkvs_getmedia_bytes",
            "counter",
            "Bytes of GetMedia response bodies written (HTTP chunk framing included).",
            "bytesOut",
        )
        self.fragments_out = PerStream(
            "openkvs_getmedia_fragments",
            "counter",
            "Fragments (chunks) GetMedia sent.",
            "fragmentsOut",
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
        self.live_readers = PerStream(
            "openkvs_getmedia_live_readers",
            "gauge",
            "GetMedia readers at the live edge (caught up), not reading stored fragments.",
            "liveReaders",
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

    @property
    def families(self) -> tuple[PerStream, ...]:
        """The per-stream families, in the order they are rendered."""
        return (
            self.fragments_in,
            self.bytes_in,
            self.last_fragment,
            self.fragments_out,
            self.bytes_out,
            self.live_readers,
        )

    def render(self) -> bytes:
        """Every series in the text format: prometheus-client's for the totals, ours for
        the per-stream families (3 ms for 1,000 streams, not 60)."""
        text = [generate_latest(self.registry).decode()]
        text += [family.render() for family in self.families]
        return "".join(text).encode()

    def by_stream(self) -> dict[str, dict[str, float]]:
        """``{stream: {fragmentsIn: ..., bytesIn: ..., ...}}``, for the console."""
        found: dict[str, dict[str, float]] = {}
        for family in self.families:
            for stream, tally in family.series.items():
                found.setdefault(stream, {})[family.key] = tally.value
        return found

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
