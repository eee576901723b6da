"""GET /metrics during a real PutMedia and GetMedia: the counters move by what was sent."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess
from tests.kvs import chunks, create_stream, get_media, put


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_counters_move_by_what_putmedia_and_getmedia_carried(make_server, av_clip: Path) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "cam")
    before = scrape(server)
    result = put(server, "cam", av_clip.read_bytes(), timecode_type="RELATIVE")
    during = scrape(server)
    assert moved(before, during, "openkvs_ingest_fragments_total", stream="cam") == 6
    for event in ("BUFFERING", "RECEIVED", "PERSISTED"):
        assert moved(before, during, "openkvs_putmedia_acks_total", event=event, error_id="") == 6
    assert moved(before, during, "openkvs_persisted_latency_seconds_count") == 6
    archived = server.client("kinesis-video-archived-media")
    listed = archived.list_fragments(
        StreamName="cam",
        FragmentSelector={
            "FragmentSelectorType": "SERVER_TIMESTAMP",
            "TimestampRange": {"StartTimestamp": 0, "EndTimestamp": 2e9},
        },
    )["Fragments"]
    sizes = sum(f["FragmentSizeInBytes"] for f in listed)
    assert moved(before, during, "openkvs_ingest_bytes_total", stream="cam") == sizes
    assert len(result.events("PERSISTED")) == 6

    payload = get_media(server, "cam", {"StartSelectorType": "EARLIEST"})
    after = scrape(server)
    framed = sum(len(c) + len(f"{len(c):x}") + 4 for c in chunks(payload))  # one HTTP chunk each
    assert moved(during, after, "openkvs_getmedia_bytes_total", stream="cam") == framed
    assert after[("openkvs_getmedia_sessions", ())] == 0
    assert after[("openkvs_streams", ())] == 1
    assert after[("openkvs_store_free_bytes", ())] > 0


def test_per_stream_series_can_be_switched_off(make_server, av_clip: Path) -> None:
    server = make_server("--no-metrics-per-stream")
    create_stream(server, "cam")
    put(server, "cam", av_clip.read_bytes(), timecode_type="RELATIVE")
    samples = scrape(server)
    assert samples[("openkvs_ingest_fragments_total", (("stream", "_all"),))] == 6
    assert not any(("stream", "cam") in labels for _, labels in samples)


def test_metrics_can_be_turned_off(make_server) -> None:
    server = make_server("--no-metrics")
    try:
        urllib.request.urlopen(server.url + "/metrics", timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code in (404, 405)
    else:
        raise AssertionError("/metrics answered with --no-metrics")
