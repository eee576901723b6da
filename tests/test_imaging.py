"""GetImages' decoding core on ffmpeg clips: the right frame, size, format and errors, and
the decoder state each fragment keeps between calls."""

from __future__ import annotations

import io
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from openkvs.server.archive.imaging import (
    MEDIA_ERROR,
    NO_MEDIA,
    FragmentMedia,
    ImageSampler,
    image_size,
    jpeg_qscale,
)
from openkvs.wire.fragmenter import FragmentDone, Fragmenter
from openkvs.wire.mkv import ebml
from openkvs.wire.mkv.frames import cluster_frames, read_header
from tests.media import cluster, ebml_header, ffmpeg_command, simple_block

FRAME_MS = 40


def fragments(path: Path) -> list[FragmentDone]:
    fragmenter = Fragmenter()
    events = fragmenter.feed(path.read_bytes(), now_ms=0) + fragmenter.feed_eof(now_ms=0)
    return [e for e in events if isinstance(e, FragmentDone)]


def media(done: FragmentDone, number: str = "", start_ms: int | None = None) -> FragmentMedia:
    start = done.producer_ms if start_ms is None else start_ms
    return FragmentMedia(number or str(done.producer_ms), start, done.header, done.parts)


def reference(path: Path) -> dict[int, np.ndarray]:
    """Every video frame of the whole clip, decoded by PyAV alone, by PTS (ms)."""
    with av.open(str(path)) as container:
        return {
            frame.pts: frame.to_ndarray(format="rgb24")
            for frame in container.decode(video=0)
            if frame.pts is not None
        }


def decoded(image: bytes | str) -> av.VideoFrame:
    assert isinstance(image, bytes), image
    with av.open(io.BytesIO(image), mode="r") as container:
        return next(container.decode(video=0))


def closest(image: bytes | str, frames: dict[int, np.ndarray]) -> tuple[int, float, float]:
    """(PTS of the reference frame the image is closest to, its distance, the next best)."""
    pixels = decoded(image).to_ndarray(format="rgb24").astype(np.int16)
    distance = {pts: float(np.abs(pixels - ref).mean()) for pts, ref in frames.items()}
    ranked = sorted(distance, key=distance.__getitem__)
    return ranked[0], distance[ranked[0]], distance[ranked[1]]


def shown_at(frames: dict[int, np.ndarray], time_ms: int) -> int:
    """The PTS of the last reference frame at or before ``time_ms``."""
    return max(pts for pts in frames if pts <= time_ms)


def first_video_ms(done: FragmentDone) -> int:
    return min(f.offset_ms for f in cluster_frames(done.body, 1_000_000) if f.track == 1)


