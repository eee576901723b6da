"""The ``openkvs`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import fields

from openkvs import __version__, logs
from openkvs.server.config import Config, setting_type

STORE_FLAGS = {
    "store": "where streams and fragments live: embedded (--data-dir) or postgres (a cluster)",
    "database_url": "postgres store: the PostgreSQL URL (postgresql://user@host:port/db)",
    "s3_endpoint_url": "postgres store: the S3-compatible object store's URL",
    "s3_bucket": "postgres store: the bucket fragment bytes go to",
    "s3_access_key_id": "postgres store: the object store's access key",
    "s3_secret_access_key": "postgres store: its secret (prefer the environment variable)",
    "s3_region": "postgres store: the object store's region",
    "node_url": "the URL other nodes and clients reach this node at (GetDataEndpoint)",
    "node_id": "this node's name in the cluster (default: its --node-url)",
    "lease_seconds": "seconds before another node takes over the streams of one that died",
}

_FLAGS = {
    "host": "address to listen on",
    "port": "port to listen on",
    "data_dir": "where the embedded store keeps streams and fragments",
    "segment_bytes": "size at which the store starts a new segment file (retention frees whole files)",
    "public_url": "base URL GetDataEndpoint returns (default: this server's own)",
    "region": "region used in stream ARNs",
    "account_id": "account id used in stream ARNs",
    "log_level": "debug, info, warning or error",
    "getmedia_idle_timeout_s": "seconds a caught-up GetMedia waits for a new fragment before ending",
    "getmedia_calls_per_second": "GetMedia calls per second per stream",
    "getmedia_max_connections": "concurrent GetMedia sessions per stream",
    "getmedia_max_bytes_per_second": "GetMedia bytes per second per session",
    "putmedia_calls_per_second": "PutMedia calls per second per stream",
    "putmedia_max_bytes_per_second": "PutMedia bytes per second per stream (read slower beyond it)",
    "putmedia_idle_timeout_s": "seconds without data before a PutMedia is closed",
    "putmedia_idle_ack_interval_s": "seconds between IDLE acks while a PutMedia sends nothing",
    "max_fragment_bytes": "largest fragment accepted",
    "max_fragment_duration_ms": "longest fragment accepted",
    "max_tracks": "most tracks a PutMedia may declare",
    "max_header_bytes": "most bytes of Segment elements before a PutMedia's first Cluster",
    "putmedia_takeover_timeout_s": "seconds a replaced PutMedia has to store what it received",
    "live_buffer_seconds": "seconds of fragments kept in memory for streams without retention",
    "live_buffer_bytes": "bytes of fragments kept in memory per stream without retention",
    "live_buffer_total_bytes": "bytes of fragments kept in memory by all streams together",
    "retention_interval_s": "how often retention runs",
    "archive_calls_per_second": "ListFragments and GetMediaForFragmentList calls per second per stream",
    "clip_calls_per_second": "GetClip calls per second per stream",
    "archive_max_connections": "concurrent GetMediaForFragmentList responses per stream",
    "credentials": "access keys: JSON {id: secret} or an AWS credentials file (none: dev mode)",
    "access_rules": "JSON file of per-key read/write/admin stream-name prefixes",
    "tls_cert": "PEM certificate (chain) to serve HTTPS with",
    "tls_key": "PEM private key for --tls-cert",
    "metrics_host": "address to serve GET /metrics on with --metrics-port (default: --host)",
    "metrics_port": "serve GET /metrics on this port instead of the API's (0: any free one)",
    "retention_unit_s": "seconds one DataRetentionInHours hour lasts (for tests only)",
    **STORE_FLAGS,
}


SWITCHES = {  # flag: (Config field, whether the flag turns it off, help)
    "--no-rate-limits": (
        "rate_limits", True,
        "turn off the calls-per-second and bytes-per-second quotas (for benchmarks)",
    ),
    "--hls-low-latency": (
        "hls_low_latency", False,
        "serve every LIVE HLS session as low-latency HLS (parts, blocking reloads); "
        "without it a player asks per session with LowLatency=1 on the master URL",
    ),
    "--insecure": ("insecure", False, "serve a non-loopback address without credentials"),
    "--no-console": ("console", True, "do not serve the web console at /console/"),
    "--no-metrics": ("metrics", True, "do not serve GET /metrics (Prometheus text format)"),
    "--no-metrics-per-stream": (
        "metrics_per_stream", True, "metrics in totals only, no series per stream"
    ),
}


def _env_default(name: str, default: object, file: dict[str, object]) -> object:
    """OPENKVS_<NAME>, else the config file's value, else ``default``."""
    raw = os.environ.get("OPENKVS_" + name.upper())
    if raw is None:
        return file.get(name, default)
    convert: Callable[[str], object] = setting_type(name)
    return convert(raw)


