"""Typed configuration, from command-line flags or OPENKVS_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting that is missing or wrong; the message says which flag to give."""


CLUSTER_SETTINGS = ("database_url", "s3_endpoint_url", "s3_bucket")


@dataclass(slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./openkvs-data"
    segment_bytes: int = 64 << 20
    public_url: str | None = None
    region: str = "us-west-2"
    account_id: str = "123456789012"
    log_level: str = "warning"
    # GetMedia
    getmedia_idle_timeout_s: float = 30.0
    getmedia_calls_per_second: float = 5.0
    getmedia_max_connections: int = 3
    getmedia_max_bytes_per_second: float = 25_000_000.0
    # archived media: GetMediaForFragmentList and ListFragments calls, GetClip calls,
    # concurrent GetMediaForFragmentList responses, per stream
    archive_calls_per_second: float = 5.0
    clip_calls_per_second: float = 1.0
    archive_max_connections: int = 5
    # LIVE HLS sessions as low-latency HLS without LowLatency=1 on their URL
    hls_low_latency: bool = False
    # PutMedia
    putmedia_calls_per_second: float = 5.0
    putmedia_max_bytes_per_second: float = 12_500_000.0
    putmedia_idle_timeout_s: float = 30.0
    putmedia_idle_ack_interval_s: float = 3.0
    max_fragment_bytes: int = 50_000_000
    max_fragment_duration_ms: int = 20_000
    max_tracks: int = 3
    max_header_bytes: int = 1 << 20
    # seconds a replaced PutMedia has to store what it received before the newer one goes on
    putmedia_takeover_timeout_s: float = 5.0
    # memory buffer for streams with DataRetentionInHours == 0
    live_buffer_seconds: float = 300.0
    live_buffer_bytes: int = 200_000_000
    # all streams' buffers together (oldest evicted first)
    live_buffer_total_bytes: int = 1_000_000_000
    # retention sweeper
    retention_interval_s: float = 60.0
    # seconds one DataRetentionInHours hour lasts: 3600, shortened only by tests
    retention_unit_s: float = 3600.0
    rate_limits: bool = True
    # storage: "embedded" (data_dir) or "postgres" (a cluster: PostgreSQL + S3-compatible)
    store: str = "embedded"
    database_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    node_url: str | None = None
    node_id: str | None = None
    # seconds a node's hold on a stream lasts unrenewed: how soon another takes over its streams
    lease_seconds: float = 10.0
    # GET /metrics (Prometheus); per-stream series for at most 1,000 streams
    metrics: bool = True
    metrics_per_stream: bool = True
    # authentication and transport (openkvs.server.auth)
    credentials: str | None = None
    access_rules: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False

    def base_url(self) -> str:
        if self.node_url or self.public_url:
            return (self.node_url or self.public_url or "").rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    def check_store(self) -> None:
        """ConfigError unless the storage settings go together."""
        if self.store not in ("embedded", "postgres"):
            raise ConfigError(f"--store must be embedded or postgres, not {self.store!r}")
        if self.store == "postgres":
            missing = [name for name in CLUSTER_SETTINGS if not getattr(self, name)]
            if missing:
                flags = ", ".join("--" + name.replace("_", "-") for name in missing)
                raise ConfigError(
                    f"--store postgres needs {flags} (or OPENKVS_{missing[0].upper()} and the like)"
                )
