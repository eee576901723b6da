"""Archived media end to end: the real boto3 client, a real server, ffmpeg media, ffprobe.

One server holds streams of H.264 + AAC, H.264 with B-frames, H.265 and the C
producer SDK's capture; each test reads them back through another operation.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.archive import (
    PRODUCER_START_S,
    Loaded,
    fetch,
    ffmpeg_variant,
    load,
    packets,
    relative,
)
from tests.conftest import ServerProcess, fixture_path
from tests.kvs import chunks, create_stream
from tests.layout import aws_tags
from tests.media import cluster, ebml_header, simple_block, synthetic_mkv

H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"]
BFRAMES = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"]
HEVC = ["-c:v", "libx265", "-x265-params", "keyint=25:min-keyint=25:scenecut=0:log-level=error", "-tag:v", "hvc1"]


@pytest.fixture(scope="module")
def archive_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # the per-stream call rates are tested in test_archive_access; here calls follow fast
    extra = ["--clip-calls-per-second", "100", "--archive-calls-per-second", "1000"]
    server = ServerProcess(tmp_path_factory.mktemp("archive") / "data", extra=extra).start()
    yield server
    server.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archive-media")


@pytest.fixture(scope="module")
def av(archive_server: ServerProcess, media_dir: Path) -> Loaded:
    return load(archive_server, "av", ffmpeg_variant(media_dir / "av.mkv", *H264, audio=True))


@pytest.fixture(scope="module")
def bframes(archive_server: ServerProcess, media_dir: Path) -> Loaded:
    return load(archive_server, "bframes", ffmpeg_variant(media_dir / "bf.mkv", *BFRAMES, audio=True))


@pytest.fixture(scope="module")
def hevc(archive_server: ServerProcess, media_dir: Path) -> Loaded:
    return load(archive_server, "hevc", ffmpeg_variant(media_dir / "hevc.mkv", *HEVC))


@pytest.fixture(scope="module")
def archived(archive_server: ServerProcess):  # type: ignore[no-untyped-def]
    return archive_server.client("kinesis-video-archived-media")


def producer_range(first_s: float, last_s: float) -> dict[str, float]:
    return {"StartTimestamp": PRODUCER_START_S + first_s, "EndTimestamp": PRODUCER_START_S + last_s}


def code(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


# ---- ListFragments -----------------------------------------------------------------------


def test_list_fragments_has_every_field_and_selects_by_start(archived, av: Loaded) -> None:
    listed = archived.list_fragments(
        StreamName="av",
        FragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": av.server_range()},
    )["Fragments"]
    assert sorted(f["FragmentNumber"] for f in listed) == sorted(av.numbers)
    assert len(listed) == 4
    for fragment in listed:
        assert set(fragment) == {
            "FragmentNumber", "FragmentSizeInBytes", "ProducerTimestamp", "ServerTimestamp",
            "FragmentLengthInMilliseconds",
        }
        assert fragment["FragmentSizeInBytes"] > 1000
        assert 900 <= fragment["FragmentLengthInMilliseconds"] <= 1200
    starts = sorted(f["ProducerTimestamp"].timestamp() - PRODUCER_START_S for f in listed)
    # inclusive, compared to each fragment's start: [start of 2nd, start of 3rd] -> those two
    middle = archived.list_fragments(
        StreamName="av",
        FragmentSelector={
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": producer_range(starts[1], starts[2]),
        },
    )["Fragments"]
    assert sorted(f["ProducerTimestamp"].timestamp() - PRODUCER_START_S for f in middle) == pytest.approx(starts[1:3], abs=1e-3)
    inside = archived.list_fragments(
        StreamName="av",
        FragmentSelector={
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": producer_range(starts[1] + 0.01, starts[2] - 0.01),
        },
    )
    assert inside["Fragments"] == []  # empty, never null
    assert "NextToken" not in inside


def test_list_fragments_paginates_with_boto3_paginator(archived, av: Loaded) -> None:
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": av.server_range()}
    page = archived.list_fragments(StreamName="av", FragmentSelector=selector, MaxResults=3)
    assert len(page["Fragments"]) == 3 and page["NextToken"]
    rest = archived.list_fragments(StreamName="av", NextToken=page["NextToken"], MaxResults=3)
    assert len(rest["Fragments"]) == 1 and "NextToken" not in rest
    pages = list(
        archived.get_paginator("list_fragments").paginate(
            StreamName="av", FragmentSelector=selector, PaginationConfig={"PageSize": 1}
        )
    )
    assert len(pages) == 4
    assert sorted(f["FragmentNumber"] for p in pages for f in p["Fragments"]) == sorted(av.numbers)
    import base64

    for token in ("bm90IGEgdG9rZW4=", base64.b64encode(b"[1, 0, 1e999, 0, 0]").decode()):
        with pytest.raises(ClientError) as err:
            archived.list_fragments(StreamName="av", NextToken=token)
        assert code(err) == ("InvalidArgumentException", 400)


def test_archived_operations_refuse_unknown_streams_and_bad_ranges(archived, av: Loaded) -> None:
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": av.server_range()}
    with pytest.raises(archived.exceptions.ResourceNotFoundException):
        archived.list_fragments(StreamName="nope", FragmentSelector=selector)
    backwards = {"StartTimestamp": av.after + 10, "EndTimestamp": av.before}
    with pytest.raises(ClientError) as err:
        archived.list_fragments(
            StreamName="av",
            FragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": backwards},
        )
    assert code(err) == ("InvalidArgumentException", 400)


def test_get_data_endpoint_routes_every_archived_api_here(archive_server: ServerProcess) -> None:
    control = archive_server.client()
    create_stream(archive_server, "endpoint")
    for api in ("LIST_FRAGMENTS", "GET_MEDIA_FOR_FRAGMENT_LIST", "GET_CLIP", "GET_IMAGES",
                "GET_HLS_STREAMING_SESSION_URL", "GET_DASH_STREAMING_SESSION_URL"):
        endpoint = control.get_data_endpoint(StreamName="endpoint", APIName=api)["DataEndpoint"]
        assert endpoint == archive_server.url


# ---- GetMediaForFragmentList ---------------------------------------------------------------


def test_get_media_for_fragment_list_in_order_asked_with_missing_in_band(archived, av: Loaded) -> None:
    asked = [av.numbers[2], av.numbers[0], "91343852333181432392682062607743920146264476221"]
    response = archived.get_media_for_fragment_list(StreamName="av", Fragments=asked)
    payload = response["Payload"].read()
    tags = aws_tags(payload)
    assert [t["FRAGMENT_NUMBER"] for t in tags] == asked
    assert "ERROR_ID" not in tags[0] and "CONTINUATION_TOKEN" not in tags[0]
    assert tags[2]["ERROR_ID"] == "4000"
    assert len(chunks(payload)) == 3


# ---- GetClip -----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["av", "bframes", "hevc"])
def test_get_clip_has_the_input_frames_and_times(archived, request, which: str, tmp_path: Path) -> None:
    loaded: Loaded = request.getfixturevalue(which)
    response = archived.get_clip(
        StreamName=loaded.name,
        ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()},
    )
    assert response["ContentType"] == "video/mp4"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(response["Payload"].read())
    assert clip.read_bytes()[4:8] == b"ftyp" and b"moov" in clip.read_bytes()[:4096]
    for kind in ("v", "a"):
        assert relative(packets(clip, kind)) == relative(packets(loaded.source, kind))
    assert len(packets(clip, "v")) == 100


def test_get_clip_errors(archive_server: ServerProcess, archived, av: Loaded) -> None:
    selector = {"FragmentSelectorType": "PRODUCER_TIMESTAMP", "TimestampRange": producer_range(1000, 1010)}
    with pytest.raises(ClientError) as err:
        archived.get_clip(StreamName="av", ClipFragmentSelector=selector)
    assert code(err) == ("ResourceNotFoundException", 404)
    create_stream(archive_server, "kept-nothing", retention=0)
    with pytest.raises(ClientError) as err:
        archived.get_clip(
            StreamName="kept-nothing",
            ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": av.server_range()},
        )
    assert code(err) == ("NoDataRetentionException", 400)


def _track(codec: str, private: bytes | None) -> bytes:
    from openkvs.wire.mkv import ebml

    fields = ebml.uint_element(ebml.TRACK_NUMBER, 1) + ebml.uint_element(ebml.TRACK_TYPE, 1)
    fields += ebml.element(ebml.CODEC_ID, codec.encode())
    if private is not None:
        fields += ebml.element(ebml.CODEC_PRIVATE, private)
    return ebml.element(ebml.TRACK_ENTRY, fields)


def _synthetic(track: bytes, frame: bytes) -> bytes:
    from openkvs.wire.mkv import ebml

    body = synthetic_mkv([cluster(0, [simple_block(1, 0, frame)]), cluster(1000, [simple_block(1, 0, frame)])])
    default = ebml.element(ebml.TRACKS, _track("V_MPEG4/ISO/AVC", None))
    assert default in body
    return body.replace(default, ebml.element(ebml.TRACKS, track))


AVCC = bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 4, 0x67, 0x42, 0xC0, 0x1E, 1, 0, 2, 0x68, 0xCE])


@pytest.mark.parametrize(
    ("track", "frame", "error"),
    [
        (_track("V_MPEG4/ISO/AVC", None), b"\0\0\0\1e", "MissingCodecPrivateDataException"),
        (_track("V_MPEG4/ISO/AVC", b"\x09junk"), b"\0\0\0\1e", "InvalidCodecPrivateDataException"),
        (_track("V_VP8", None), b"frame", "UnsupportedStreamMediaTypeException"),
        (_track("V_MPEG4/ISO/AVC", AVCC), b"\0\0\0\1\x65\x88\0\0\0\1", "InvalidMediaFrameException"),
    ],
)
def test_get_clip_codec_errors(archive_server: ServerProcess, archived, track: bytes, frame: bytes, error: str) -> None:
    from tests.kvs import put

    name = f"bad-{error[:12].lower()}"
    create_stream(archive_server, name)
    before = time.time()
    assert put(archive_server, name, _synthetic(track, frame)).status == 200
    assert ebml_header()
    selector = {"FragmentSelectorType": "SERVER_TIMESTAMP",
                "TimestampRange": {"StartTimestamp": before - 1, "EndTimestamp": time.time() + 1}}
    with pytest.raises(ClientError) as err:
        archived.get_clip(StreamName=name, ClipFragmentSelector=selector)
    assert code(err) == (error, 400)


# ---- HLS ---------------------------------------------------------------------------------


def hls_url(archived, loaded: Loaded, **options) -> str:  # type: ignore[no-untyped-def]
    return archived.get_hls_streaming_session_url(
        StreamName=loaded.name,
        PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()},
        **options,
    )["HLSStreamingSessionURL"]


def test_hls_playlists_have_kvs_shape(archived, av: Loaded) -> None:
    url = hls_url(archived, av, DisplayFragmentTimestamp="ALWAYS")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/hls/v1/getHLSMasterPlaylist\.m3u8\?SessionToken=[\w-]+~", url)
    status, master, headers = fetch(url)
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert headers["Access-Control-Allow-Origin"] == "*"
    text = master.decode()
    assert re.search(r'CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2",RESOLUTION=320x240,BANDWIDTH=\d+', text)
    assert "TYPE=AUDIO" in text and "TrackNumber=2" in text
    media_uri = text.strip().splitlines()[-1]
    base = url.rsplit("/", 1)[0]
    status, media, _ = fetch(f"{base}/{media_uri}")
    lines = media.decode().splitlines()
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-PLAYLIST-TYPE:VOD"]
    assert lines[-1] == "#EXT-X-ENDLIST"
    assert lines.count("#EXT-X-DISCONTINUITY") == 4  # ALWAYS, the server-timestamp default
    assert sum(line.startswith("#EXT-X-PROGRAM-DATE-TIME:") for line in lines) == 4
    assert sum(line.startswith("#EXTINF:") for line in lines) == 4
    segment = next(line for line in lines if line.startswith("getMP4MediaFragment.mp4"))
    assert re.search(r"FragmentNumber=\d+&SessionToken=.+&TrackNumber=1", segment)
    for bad in ("TrackNumber=%C2%B2", "TrackNumber=" + "9" * 40, "FragmentNumber=12x"):
        name = bad.split("=")[0]
        status, body, headers = fetch(f"{base}/{re.sub(name + '=[^&]+', bad, segment)}")
        assert status == 400 and headers["x-amzn-ErrorType"] == "InvalidArgumentException", bad


@pytest.mark.parametrize("container", ["FRAGMENTED_MP4", "MPEG_TS"])
@pytest.mark.parametrize("which", ["av", "bframes"])
def test_hls_on_demand_plays_every_frame_at_its_time(archived, request, which: str, container: str, tmp_path: Path) -> None:
    loaded: Loaded = request.getfixturevalue(which)
    url = hls_url(archived, loaded, ContainerFormat=container, DiscontinuityMode="NEVER")
    for kind in ("v", "a"):
        got, want = relative(packets(url, kind)), relative(packets(loaded.source, kind))
        assert len(got) == len(want)
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 1  # TS: 90 kHz
    copy = tmp_path / "copy.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", str(copy)], check=True, timeout=120)
    assert len(packets(copy, "v")) == 100


def test_hls_hevc(archived, hevc: Loaded) -> None:
    url = hls_url(archived, hevc)
    status, master, _ = fetch(url)
    assert 'CODECS="hvc1.' in master.decode()
    assert relative(packets(url, "v")) == relative(packets(hevc.source, "v"))


def test_hls_sessions_expire_and_the_eleventh_revokes_the_first(archived, av: Loaded) -> None:
    urls = [hls_url(archived, av, Expires=300) for _ in range(11)]
    status, body, headers = fetch(urls[0])
    assert status == 403 and headers["x-amzn-ErrorType"] == "NotAuthorizedException"
    assert b"revoked" in body
    assert fetch(urls[1])[0] == 200 and fetch(urls[10])[0] == 200
    forged = urls[1].rsplit("=", 1)[0] + "=forged~"
    assert fetch(forged)[0] == 403


def test_hls_live_needs_a_recent_fragment(archived, av: Loaded, archive_server: ServerProcess) -> None:
    create_stream(archive_server, "quiet")
    with pytest.raises(ClientError) as err:
        archived.get_hls_streaming_session_url(StreamName="quiet", PlaybackMode="LIVE")
    assert code(err) == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as err:
        archived.get_hls_streaming_session_url(
            StreamName="av", PlaybackMode="LIVE",
            HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": av.server_range()},
        )
    assert code(err) == ("InvalidArgumentException", 400)


# ---- DASH --------------------------------------------------------------------------------


def test_dash_manifest_and_media(archived, av: Loaded) -> None:
    url = archived.get_dash_streaming_session_url(
        StreamName="av",
        PlaybackMode="ON_DEMAND",
        DisplayFragmentNumber="ALWAYS",
        DisplayFragmentTimestamp="ALWAYS",
        DASHFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": av.server_range()},
    )["DASHStreamingSessionURL"]
    assert "/dash/v1/getDASHManifest.mpd?SessionToken=" in url
    status, body, headers = fetch(url)
    assert status == 200 and headers["Content-Type"].startswith("application/dash+xml")
    mpd = ET.fromstring(body)
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    assert mpd.get("type") == "static"
    timelines = mpd.findall(".//d:SegmentTimeline", ns)
    assert len(timelines) == 2  # video and audio
    s = timelines[0].findall("d:S", ns)
    kvs = "{https://kinesisvideo.amazonaws.com/ns/dash}"
    assert sorted(e.get(kvs + "fn") for e in s) == sorted(av.numbers)
    assert all(av.before - 1 <= float(e.get(kvs + "ts") or 0) <= av.after + 1 for e in s)
    assert relative(packets(url, "v")) == relative(packets(av.source, "v"))
    # ffmpeg's DASH demuxer drops the very last audio packet of a presentation
    assert relative(packets(url, "a")) == relative(packets(av.source, "a"))[:-1] or relative(
        packets(url, "a")) == relative(packets(av.source, "a"))


# ---- GetImages ---------------------------------------------------------------------------


def test_get_images_jpeg_png_pages_and_no_media(archived, av: Loaded) -> None:
    import av as pyav

    start = PRODUCER_START_S  # the first fragment starts here (the stream was sent faster
    # than real time, so server timestamps are bunched: sample by producer time)
    pages = list(
        archived.get_paginator("get_images").paginate(
            StreamName="av", ImageSelectorType="PRODUCER_TIMESTAMP",
            StartTimestamp=start - 0.5, EndTimestamp=start + 2.9, SamplingInterval=200,
            Format="JPEG", WidthPixels=160, PaginationConfig={"PageSize": 5},
        )
    )
    images = [i for p in pages for i in p["Images"]]
    assert len(pages) == 4 and len(images) == 18
    assert images[0]["Error"] == "NO_MEDIA"  # before the first fragment
    made = [i for i in images if "ImageContent" in i]
    assert len(made) == 15 and all("Error" not in i for i in made)
    import base64
    import io

    with pyav.open(io.BytesIO(base64.b64decode(made[0]["ImageContent"]))) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (160, 120)
    png = archived.get_images(  # only fragments that start in the range count (AWS's rule)
        StreamName="av", ImageSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=start,
        EndTimestamp=start + 0.4, SamplingInterval=200, Format="PNG",
    )["Images"]
    assert base64.b64decode(png[-1]["ImageContent"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_sdk_capture_lists_and_clips(archive_server: ServerProcess, archived, tmp_path: Path) -> None:
    from tests.kvs import put

    capture = fixture_path("producer-sdk/putmedia-h264-realtime.mkv").read_bytes()
    create_stream(archive_server, "sdk")
    before = time.time()
    put(archive_server, "sdk", capture, piece=8192)
    span = {"StartTimestamp": before - 1, "EndTimestamp": time.time() + 1}
    listed = archived.list_fragments(
        StreamName="sdk", FragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}
    )["Fragments"]
    assert len(listed) == 2
    clip = tmp_path / "sdk.mp4"
    clip.write_bytes(archived.get_clip(
        StreamName="sdk", ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}
    )["Payload"].read())
    assert len(packets(clip, "v")) == 90
    hls = archived.get_hls_streaming_session_url(
        StreamName="sdk", PlaybackMode="ON_DEMAND",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span},
    )["HLSStreamingSessionURL"]
    assert relative(packets(hls, "v")) == relative(packets(clip, "v"))


def test_aws_cli_lists_fragments(archive_server: ServerProcess, av: Loaded) -> None:
    import json
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "awscli", "kinesis-video-archived-media", "list-fragments",
         "--endpoint-url", archive_server.url, "--region", "us-west-2", "--stream-name", "av",
         "--fragment-selector",
         f"FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={{StartTimestamp={av.before - 1},EndTimestamp={av.after + 1}}}"],
        capture_output=True, text=True, timeout=60,
        env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["Fragments"]) == 4


def test_hls_plays_across_a_resolution_change(archive_server: ServerProcess, archived, media_dir: Path) -> None:
    from tests.kvs import put

    small = ffmpeg_variant(media_dir / "small.mkv", *H264, seconds=2)
    large = media_dir / "large.mkv"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x480:rate=25", "-t", "2",
         *H264, "-pix_fmt", "yuv420p", "-cluster_time_limit", "5000", "-f", "matroska", str(large)],
        check=True,
    )
    create_stream(archive_server, "resize")
    before = time.time()
    for start, source in ((PRODUCER_START_S, small), (PRODUCER_START_S + 2, large)):
        put(archive_server, "resize", source.read_bytes(), timecode_type="RELATIVE",
            start_timestamp=f"{start:.3f}")
    span = {"StartTimestamp": before - 1, "EndTimestamp": time.time() + 1}
    url = archived.get_hls_streaming_session_url(
        StreamName="resize", PlaybackMode="ON_DEMAND", DiscontinuityMode="NEVER",
        HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span},
    )["HLSStreamingSessionURL"]
    base = url.rsplit("/", 1)[0]
    media = fetch(f"{base}/{fetch(url)[1].decode().strip().splitlines()[-1]}")[1].decode()
    maps = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', media)
    assert [m[-1] for m in maps] == ["0", "1"]  # SequenceNumber: one init segment per CPD
    sizes = []
    for uri in maps:
        init = media_dir / "init.mp4"
        init.write_bytes(fetch(f"{base}/{uri}")[1])
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height",
                                "-of", "csv=p=0", str(init)], capture_output=True, text=True)
        sizes.append(probe.stdout.strip())
    assert sizes == ["320,240", "640,480"]
    assert len(packets(url, "v")) == 100
    clip = archived.get_clip(
        StreamName="resize",
        ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span},
    )["Payload"].read()
    path = media_dir / "resize.mp4"
    path.write_bytes(clip)
    assert len(packets(path, "v")) == 50  # a clip ends where the codec private data changes


def test_playback_needs_retention_and_packageable_codecs(archive_server: ServerProcess, archived) -> None:
    from tests.kvs import put

    create_stream(archive_server, "nothing-kept", retention=0)
    span = {"StartTimestamp": time.time() - 60, "EndTimestamp": time.time()}
    calls = {
        "hls": lambda name: archived.get_hls_streaming_session_url(
            StreamName=name, PlaybackMode="ON_DEMAND",
            HLSFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}),
        "dash": lambda name: archived.get_dash_streaming_session_url(
            StreamName=name, PlaybackMode="ON_DEMAND",
            DASHFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}),
        "images": lambda name: archived.get_images(
            StreamName=name, ImageSelectorType="SERVER_TIMESTAMP", StartTimestamp=span["StartTimestamp"],
            EndTimestamp=span["EndTimestamp"] - 1, Format="JPEG"),
    }
    for call in calls.values():
        with pytest.raises(ClientError) as err:
            call("nothing-kept")
        assert code(err) == ("NoDataRetentionException", 400)
    create_stream(archive_server, "vp8")
    before = time.time()
    put(archive_server, "vp8", _synthetic(_track("V_VP8", None), b"frame"))
    span["StartTimestamp"], span["EndTimestamp"] = before - 1, time.time() + 1
    for kind in ("hls", "dash"):
        with pytest.raises(ClientError) as err:
            calls[kind]("vp8")
        assert code(err) == ("UnsupportedStreamMediaTypeException", 400)
    with pytest.raises(ClientError) as err:
        archived.get_images(
            StreamName="nothing-kept", ImageSelectorType="SERVER_TIMESTAMP",
            StartTimestamp=span["StartTimestamp"], EndTimestamp=span["StartTimestamp"] + 301, Format="PNG")
    assert code(err) == ("NoDataRetentionException", 400)
    with pytest.raises(ClientError) as err:
        archived.get_images(
            StreamName="vp8", ImageSelectorType="SERVER_TIMESTAMP",
            StartTimestamp=span["StartTimestamp"], EndTimestamp=span["StartTimestamp"] + 301, Format="PNG")
    assert code(err) == ("InvalidArgumentException", 400)  # over 300 s
    first = archived.list_fragments(
        StreamName="vp8", FragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": span}
    )["Fragments"][0]["ServerTimestamp"]
    images = archived.get_images(  # a frame is there, but not one an image can be made of
        StreamName="vp8", ImageSelectorType="SERVER_TIMESTAMP", StartTimestamp=first,
        EndTimestamp=first, Format="PNG",
    )["Images"]
    assert [i.get("Error") for i in images] == ["MEDIA_ERROR"]
