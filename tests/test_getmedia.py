"""GetMedia start selectors, the live edge, resuming, and its errors."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.kvs import LiveReader, create_stream, get_media, numbers, put
from tests.layout import aws_tags
from tests.producer import put_media

START = 1_700_000_000_000


@pytest.fixture
def six(make_server, av_clip: Path):
    """A server with stream 'six' holding the six fragments of the ffmpeg clip."""
    server = make_server("--getmedia-idle-timeout-s", "1")
    create_stream(server, "six")
    result = put(
        server,
        "six",
        av_clip.read_bytes(),
        timecode_type="RELATIVE",
        start_timestamp="1700000000.000",
        delay=0.02,
    )
    assert [a["EventType"] for a in result.acks].count("PERSISTED") == 6
    server.tags = aws_tags(get_media(server, "six", {"StartSelectorType": "EARLIEST"}))
    assert len(server.tags) == 6
    return server


def first_number(server, selector: dict) -> str | None:
    got = numbers(get_media(server, "six", selector))
    return got[0] if got else None


def test_fragment_number_and_continuation_token_start_after(six) -> None:
    tags = six.tags
    fn = [t["FRAGMENT_NUMBER"] for t in tags]
    assert fn == sorted(fn) and len(set(fn)) == 6
    assert (
        first_number(six, {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": fn[1]})
        == fn[2]
    )
    assert (
        first_number(
            six,
            {
                "StartSelectorType": "CONTINUATION_TOKEN",
                "ContinuationToken": tags[3]["CONTINUATION_TOKEN"],
            },
        )
        == fn[4]
    )
    assert (
        numbers(
            get_media(
                six, "six", {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": fn[5]}
            )
        )
        == []
    )


def test_timestamps_select_the_chunk_containing_them(six) -> None:
    fn = [t["FRAGMENT_NUMBER"] for t in six.tags]
    producer = [round(float(t["PRODUCER_TIMESTAMP"]) * 1000) for t in six.tags]
    server = [round(float(t["SERVER_TIMESTAMP"]) * 1000) for t in six.tags]
    assert producer[0] == START
    for k in (0, 2, 5):
        inside = (producer[k] + 500) / 1000
        assert (
            first_number(six, {"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": inside})
            == fn[k]
        )
    assert (
        first_number(six, {"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": 1600000000})
        == fn[0]
    )
    assert server == sorted(server) and len(set(server)) == 6
    assert (
        first_number(
            six, {"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": server[3] / 1000}
        )
        == fn[3]
    )


def test_earliest_and_now(six, av_clip: Path) -> None:
    fn = [t["FRAGMENT_NUMBER"] for t in six.tags]
    assert first_number(six, {"StartSelectorType": "EARLIEST"}) == fn[0]
    reader = LiveReader(six, "six", {"StartSelectorType": "NOW"})  # placed before its 200
    result = put(
        six,
        "six",
        av_clip.read_bytes(),
        timecode_type="RELATIVE",
        start_timestamp="1700000100.000",
        delay=0.01,
    )
    reader.join(30)
    live = numbers(bytes(reader.data))
    persisted = [a["FragmentNumber"] for a in result.acks if a["EventType"] == "PERSISTED"]
    assert live == persisted and len(live) == 6 and live[0] > fn[-1]


def test_a_now_reader_gets_fragments_while_the_producer_streams(make_server, av_clip) -> None:
    server = make_server("--getmedia-idle-timeout-s", "3")
    create_stream(server, "live")
    reader = LiveReader(server, "live", {"StartSelectorType": "NOW"})
    data = av_clip.read_bytes()
    seen_during: list[int] = []

    async def produce() -> None:
        task = asyncio.create_task(
            put_media(server.url, "live", data, piece=4096, delay=0.01, timecode_type="RELATIVE")
        )
        while not task.done():
            seen_during.append(len(numbers(bytes(reader.data))) if reader.data else 0)
            await asyncio.sleep(0.05)
        await task

    asyncio.run(produce())
    reader.join(30)
    assert len(numbers(bytes(reader.data))) == 6
    assert 0 < max(seen_during), "fragments should arrive before the producer finishes"


def test_resume_by_continuation_token_has_no_gap_or_duplicate(six) -> None:
    fn = [t["FRAGMENT_NUMBER"] for t in six.tags]
    media = six.client("kinesis-video-media")
    response = media.get_media(StreamName="six", StartSelector={"StartSelectorType": "EARLIEST"})
    partial = response["Payload"].read(250_000)  # break the read mid-way
    response["Payload"].close()
    got = [t for t in aws_tags(partial) if "CONTINUATION_TOKEN" in t]
    assert 0 < len(got) < 6
    token = got[-1]["CONTINUATION_TOKEN"]
    rest = numbers(
        get_media(
            six, "six", {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": token}
        )
    )
    assert [t["FRAGMENT_NUMBER"] for t in got] + rest == fn


def test_unknown_fragment_is_an_in_band_4000(six) -> None:
    bogus = "9" + "1" * 46
    payload = get_media(
        six, "six", {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": bogus}
    )
    tags = aws_tags(payload)
    assert tags == [
        {"FRAGMENT_NUMBER": bogus, "ERROR_ID": "4000", "ERROR_CODE": "FRAGMENT_NOT_FOUND"}
    ]
    assert len(numbers(get_media(six, "six", {"StartSelectorType": "EARLIEST"}))) == 6


def raw_get_media(server, body: bytes) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        server.url + "/getMedia",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), {}
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "SerializationException"),
        (b'{"StreamName": "six"}', 400, "InvalidArgumentException"),
        (
            b'{"StreamName": "six", "StartSelector": {"StartSelectorType": "LATEST"}}',
            400,
            "InvalidArgumentException",
        ),
        (
            b'{"StreamName": "six", "StartSelector": {"StartSelectorType": "FRAGMENT_NUMBER"}}',
            400,
            "InvalidArgumentException",
        ),
        (
            b'{"StreamName": "six", "StartSelector": {"StartSelectorType": "FRAGMENT_NUMBER",'
            b' "AfterFragmentNumber": "12ab"}}',
            400,
            "InvalidArgumentException",
        ),
        (
            b'{"StreamName": "six", "StartSelector": {"StartSelectorType": "SERVER_TIMESTAMP",'
            b' "StartTimestamp": "yesterday"}}',
            400,
            "InvalidArgumentException",
        ),
        (
            b'{"StreamName": "nope", "StartSelector": {"StartSelectorType": "NOW"}}',
            404,
            "ResourceNotFoundException",
        ),
    ],
)
def test_bad_requests_get_aws_errors(six, body: bytes, status: int, code: str) -> None:
    got_status, headers, error = raw_get_media(six, body)
    assert (got_status, headers["x-amzn-ErrorType"]) == (status, code)
    assert headers["x-amzn-RequestId"] and error["Message"]


def test_boto3_raises_typed_errors(six) -> None:
    media = six.client("kinesis-video-media")
    with pytest.raises(media.exceptions.ResourceNotFoundException) as info:
        media.get_media(StreamName="missing", StartSelector={"StartSelectorType": "NOW"})
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert info.value.response["ResponseMetadata"]["RequestId"]


@pytest.mark.serial  # calls per wall-clock second
def test_quotas_connections_and_calls_per_second(make_server, av_clip) -> None:
    server = make_server("--getmedia-idle-timeout-s", "5")
    create_stream(server, "q")
    media = server.client("kinesis-video-media")
    open_ = [
        media.get_media(StreamName="q", StartSelector={"StartSelectorType": "NOW"})
        for _ in range(3)
    ]
    with pytest.raises(media.exceptions.ConnectionLimitExceededException):
        media.get_media(StreamName="q", StartSelector={"StartSelectorType": "NOW"})
    for response in open_:
        response["Payload"].close()
    time.sleep(1.1)
    errors = []
    for _ in range(6):
        try:
            media.get_media(StreamName="q", StartSelector={"StartSelectorType": "EARLIEST"})[
                "Payload"
            ].close()
        except media.exceptions.ClientLimitExceededException as exc:
            errors.append(exc)
        except media.exceptions.ConnectionLimitExceededException:
            pass
    assert errors and errors[0].response["Error"]["Code"] == "ClientLimitExceededException"


def test_readers_end_cleanly_after_the_idle_period(make_server) -> None:
    server = make_server("--getmedia-idle-timeout-s", "0.5")
    create_stream(server, "idle")
    started = time.monotonic()
    assert get_media(server, "idle", {"StartSelectorType": "NOW"}) == b""
    assert 0.4 < time.monotonic() - started < 5


def test_stream_deletion_ends_live_readers(make_server) -> None:
    server = make_server("--getmedia-idle-timeout-s", "20")
    arn = create_stream(server, "gone")
    reader = LiveReader(server, "gone", {"StartSelectorType": "NOW"})
    server.client().delete_stream(StreamARN=arn)
    reader.join(5)
    assert not reader.is_alive()
