"""Typed configuration: command-line flags over OPENKVS_* environment variables over a
TOML file (``--config``) over the defaults here."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from types import NoneType
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit, urlunsplit


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
    # GET /metrics on its own address instead of the API's (metrics_host: default host)
    metrics_host: str | None = None
    metrics_port: int | None = None
    # the web console at /console/, behind the same keys as the API
    console: bool = True
    # authentication and transport (openkvs.server.auth)
    credentials: str | None = None
    access_rules: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False

    def base_url(self) -> str:
        if self.node_url or self.public_url:
            return (self.node_url or self.public_url or "").rstrip("/")
        return self.listen_url(self.host, self.port)

    def metrics_url(self) -> str | None:
        """Where GET /metrics is served, None if it is not."""
        if not self.metrics:
            return None
        if self.metrics_port is None:
            return self.base_url() + "/metrics"
        return self.listen_url(self.metrics_host or self.host, self.metrics_port) + "/metrics"

    def listen_url(self, host: str, port: int) -> str:
        """The URL of this server's listener on ``host``:``port`` (a wildcard: loopback)."""
        host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{port}"

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


def setting_type(name: str) -> type:
    """The type of setting ``name``'s values: ``int`` for ``metrics_port: int | None``."""
    hint = get_type_hints(Config)[name]
    return next((t for t in get_args(hint) if t is not NoneType), hint)


SECRETS = ("s3_secret_access_key",)
MASK = "********"


def read_file(path: str) -> dict[str, Any]:
    """A TOML file's settings, each a Config field of the right type; ConfigError naming
    the key (or the file) otherwise."""
    try:
        with open(path, "rb") as file:
            values = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    known = {f.name for f in fields(Config)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"unknown key {key!r} in {path}; `openkvs config show` lists the settings"
            )
        kind = setting_type(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{key} in {path} must be {kind.__name__}, not {value!r}")
    return values


def shown(config: Config) -> str:
    """The effective settings as TOML (what ``--config`` reads), secrets masked."""
    lines = []
    for f in fields(Config):
        value = getattr(config, f.name)
        if value is None:
            continue
        if f.name in SECRETS or (f.name == "credentials" and value.lstrip().startswith("{")):
            value = MASK
        elif f.name == "database_url":
            value = masked_url(value)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(value)
        lines.append(f"{f.name} = {text}")
    return "\n".join(lines) + "\n"


def masked_url(url: str) -> str:
    """A database URL fit to print: its password, in the user part or in the query
    (libpq takes both), masked."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username}:{MASK}@{host}")
    query = [
        f"{key}={MASK}" if key == "password" else f"{key}={value}"
        for key, _, value in (item.partition("=") for item in parts.query.split("&") if item)
    ]
    return urlunsplit(parts._replace(query="&".join(query)))
