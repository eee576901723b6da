"""GET /health and GET /ready: no signature needed, and /ready says whether the store can
take writes (a read-only data dir makes it 503, saying why, until it is writable again)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ServerProcess


def probe(server: ServerProcess, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_probes_need_no_signature_where_everything_else_does(make_server, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"AKIDADMIN": "secret"}))
    server = make_server("--credentials", str(keys), log=True)
    assert server.log is not None
    started = [json.loads(line) for line in server.log.read_text().splitlines()]
    line = next(entry for entry in started if entry["msg"] == "openkvs listening")
    assert line["url"] == server.url and line["auth"] == "SigV4"
    assert line["metrics"] == server.url + "/metrics" and line["data_dir"] == str(server.data_dir)
    assert probe(server, "/health") == (200, {"status": "ok"})
    assert probe(server, "/ready") == (200, {"status": "ready"})
    unsigned = urllib.request.Request(server.url + "/listStreams", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=10)
    assert refused.value.code == 403


@pytest.mark.embedded_store
def test_ready_turns_false_while_the_data_dir_is_unwritable(make_server, tiny_disk: Path) -> None:
    server = make_server(data_dir=tiny_disk / "data")
    assert probe(server, "/ready") == (200, {"status": "ready"})
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        status, body = probe(server, "/ready")
        assert status == 503 and body["status"] == "unavailable"
        assert "data dir cannot be written" in body["reason"] and "Read-only" in body["reason"]
        assert probe(server, "/health") == (200, {"status": "ok"})  # alive, not ready
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    assert probe(server, "/ready") == (200, {"status": "ready"})


def test_the_start_up_line_of_a_cluster_node_names_its_database_without_its_password() -> None:
    from openkvs.server.app import summary
    from openkvs.server.config import Config

    config = Config(
        store="postgres", database_url="postgresql://kvs:hunter2@db:5432/kvs?password=hunter2",
        s3_endpoint_url="http://s3:8333", s3_bucket="video", node_url="http://node1:8080",
    )
    line = summary(config)
    assert line["cluster"] == "postgresql://kvs:********@db:5432/kvs?password=********"
    assert line["bucket"] == "http://s3:8333/video" and line["url"] == "http://node1:8080"
