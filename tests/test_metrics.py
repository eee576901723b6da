"""GET /metrics during a real PutMedia and GetMedia: the counters move by what was sent."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess
from tests.kvs import LiveReader, chunks, create_stream, get_media, put
from tests.layout import aws_tags

CAM = (("stream", "cam"),)


def scrape(
    server: ServerProcess, url: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url or server.url + "/metrics", timeout=10) as response:
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


def behind_s(payload: bytes) -> float:
    """The MILLIS_BEHIND_NOW tags of a GetMedia payload, in seconds, added up."""
    return sum(int(tags["MILLIS_BEHIND_NOW"]) for tags in aws_tags(payload)) / 1000


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
    newest = during[("openkvs_ingest_last_fragment_timestamp_seconds", CAM)]
    assert abs(newest - time.time()) < 5
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
    embedded = "--store" not in server.extra  # the cluster's bytes are in its bucket
    if embedded:
        assert moved(before, during, "openkvs_store_bytes") >= sizes
    assert len(result.events("PERSISTED")) == 6

    payload = get_media(server, "cam", {"StartSelectorType": "EARLIEST"})
    after = scrape(server)
    framed = sum(len(c) + len(f"{len(c):x}") + 4 for c in chunks(payload))  # one HTTP chunk each
    assert moved(during, after, "openkvs_getmedia_bytes_total", stream="cam") == framed
    assert moved(during, after, "openkvs_getmedia_fragments_total", stream="cam") == 6
    assert len(chunks(payload)) == 6
    assert moved(during, after, "openkvs_getmedia_lag_seconds_count") == 6
    lag = moved(during, after, "openkvs_getmedia_lag_seconds_sum")
    assert lag == pytest.approx(behind_s(payload)) and lag > 0
    assert after[("openkvs_getmedia_sessions", ())] == 0
    assert after[("openkvs_getmedia_live_readers", CAM)] == 0  # it followed the edge, then ended
    assert after[("openkvs_streams", ())] == 1
    if embedded:
        assert after[("openkvs_store_free_bytes", ())] > 0


def test_live_readers_playback_sessions_and_a_metrics_port_of_its_own(
    make_server, av_clip: Path
) -> None:
    server = make_server("--metrics-port", "0", "--getmedia-idle-timeout-s", "1.5", log=True)
    url = metrics_url(server)
    assert url.startswith("http://127.0.0.1:") and not url.startswith(server.url)
    with pytest.raises(urllib.error.HTTPError) as on_api:
        urllib.request.urlopen(server.url + "/metrics", timeout=10)
    assert on_api.value.code in (404, 405)  # 405: only POST /{operation} matches there
    create_stream(server, "cam")
    before = scrape(server, url)
    reader = LiveReader(server, "cam", {"StartSelectorType": "NOW"})
    deadline = time.monotonic() + 5
    while scrape(server, url).get(("openkvs_getmedia_live_readers", CAM)) != 1:
        assert time.monotonic() < deadline, "the NOW reader never counted as live"
        time.sleep(0.05)
    put(server, "cam", av_clip.read_bytes(), timecode_type="RELATIVE")
    reader.join(10)
    assert not reader.is_alive() and reader.error is None
    after = scrape(server, url)
    assert len(chunks(bytes(reader.data))) == 6
    assert moved(before, after, "openkvs_getmedia_fragments_total", stream="cam") == 6
    assert moved(before, after, "openkvs_getmedia_lag_seconds_count") == 6
    lag = moved(before, after, "openkvs_getmedia_lag_seconds_sum")
    assert lag == pytest.approx(behind_s(bytes(reader.data)))
    assert after[("openkvs_getmedia_live_readers", CAM)] == 0

    archived = server.client("kinesis-video-archived-media")
    archived.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="LIVE")
    samples = scrape(server, url)
    assert samples[("openkvs_playback_sessions", (("protocol", "hls"),))] == 1
    assert samples[("openkvs_playback_sessions", (("protocol", "dash"),))] == 0
    archived.get_dash_streaming_session_url(StreamName="cam", PlaybackMode="LIVE")
    archived.get_hls_streaming_session_url(StreamName="cam", PlaybackMode="LIVE")
    samples = scrape(server, url)
    assert samples[("openkvs_playback_sessions", (("protocol", "hls"),))] == 2
    assert samples[("openkvs_playback_sessions", (("protocol", "dash"),))] == 1


def metrics_url(server: ServerProcess) -> str:
    """The metrics URL the start-up line gives (after the metrics listener is up)."""
    assert server.log is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in server.log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("msg") == "openkvs listening":
                return entry["metrics"]
        time.sleep(0.05)
    raise AssertionError("no start-up line")


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
