"""What every benchmark shares: the row type, child processes, bodies, readers, statistics.

A benchmark module exposes ``run(settings) -> list[Row]``; ``standalone(run)`` makes it a
script. Rows carry their baseline, measured in the same run, so a figure never stands
alone: ``ratio`` is OpenKVS / baseline (higher is better for rates, lower for times, lag,
CPU and bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from openkvs.server.model import Fragment, FragmentMeta, FragmentNumber, StreamInfo  # noqa: E402
from openkvs.wire.chunk import CONTINUATION_TOKEN  # noqa: E402
from openkvs.wire.fragmenter import FragmentDone, Fragmenter  # noqa: E402
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv  # noqa: E402

KB, MB = 1 << 10, 1 << 20
START_MS = 1_700_000_000_000
MARKER = CONTINUATION_TOKEN.encode()


# ---- rows ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of the results table, beside its baseline.

    ``plot`` = (panel, series, x) places the figure on the chart; the baseline, when
    there is one, is drawn dashed as ``"series: baseline_name"``.
    """

    figure: str
    value: float
    baseline: float | None
    unit: str
    quota: str = ""
    target: str = ""
    baseline_name: str = ""
    plot: tuple[str, str, float] | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0 or math.isnan(self.value):
            return None
        return self.value / self.baseline


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "n/a"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2 if abs(value) >= 0.1 else 4
    return f"{value:,.{digits}f} {unit}".strip()


def print_rows(rows: list[Row]) -> None:
    for row in rows:
        ratio = row.ratio
        print(
            f"{row.figure:<44} {fmt(row.value, row.unit):>16} | "
            f"{row.baseline_name or 'baseline'} {fmt(row.baseline, row.unit)} | "
            f"ratio {'—' if ratio is None else f'{ratio:.2f}'}",
            flush=True,
        )


@dataclass
class Settings:
    """How one run goes: ``smoke`` shrinks every size; ``profile`` collects py-spy profiles."""

    work: Path
    smoke: bool = False
    profile: Path | None = None
    options: dict[str, int] = field(default_factory=dict)


def standalone(
    run: Callable[[Settings], list[Row]],
    doc: str | None,
    options: dict[str, int] | None = None,
) -> None:
    """Run one benchmark module as a script: ``--smoke``, ``--profile DIR``, its own options."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_common_arguments(parser, options or {})
    args = parser.parse_args()
    with work_dir(args.dir) as work:
        print_rows(run(settings_from(args, work, options or {})))


def add_common_arguments(parser: argparse.ArgumentParser, options: dict[str, int]) -> None:
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of the server here")
    parser.add_argument("--dir", help="where data dirs go (default: a temp dir under /tmp)")
    for name, default in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)


def settings_from(args: argparse.Namespace, work: Path, options: dict[str, int]) -> Settings:
    chosen = {name: getattr(args, name) for name in options}
    return Settings(work, args.smoke, args.profile, chosen)


@contextlib.contextmanager
def work_dir(parent: str | None = None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=parent, prefix="openkvs-bench-") as tmp:
        yield Path(tmp)


# ---- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (children inherit it); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


@dataclass
class Child:
    """A server child process on a free 127.0.0.1 port; ``start`` returns once it listens."""

    args: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Child:
        cmd = [sys.executable, *self.args, "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{cmd} did not listen in {timeout} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Child:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def openkvs_server(data_dir: Path, *flags: str) -> Child:
    """An ``openkvs serve`` child (not started) on ``data_dir``."""
    cmd = ["-m", "openkvs", "serve", "--host", "127.0.0.1", "--data-dir", str(data_dir)]
    return Child([*cmd, "--log-level", "error", *flags])


def baseline_server(kind: str, *flags: str) -> Child:
    """A ``bench/baselines.py`` child (not started): ``sender``, ``relay`` or ``json``."""
    return Child(["-m", "bench.baselines", kind, *flags])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Profiler:
    """``py-spy record`` attached to a pid while the ``with`` block runs (no-op without a path).

    Raw (collapsed) stacks land in ``path``; ``top_self`` sums samples by leaf frame.
    """

    def __init__(self, pid: int, path: Path | None, rate: int = 500) -> None:
        self.pid, self.path, self.rate = pid, path, rate
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self.path is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy), "record", "--pid", str(self.pid), "--rate", str(self.rate)]
        cmd += ["--format", "raw", "--output", str(self.path), "--nonblocking"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # let it attach
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Leaf frames that are a thread waiting (for events, for work), not working.
WAITS = (
    "EpollSelector.select (selectors.py)",
    "_worker (concurrent/futures/thread.py)",
    "Condition.wait (threading.py)",
)


def top_self(path: Path, count: int = 10) -> list[tuple[str, float]]:
    """The ``count`` frames with the most self samples in a py-spy raw file, with their share.

    Waiting frames (``WAITS``) are left out, of the shares too: what remains is work.
    """
    totals: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack:
            continue
        leaf = stack.rsplit(";", 1)[-1]
        name = leaf.split(":", 1)[0] + ")" if ":" in leaf else leaf
        if not name.endswith(WAITS):
            totals[name] = totals.get(name, 0) + int(samples)
    grand = sum(totals.values()) or 1
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [(name, n / grand) for name, n in ranked]


# ---- statistics ----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def percentile_rows(
    figure: str, values: list[float], baseline: list[float], unit: str, baseline_name: str
) -> list[Row]:
    """The p50 and p99 rows of ``figure``, each beside the baseline's same percentile."""
    return [
        Row(
            f"{figure}, p{p}",
            percentile(values, p),
            percentile(baseline, p),
            unit,
            baseline_name=baseline_name,
        )
        for p in (50, 99)
    ]


