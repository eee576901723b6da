"""The asyncio HTTP/1.1 app: one port for the control plane, PutMedia and GetMedia.

It only routes requests and renders errors; the operations live in the packages beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import ssl

from aiohttp import web
from aiohttp.typedefs import Handler

from openkvs.server.archive import routes as archive_routes
from openkvs.server.archive.service import Archive
from openkvs.server.auth import gate_for, load_keys, server_tls_context
from openkvs.server.config import Config, ConfigError, masked_url
from openkvs.server.console.routes import add_routes as add_console
from openkvs.server.control.plane import ControlPlane
from openkvs.server.errors import AwsError, InternalFailure, UnknownOperationException
from openkvs.server.http import BODY_TIMEOUT, error_response, json_response, read_json
from openkvs.server.ingest.putmedia import put_media
from openkvs.server.model import StreamInfo
from openkvs.server.nodes.forward import Forwarder
from openkvs.server.nodes.ownership import Ownership, Solo
from openkvs.server.observe.health import health, ready
from openkvs.server.observe.routes import metrics_page, watch_loop_lag
from openkvs.server.runtime.registry import Runtimes
from openkvs.server.serve.getmedia import get_media
from openkvs.server.store.base import Store
from openkvs.server.store.cluster import ClusterStore
from openkvs.server.store.cluster.leases import Leases
from openkvs.wire import error_ids

log = logging.getLogger("openkvs.server")

CONTROL = web.AppKey("control", ControlPlane)
RUNTIMES = web.AppKey("runtimes", Runtimes)
ARCHIVE = web.AppKey("archive", Archive)
FORWARDER = web.AppKey("forwarder", Forwarder)
METRICS_PAGE: web.AppKey[Handler] = web.AppKey("metrics_page")
"""With --metrics-port: the /metrics handler, for the listener ``serve_metrics`` starts."""


async def dispatch(request: web.Request) -> web.StreamResponse:
    op = request.match_info["op"]
    control = request.app[CONTROL]
    runtimes = request.app[RUNTIMES]
    try:
        if op == "putMedia":
            return await put_media(control, runtimes, request.app[FORWARDER], request)
        if op == "getMedia":
            return await get_media(control, runtimes, request.app[FORWARDER], request)
        if op in archive_routes.OPERATIONS:
            return await archive_routes.operation(request.app[ARCHIVE], op, request)
        handler = control.operation(op)
        if handler is None:
            raise UnknownOperationException(f"Unknown operation {op}.")
        return json_response(request, await handler(await read_json(request)))
    except AwsError as err:
        return error_response(request, err)
    except Exception:
        log.exception("internal error in %s", op)
        return error_response(request, InternalFailure("Internal service error."))


async def session_resource(request: web.Request) -> web.StreamResponse:
    try:
        return await archive_routes.session_resource(request.app[ARCHIVE], request)
    except Exception:
        log.exception("internal error in %s", request.path)
        return error_response(request, InternalFailure("Internal service error."))


def build_app(config: Config, store: Store) -> web.Application:
    gate = gate_for(config, os.environ)
    app = web.Application(client_max_size=1 << 20, middlewares=[gate.middleware()])
    ownership = default_ownership(config, store)
    control = ControlPlane(store, config, ownership=ownership)
    runtimes = Runtimes(store, config)
    archive = Archive(control, runtimes)
    app[CONTROL] = control
    app[RUNTIMES] = runtimes
    app[ARCHIVE] = archive
    forwarder = app[FORWARDER] = Forwarder(ownership, config.lease_seconds)

    async def close_runtime(info: StreamInfo) -> None:
        archive.sessions.close_stream(info.key)
        await runtimes.close_stream(info, error_ids.STREAM_NOT_ACTIVE)

    control.before_delete(close_runtime)

    if isinstance(ownership, Leases):
        ownership.on_renewed = control.refresh

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        control.load(await store.open())
        await ownership.start()
        runtimes.start(control.every_stream, ownership)
        lag = asyncio.create_task(watch_loop_lag(runtimes.metrics))
        yield
        lag.cancel()
        await forwarder.close()
        await ownership.stop()
        await store.close()

    async def shutdown(app: web.Application) -> None:
        await runtimes.stop()  # before aiohttp waits for handlers: live reads and ingest end now

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(shutdown)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready(store))
    if config.metrics:
        page = metrics_page(
            runtimes.metrics,
            config,
            lambda: len(control.all_streams()),
            archive.sessions.open_by_kind,
        )
        if config.metrics_port is None:
            app.router.add_get("/metrics", page)
        else:
            app[METRICS_PAGE] = page
    if config.console:
        add_console(app, gate, runtimes.metrics, config.base_url().startswith("https:"))
    app.router.add_post("/{op}", dispatch)
    for prefix in archive_routes.SESSION_PREFIXES:
        app.router.add_get(prefix + "{resource}", session_resource)
    return app


def default_ownership(config: Config, store: Store) -> Ownership:
    """A cluster node holds leases in the shared database; a lone server owns every stream."""
    if isinstance(store, ClusterStore):
        url = config.base_url()
        return Leases(store, config.node_id or url, url, config.lease_seconds)
    return Solo(config.base_url())


def default_store(config: Config) -> Store:
    """The embedded store in ``--data-dir`` (``:memory:`` keeps nothing across restarts), or
    with ``--store postgres`` the clustered one."""
    config.check_store()
    if config.store == "postgres":
        return ClusterStore.from_config(config)
    if config.data_dir == ":memory:":
        from openkvs.server.store.memory import MemoryStore

        return MemoryStore()
    from openkvs.server.store.embedded import EmbeddedStore

    return EmbeddedStore(config.data_dir, config.segment_bytes)


def summary(config: Config) -> dict[str, str]:
    """What the start-up line tells the user they have: where to reach it, where its data
    is, whether requests must be signed."""
    url = config.base_url()
    if config.store == "postgres":
        where = {
            "cluster": masked_url(config.database_url or ""),
            "bucket": f"{config.s3_endpoint_url}/{config.s3_bucket}",
        }
    else:
        where = {"data_dir": config.data_dir}
    signed = bool(load_keys(config.credentials, os.environ))
    return {
        "url": url,
        **where,
        "console": f"{url}/console/" if config.console else "off",
        "metrics": config.metrics_url() or "off",
        "health": f"{url}/health, {url}/ready",
        "auth": "SigV4" if signed else "off",
    }


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then finish or reject in-flight work and exit."""
    tls = server_tls_context(config)
    app = build_app(config, default_store(config))
    # A client that goes silent: the PutMedia idle limit also bounds how long request headers
    # (aiohttp's keep-alive timer runs from connect until a request is parsed) and JSON bodies
    # may take, so a slowloris connection is dropped instead of held for an hour.
    silent_s = config.putmedia_idle_timeout_s
    app[BODY_TIMEOUT] = silent_s
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=5.0,
        keepalive_timeout=silent_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True, ssl_context=tls)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else config.port  # --port 0: the one given
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics_runner = None
    try:
        metrics_runner = await serve_metrics(app, config, tls)
        metrics_port = metrics_runner.addresses[0][1] if metrics_runner else config.metrics_port
        bound_config = dataclasses.replace(config, port=bound, metrics_port=metrics_port)
        log.warning("openkvs listening", extra=summary(bound_config))
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        log.warning("openkvs shutting down")
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()


async def serve_metrics(
    app: web.Application, config: Config, tls: ssl.SSLContext | None
) -> web.AppRunner | None:
    """With --metrics-port, GET /metrics on a listener of its own (on a network Prometheus
    reaches and API clients need not), with the API's TLS; None without it."""
    page = app.get(METRICS_PAGE)
    if page is None or config.metrics_port is None:
        return None
    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", page)
    runner = web.AppRunner(metrics_app, handle_signals=False, access_log=None)
    await runner.setup()
    host = config.metrics_host or config.host
    try:
        await web.TCPSite(
            runner, host, config.metrics_port, reuse_address=True, ssl_context=tls
        ).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot serve metrics on {host}:{config.metrics_port}: {exc.strerror}. "
            "Pick another --metrics-port or stop what is using it."
        ) from None
    return runner
