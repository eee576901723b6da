"""The server process: configuration from the environment, clean shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ServerProcess, free_port
from tests.kvs import create_stream, get_media, numbers
from tests.media import cluster, end_of_fragment, simple_block, synthetic_mkv
from tests.producer import put_media


def test_settings_come_from_openkvs_environment_variables(tmp_path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        OPENKVS_PORT=str(port),
        OPENKVS_DATA_DIR=str(tmp_path / "d"),
        OPENKVS_PUBLIC_URL="http://gateway.example:9000",
    )
    proc = subprocess.Popen([sys.executable, "-m", "openkvs", "serve"], env=env)
    try:
        server = ServerProcess(tmp_path / "d", port=port)
        deadline = time.monotonic() + 15
        while True:
            try:
                create_stream(server, "env")
                break
            except Exception:
                assert time.monotonic() < deadline, "the server did not start on OPENKVS_PORT"
                time.sleep(0.1)
        endpoint = server.client().get_data_endpoint(StreamName="env", APIName="GET_MEDIA")
        assert endpoint["DataEndpoint"] == "http://gateway.example:9000"
        assert (tmp_path / "d" / "streams").is_dir()
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_during_ingest_exits_cleanly_and_keeps_persisted_fragments(make_server) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "term")
    body = synthetic_mkv([cluster(1000, [simple_block(1, 0)]) + end_of_fragment()])

    async def scenario() -> list[dict]:
        acks: list[dict] = []
        task = asyncio.create_task(
            put_media(server.url, "term", body, finish=False, on_ack=acks.append)
        )
        while not any(a["EventType"] == "PERSISTED" for a in acks):
            await asyncio.sleep(0.02)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(task, 10)  # the server ends the open PutMedia
        return acks

    acks = asyncio.run(scenario())
    assert server.proc is not None and server.proc.wait(10) == 0
    server.proc = None
    server.start()
    persisted = [a["FragmentNumber"] for a in acks if a["EventType"] == "PERSISTED"]
    assert numbers(get_media(server, "term", {"StartSelectorType": "EARLIEST"})) == persisted


def test_fragment_numbers_keep_rising_across_a_restart_with_nothing_stored(make_server) -> None:
    server = make_server()
    create_stream(server, "mem", retention=0)
    body = synthetic_mkv([cluster(1000, [simple_block(1, 0)]) + end_of_fragment()])
    before = asyncio.run(put_media(server.url, "mem", body)).acks[-1]["FragmentNumber"]
    server.stop()
    server.start()
    after = asyncio.run(put_media(server.url, "mem", body)).acks[-1]["FragmentNumber"]
    assert after > before and len(after) == len(before) == 47