# ---- bodies --------------------------------------------------------------------------------


def media_body(fragment_bytes: int, count: int, first_ms: int = 0, frames: int = 2) -> bytes:
    """A PutMedia body of ``count`` 1-second fragments of about ``fragment_bytes`` each.

    Each fragment is one Cluster of ``frames`` evenly spaced SimpleBlocks; with more than
    two, the first (the keyframe) is four times the size of the others, as in a camera's
    GOP. Each Cluster is followed by an END_OF_FRAGMENT tag, so a fragment completes (and
    is acknowledged RECEIVED) as soon as its last byte arrives.
    """
    weights = [4] + [1] * (frames - 1) if frames > 2 else [1] * frames
    unit = fragment_bytes / sum(weights)
    payloads = {w: os.urandom(max(1, int(unit * w) - 32)) for w in set(weights)}
    blocks = [
        simple_block(1, i * 1000 // frames, payloads[w], key=i == 0) for i, w in enumerate(weights)
    ]
    return synthetic_mkv(
        [cluster(first_ms + i * 1000, blocks) + end_of_fragment() for i in range(count)]
    )


def fragments_of(body: bytes, first_seq: int = 1) -> list[Fragment]:
    """The fragments the server would store for ``body`` (cut by its own Fragmenter)."""
    fragmenter = Fragmenter(relative=False)
    events = fragmenter.feed(body, START_MS) + fragmenter.feed_eof(START_MS)
    done = [e for e in events if isinstance(e, FragmentDone)]
    now_ms = int(time.time() * 1000)  # recent: retention would delete older ones at once
    out = []
    for seq, event in enumerate(done, start=first_seq):
        server_ms = now_ms - (len(done) - seq) * 1000
        number = FragmentNumber.make(seq, server_ms)
        meta = FragmentMeta(
            number, server_ms, event.producer_ms, event.duration_ms, len(event.body)
        )
        out.append(Fragment(meta, event.header, event.body))
    return out


def stream_info(name: str, retention_hours: int = 24) -> StreamInfo:
    """A StreamInfo shaped like the one CreateStream makes (for filling a store directly)."""
    creation_ms = int(time.time() * 1000)
    arn = f"arn:aws:kinesisvideo:us-west-2:123456789012:stream/{name}/{creation_ms}"
    return StreamInfo(name, arn, creation_ms, "v" * 20, data_retention_hours=retention_hours)


def chunked(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def getmedia_chunks(fragments: list[Fragment]) -> list[bytes]:
    """The bytes GetMedia sends for each stored fragment: one HTTP chunk holding it."""
    return [chunked(b"".join(f.chunk(START_MS))) for f in fragments]


def getmedia_request(stream: str, selector: str = "EARLIEST") -> bytes:
    body = json.dumps({"StreamName": stream, "StartSelector": {"StartSelectorType": selector}})
    return (
        "POST /getMedia HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def request_json(url: str, op: str, body: dict[str, object]) -> dict[str, object]:
    """POST one control-plane request (unsigned, as the tests do) and return its JSON."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/{op}", json=body) as response:
            result: dict[str, object] = await response.json(content_type=None)
            if response.status != 200:
                raise RuntimeError(f"{op} failed: {response.status} {result}")
            return result


# ---- the discarding reader -----------------------------------------------------------------


def _tail_layout() -> tuple[int, int]:
    """(bytes after the CONTINUATION_TOKEN name to the chunk's end, length of its value)."""
    meta = FragmentMeta(FragmentNumber.make(1, START_MS), START_MS, 0, 1000, 1)
    tail = Fragment(meta, b"", b"x").chunk(START_MS)[-1]
    return len(tail) - tail.rfind(MARKER) - len(MARKER), len(str(meta.number))


_AFTER, _VALUE = _tail_layout()
_KEEP = len(MARKER) + _AFTER  # bytes carried to the next read: a split marker is still found


class ChunkReader(asyncio.BufferedProtocol):
    """Sends ``request`` and discards what comes back, noting when each GetMedia chunk ends.

    A chunk ends ``_AFTER`` bytes past its CONTINUATION_TOKEN tag name; ``arrived`` maps
    the token (the fragment number) to the ``perf_counter`` of that last byte. ``done``
    resolves after ``expect`` chunks (or when the connection closes).
    """

    def __init__(self, request: bytes, expect: int, buffer_bytes: int = 256 * KB) -> None:
        self.request, self.expect = request, expect
        self.buffer = bytearray(buffer_bytes + _KEEP)
        self.view = memoryview(self.buffer)
        self.kept = 0  # bytes at the start of ``buffer`` carried from the last read
        self.total = 0
        self.started = 0.0
        self.answered = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()
        self.arrived: dict[str, float] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.started = time.perf_counter()
        transport.write(self.request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view[self.kept :]

    def buffer_updated(self, nbytes: int) -> None:
        now = time.perf_counter()
        self.total += nbytes
        if not self.answered.done():
            self.answered.set_result(now)
        end, buf, at = self.kept + nbytes, self.buffer, 0
        while (at := buf.find(MARKER, at, end)) >= 0:
            stop = at + _KEEP
            if stop > end:
                break  # its value is still on the way: search again after the next read
            self.arrived[buf[stop - _VALUE : stop].decode()] = now
            at = stop
        keep_from = at if at >= 0 else max(0, end - len(MARKER) + 1)
        self.kept = end - keep_from
        buf[: self.kept] = buf[keep_from:end]
        if len(self.arrived) >= self.expect and not self.done.done():
            self.done.set_result(now)
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answered.done():
            self.answered.set_result(time.perf_counter())
        if not self.done.done():
            self.done.set_result(time.perf_counter())


async def open_reader(
    port: int, request: bytes, expect: int, buffer_bytes: int = 256 * KB
) -> ChunkReader:
    loop = asyncio.get_running_loop()
    _, reader = await loop.create_connection(
        lambda: ChunkReader(request, expect, buffer_bytes), "127.0.0.1", port
    )
    return reader


# ---- sizes and repetition ------------------------------------------------------------------

SIZES_KB = (64, 256, 1024, 4096, 8192)  # the growth figure's fragment sizes
HEADLINE_KB = 1024  # the size the headline figures (1 and 2) are quoted at
GROWTH = "throughput vs fragment size"


def size_label(kb: int) -> str:
    return f"{kb} KB" if kb < 1024 else f"{kb // 1024} MB"


def fragment_count(settings: Settings, kb: int, total_mb: int) -> int:
    """Fragments of ``kb`` making ``total_mb`` (at least 4; 2 when smoking)."""
    if settings.smoke:
        return 2
    return max(4, total_mb * 1024 // kb)


def write_synced(path: Path, pieces: list[bytes]) -> float:
    """Seconds to write and fdatasync each piece to a new plain file: the disk's own pace."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        started = time.perf_counter()
        for piece in pieces:
            os.write(fd, piece)
            os.fdatasync(fd)
        return time.perf_counter() - started
    finally:
        os.close(fd)


def split(data: bytes, count: int) -> list[bytes]:
    """``data`` in ``count`` nearly equal pieces."""
    step = -(-len(data) // count)
    return [data[i : i + step] for i in range(0, len(data), step)]


def profile_path(settings: Settings, name: str) -> Path | None:
    return settings.profile / f"{name}.txt" if settings.profile else None
