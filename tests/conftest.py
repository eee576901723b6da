"""Shared fixtures: a real OpenKVS server process on a free 127.0.0.1 port, real boto3 clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

pytest_plugins = ["tests.services"]  # PostgreSQL and SeaweedFS on free ports, for the cluster store

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures"


def fixture_path(relative: str) -> Path:
    """A file from ../shared/fixtures, or skip the test saying why."""
    path = FIXTURES / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared fixtures live beside the repo (CI has them)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    """An ``openkvs serve`` child process; restartable on the same port and data dir."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    """Where the server's stderr (its JSON log lines) goes; None: the test's own stderr."""

    @property
    def url(self) -> str:
        scheme = "https" if "--tls-cert" in self.extra else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "openkvs", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--data-dir", str(self.data_dir), *self.extra]
        log = open(self.log, "ab") if self.log is not None else None  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(cmd, stderr=log)
        finally:
            if log is not None:
                log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openkvs exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("openkvs did not start listening in 15 s")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def client(self, service: str = "kinesisvideo", verify: object = None, **config: object):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-west-2",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
            verify=verify,
            config=BotoConfig(retries={"max_attempts": 1}, **config),  # type: ignore[arg-type]
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--serial",
        choices=("both", "skip", "only"),
        default="both",
        help="the tests marked serial: run them too (both), leave them out (skip) or run only "
        "them (only); scripts/test runs skip on two workers, then only on one",
    )
    parser.addoption(
        "--cluster",
        action="store_true",
        help="run every server the tests start as a 2-node cluster on PostgreSQL + SeaweedFS "
        "(clients talk to the first node; the second serves GetDataEndpoint's other half)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded_store: tests the embedded store's data dir (skipped with --cluster)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:  # a browser takes a core of its own and its tests time playback
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.serial)
    serial = config.getoption("--serial")
    if serial != "both":
        keep = [item for item in items if ("serial" in item.keywords) == (serial == "only")]
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep
    if config.getoption("--cluster"):
        skip = pytest.mark.skip(reason="tests the embedded store's data dir, not a cluster")
        for item in items:
            if "embedded_store" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def make_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A factory: ``make_server(*extra_flags, log=False)`` starts a server (``log``: its
    stderr to ``server.log``); all are stopped at teardown. With ``--cluster`` each server
    is the first of two nodes on a database and bucket of its own."""
    started: list[ServerProcess] = []
    cluster = ClusterBackends(request) if request.config.getoption("--cluster") else None

    def make(*extra: str, data_dir: Path | None = None, log: bool = False) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / f"data{len(started)}", extra=list(extra))
        if log:
            server.log = tmp_path / f"server{len(started)}.log"
        if cluster is not None:
            flags = cluster.backends()
            peer = ServerProcess(tmp_path / f"peer{len(started)}", extra=list(extra))
            for node in (server, peer):
                node.extra[:0] = [*flags, "--node-url", node.url]
            started.append(peer.start())
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop(signal.SIGKILL)
    if cluster is not None:
        cluster.drop()


class ClusterBackends:
    """A fresh database (schema made) and bucket per server, on the session's PostgreSQL and
    SeaweedFS, for ``--cluster`` runs."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.postgres = request.getfixturevalue("postgres_server")
        self.seaweedfs = request.getfixturevalue("seaweedfs_server")
        self.made: list[tuple[str, str]] = []

    def backends(self) -> list[str]:
        import uuid

        from tests.services import S3Target, cluster_flags, create_database

        name = f"c_{uuid.uuid4().hex[:16]}"
        bucket = name.replace("_", "-")
        s3 = self.seaweedfs
        s3.client().create_bucket(Bucket=bucket)
        url = create_database(self.postgres, name)
        self.made.append((name, bucket))
        target = S3Target(s3.endpoint_url, s3.access_key, s3.secret_key, bucket, s3.region)
        flags = cluster_flags(url, target)
        init = [sys.executable, "-m", "openkvs", "cluster", "init", *flags[2:]]
        subprocess.run(init, check=True, capture_output=True, timeout=60)
        return flags

    def drop(self) -> None:
        from tests.services import drop_database

        for database, bucket in self.made:
            drop_database(self.postgres, database)
            self.seaweedfs.client().delete_bucket(Bucket=bucket)


@pytest.fixture
def server(make_server) -> ServerProcess:  # type: ignore[no-untyped-def]
    return make_server()


os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def av_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six seconds of H.264 + AAC from ffmpeg, six 1-second Clusters."""
    from tests.media import ffmpeg_mkv

    return ffmpeg_mkv(tmp_path_factory.mktemp("media") / "clip.mkv")


@pytest.fixture(scope="session")
def sdk_capture() -> bytes:
    """The first 2 MiB of a real PutMedia body from the C producer SDK."""
    return fixture_path("producer-sdk/putmedia-h264-realtime.mkv").read_bytes()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, so writes really fail with ENOSPC; skips where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)