def _config_flags(
    parser: argparse.ArgumentParser, names: dict[str, str], file: dict[str, object]
) -> None:
    """A flag per Config field in ``names``, its default from OPENKVS_<NAME>, the config
    file or Config, in that order."""
    defaults = Config()
    for f in fields(Config):
        if f.name not in names:
            continue
        default = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            type=setting_type(f.name),
            default=_env_default(f.name, default, file),
            help=f"{names[f.name]} (env OPENKVS_{f.name.upper()}; default {default})",
        )


def _switches(parser: argparse.ArgumentParser, file: dict[str, object]) -> None:
    defaults = Config()
    for flag, (name, turns_off, helptext) in SWITCHES.items():
        env = "OPENKVS_" + flag[2:].upper().replace("-", "_")
        if env in os.environ:
            on = os.environ[env] not in ("", "0")
        else:
            value = bool(file.get(name, getattr(defaults, name)))
            on = not value if turns_off else value
        parser.add_argument(flag, action="store_true", default=on, help=f"{helptext} (env {env})")


def _config_file(argv: list[str] | None) -> tuple[str | None, dict[str, object]]:
    """``--config FILE`` (or OPENKVS_CONFIG) and its settings, before the flags are parsed:
    the file gives the flags their defaults."""
    from openkvs.server.config import read_file

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=os.environ.get("OPENKVS_CONFIG"))
    known, _ = pre.parse_known_args(argv)
    return known.config, read_file(known.config) if known.config else {}


def serve_config(args: argparse.Namespace) -> Config:
    """The Config that ``serve`` (and ``config show``) flags describe."""
    values = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    config = Config(**values)
    for flag, (name, turns_off, _) in SWITCHES.items():
        given = getattr(args, flag[2:].replace("-", "_"))
        setattr(config, name, not given if turns_off else given)
    return config


CONFIG_HELP = "a TOML file of settings (env OPENKVS_CONFIG); flags and OPENKVS_* override it"


def _cluster_parser(sub: argparse._SubParsersAction, file: dict[str, object]) -> None:  # type: ignore[type-arg]
    cluster = sub.add_parser("cluster", help="set up the database and bucket of a cluster")
    cluster.add_argument("action", choices=("init",), help="init: create or migrate the schema")
    cluster.add_argument("--config", help=CONFIG_HELP)
    names = {k: v for k, v in STORE_FLAGS.items() if k.startswith(("database", "s3"))}
    _config_flags(cluster, names, file)


def _cluster(args: argparse.Namespace) -> int:
    from openkvs.server.config import ConfigError
    from openkvs.server.store.base import StoreError
    from openkvs.server.store.cluster import ClusterStore

    values = {f.name: getattr(args, f.name) for f in fields(Config) if hasattr(args, f.name)}
    config = Config(**values, store="postgres")

    async def init() -> int:
        store = ClusterStore.from_config(config)
        try:
            return await store.init()
        finally:
            await store.close()

    try:
        config.check_store()
        version = asyncio.run(init())
    except (ConfigError, StoreError) as exc:
        print(f"openkvs: {exc}", file=sys.stderr)
        return 2
    print(f"schema version {version} ready; bucket {config.s3_bucket} ready", file=sys.stderr)
    return 0


def _serve_parser(sub: argparse._SubParsersAction, file: dict[str, object]) -> None:  # type: ignore[type-arg]
    for name, helptext in (
        ("serve", "run the OpenKVS server"),
        ("config", "print the settings `serve` would run with (secrets masked)"),
    ):
        parser = sub.add_parser(name, help=helptext)
        if name == "config":
            parser.add_argument("action", choices=("show",), help="show: print them as TOML")
        parser.add_argument("--config", help=CONFIG_HELP)
        _config_flags(parser, _FLAGS, file)
        _switches(parser, file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="openkvs", description="OpenKVS: self-hosted KVS")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    from openkvs.server.config import ConfigError, shown

    try:
        config_path, file = _config_file(argv)
    except ConfigError as exc:
        print(f"openkvs: {exc}", file=sys.stderr)
        return 2
    _serve_parser(sub, file)
    _cluster_parser(sub, file)
    from openkvs.cli import commands

    commands.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in commands.NAMES:
        return commands.run(args)
    if args.command == "cluster":
        return _cluster(args)
    if args.command == "config":
        print(f"# effective settings{f' (with {config_path})' if config_path else ''}")
        print(shown(serve_config(args)), end="")
        return 0
    if args.command == "serve":
        config = serve_config(args)
        logs.setup(config.log_level)
        from openkvs.server.app import serve
        from openkvs.server.auth import AuthConfigError
        from openkvs.server.store.base import StoreError
        from openkvs.server.store.cluster.schema import SchemaError

        try:
            asyncio.run(serve(config))
        except (AuthConfigError, ConfigError, SchemaError, StoreError) as exc:
            print(f"openkvs: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(
                f"openkvs: cannot serve on {config.host}:{config.port}: {exc.strerror}. "
                "Pick another --port or stop what is using it.",
                file=sys.stderr,
            )
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