def run_ffmpeg(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


@pytest.fixture(scope="module")
def clip(av_clip: Path) -> tuple[list[FragmentDone], dict[int, np.ndarray]]:
    return fragments(av_clip), reference(av_clip)


@pytest.fixture(scope="module")
def bframe_clip(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[FragmentDone], dict[int, np.ndarray]]:
    path = tmp_path_factory.mktemp("imaging") / "bframes.mkv"
    cmd = ffmpeg_command(str(path), seconds=3, audio=False)
    cmd[cmd.index("ultrafast")] = "veryfast"
    cmd[cmd.index("-pix_fmt") : cmd.index("-pix_fmt")] = ["-bf", "2"]
    run_ffmpeg(cmd)
    return fragments(path), reference(path)


def test_images_decode_to_the_requested_size(clip) -> None:
    done, _ = clip
    fragment = media(done[1])
    times = [fragment.start_ms + ms for ms in (100, 500, 900)]
    sampler = ImageSampler()
    for fmt in ("JPEG", "PNG"):
        for asked, size in [((None, None), (320, 240)), ((200, 100), (200, 100))]:
            images = sampler.sample(fragment, times, fmt=fmt, width=asked[0], height=asked[1])
            assert len(images) == 3
            for image in images:
                frame = decoded(image)
                assert (frame.width, frame.height) == size
                assert frame.format.name == ("rgb24" if fmt == "PNG" else "yuvj420p")


def test_one_side_keeps_the_aspect_ratio(clip) -> None:
    fragment = media(clip[0][0])
    sampler = ImageSampler()
    for width, height, size in [(160, None, (160, 120)), (None, 60, (80, 60))]:
        (image,) = sampler.sample(
            fragment, [fragment.start_ms + 100], fmt="JPEG", width=width, height=height
        )
        assert (decoded(image).width, decoded(image).height) == size
    assert image_size(1920, 1080, 101, None) == (101, 56)
    assert image_size(4, 4, None, 1) == (2, 1)


def test_the_image_is_the_last_frame_at_or_before_the_time(clip) -> None:
    done, frames = clip
    fragment = media(done[2], start_ms=90_000)
    first = first_video_ms(done[2])
    offsets = [first + ms for ms in (0, 1, 39, 40, 41, 333, 520, 950)]
    times = [fragment.start_ms + ms for ms in offsets]
    images = ImageSampler().sample(fragment, times, fmt="PNG", width=None, height=None)
    for ms, image in zip(offsets, images, strict=True):
        pts, distance, runner_up = closest(image, frames)
        assert (pts, distance) == (shown_at(frames, done[2].producer_ms + ms), 0.0)
        assert runner_up > 1


def test_jpeg_shows_the_right_frame_and_quality_changes_its_size(clip) -> None:
    done, frames = clip
    fragment = media(done[3])
    time = fragment.start_ms + 480
    sampler = ImageSampler()
    small, large = (
        sampler.sample(fragment, [time], fmt="JPEG", width=None, height=None, quality=q)[0]
        for q in (10, 95)
    )
    assert isinstance(small, bytes) and isinstance(large, bytes)
    assert small.startswith(b"\xff\xd8") and len(small) < len(large) / 2
    pts, distance, runner_up = closest(large, frames)
    assert pts == shown_at(frames, time) and distance < runner_up / 2
    assert [jpeg_qscale(q) for q in (1, 80, 100)] == [31, 7, 1]


def test_a_time_before_the_first_video_frame_is_no_media(clip) -> None:
    done = clip[0][1]
    fragment = media(done)
    first = fragment.start_ms + first_video_ms(done)
    assert first > fragment.start_ms, "the clip's Clusters start with an audio frame"
    times = [fragment.start_ms, first - 1, first]
    images = ImageSampler().sample(fragment, times, fmt="PNG", width=None, height=None)
    assert images[:2] == [NO_MEDIA, NO_MEDIA] and isinstance(images[2], bytes)


def test_audio_only_is_a_media_error(tmp_path: Path) -> None:
    path = tmp_path / "audio.mkv"
    cmd = ffmpeg_command(str(path), seconds=2)
    cmd[cmd.index("-t") : cmd.index("-t")] = ["-vn"]
    run_ffmpeg(cmd)
    (first, *_) = fragments(path)
    fragment = media(first)
    times = [fragment.start_ms, fragment.start_ms + 500]
    assert (
        ImageSampler().sample(fragment, times, fmt="JPEG", width=None, height=None)
        == [MEDIA_ERROR] * 2
    )


def test_garbage_frames_are_a_media_error_not_an_exception(clip) -> None:
    header = clip[0][0].header
    junk = bytes(range(256)) * 8
    blocks = [simple_block(1, i * FRAME_MS, junk, key=i == 0) for i in range(10)]
    fragment = FragmentMedia("junk", 5000, header, cluster(5000, blocks))
    times = [4999, 5000, 5200]
    images = ImageSampler().sample(fragment, times, fmt="JPEG", width=None, height=None)
    assert images == [NO_MEDIA, MEDIA_ERROR, MEDIA_ERROR]


def test_an_unknown_codec_or_unreadable_bytes_are_a_media_error(clip) -> None:
    track = ebml.element(
        ebml.TRACK_ENTRY,
        ebml.uint_element(ebml.TRACK_NUMBER, 1)
        + ebml.uint_element(ebml.TRACK_TYPE, 1)
        + ebml.element(ebml.CODEC_ID, b"V_NOT_A_CODEC"),
    )
    header = (
        ebml_header()
        + ebml.encode_id(ebml.SEGMENT)
        + ebml.UNKNOWN_SIZE_8
        + ebml.element(ebml.INFO, ebml.uint_element(ebml.TIMECODE_SCALE, 1_000_000))
        + ebml.element(ebml.TRACKS, track)
    )
    body = cluster(0, [simple_block(1, i * FRAME_MS, b"x" * 100) for i in range(5)])
    sampler = ImageSampler()
    unknown = FragmentMedia("unknown", 0, header, body)
    assert sampler.sample(unknown, [-1, 0, 100], fmt="PNG", width=None, height=None) == [
        NO_MEDIA,
        MEDIA_ERROR,
        MEDIA_ERROR,
    ]
    real = clip[0][0]
    cases = [(b"not mkv", b"at all", MEDIA_ERROR), (b"", b"", MEDIA_ERROR)]
    cases.append((real.header, real.body[:50], NO_MEDIA))  # a Cluster start, no frames
    for header, body, error in cases:
        fragment = FragmentMedia(f"bad{len(header)}.{len(body)}", 0, header, body)
        images = sampler.sample(fragment, [0, 10], fmt="PNG", width=None, height=None)
        assert images == [error] * 2


def test_a_truncated_fragment_still_shows_its_frames_before_the_cut(clip) -> None:
    done, frames = clip
    whole = done[1]
    half = FragmentMedia(
        "half", whole.producer_ms, whole.header, whole.body[: len(whole.body) // 2]
    )
    times = [whole.producer_ms + 100, whole.producer_ms + 900]
    images = ImageSampler().sample(half, times, fmt="PNG", width=None, height=None)
    assert closest(images[0], frames)[:2] == (shown_at(frames, times[0]), 0.0)
    last, distance, _ = closest(images[1], frames)
    assert distance == 0.0 and times[0] < last < shown_at(frames, times[1])


def test_consecutive_calls_continue_the_decoder_instead_of_starting_over(clip) -> None:
    done, frames = clip
    fragment = media(done[4])
    start = fragment.start_ms
    sampler = ImageSampler()
    first = sampler.sample(
        fragment, [start + 100, start + 300, start + 500], fmt="PNG", width=None, height=None
    )
    second = sampler.sample(
        fragment, [start + 700, start + 900], fmt="PNG", width=None, height=None
    )
    video_frames = sum(1 for f in cluster_frames(done[4].body, 1_000_000) if f.track == 1)
    assert 0 < sampler.frames_decoded <= video_frames
    for ms, image in zip((100, 300, 500, 700, 900), first + second, strict=True):
        assert closest(image, frames)[:2] == (shown_at(frames, start + ms), 0.0)

    again = sampler.frames_decoded
    sampler.sample(fragment, [start + 900], fmt="JPEG", width=None, height=None)
    assert sampler.frames_decoded == again, "the last frame is kept"
    sampler.sample(fragment, [start + 200], fmt="JPEG", width=None, height=None)
    assert again < sampler.frames_decoded <= again + 200 // FRAME_MS + 4, "earlier: a restart"


def test_an_evicted_fragment_decodes_again(clip) -> None:
    done, _ = clip
    sampler = ImageSampler(max_cached=1)
    a, b = media(done[0]), media(done[1])
    counts = []
    for fragment in (a, b, a):
        sampler.sample(fragment, [fragment.start_ms + 100], fmt="JPEG", width=None, height=None)
        counts.append(sampler.frames_decoded)
    assert counts[2] - counts[1] == counts[0] > 0


def test_a_later_keyframe_in_the_fragment_is_decoded_from(clip) -> None:
    done, frames = clip
    first, second = done[1], done[2]
    scale = read_header(first.header).scale
    blocks = [
        simple_block(f.track, f.offset_ms + shift, bytes(f.data), key=f.keyframe)
        for shift, fragment in ((0, first), (second.timecode - first.timecode, second))
        for f in cluster_frames(fragment.body, scale)
        if f.track == 1
    ]
    merged = FragmentMedia(
        "two-gops", first.producer_ms, first.header, cluster(first.timecode, blocks)
    )
    sampler = ImageSampler()
    time = first.producer_ms + 1520
    (image,) = sampler.sample(merged, [time], fmt="PNG", width=None, height=None)
    assert closest(image, frames)[:2] == (shown_at(frames, time), 0.0)
    assert sampler.frames_decoded < 25, "from the second keyframe, not the first"


def test_b_frames_decode_in_decode_order_and_show_in_presentation_order(bframe_clip) -> None:
    done, frames = bframe_clip
    fragment = media(done[1])
    scale = read_header(fragment.header).scale
    stored = [f.offset_ms for f in cluster_frames(done[1].body, scale)]
    assert stored != sorted(stored), "the clip must have B-frames"
    offsets = [0, 40, 80, 120, 170, 410, 690, 960, 999]
    sampler = ImageSampler()
    images = sampler.sample(
        fragment, [fragment.start_ms + ms for ms in offsets[:5]], fmt="PNG", width=None, height=None
    )
    images += sampler.sample(
        fragment, [fragment.start_ms + ms for ms in offsets[5:]], fmt="PNG", width=None, height=None
    )
    for ms, image in zip(offsets, images, strict=True):
        assert closest(image, frames)[:2] == (shown_at(frames, fragment.start_ms + ms), 0.0)
    assert sampler.frames_decoded <= len(stored)


def test_concurrent_calls_match_sequential_ones(clip) -> None:
    done, _ = clip
    jobs = [
        (media(done[i]), [done[i].producer_ms + ms for ms in range(first, 1000, 240)])
        for i in range(4)
        for first in (0, 120)
    ] * 2

    def run(sampler: ImageSampler, job: tuple[FragmentMedia, list[int]]) -> list[bytes | str]:
        return sampler.sample(job[0], job[1], fmt="PNG", width=96, height=None)

    sequential = [run(ImageSampler(), job) for job in jobs]
    shared = ImageSampler(max_cached=2)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda job: run(shared, job), jobs)) == sequential


def test_bad_arguments_are_refused(clip) -> None:
    fragment = media(clip[0][0])
    sampler = ImageSampler()
    for kwargs in (
        {"fmt": "GIF"},
        {"fmt": "JPEG", "quality": 0},
        {"fmt": "JPEG", "quality": 101},
        {"fmt": "PNG", "width": 0},
    ):
        with pytest.raises(ValueError):
            sampler.sample(fragment, [0], **{"width": None, "height": None, **kwargs})  # type: ignore[arg-type]
