"""Archived media from stored fragments of real H.264: GetClip MB/s and GetImages images/s.

    .venv/bin/python bench/archive.py [--smoke] [--fragments 90] [--seconds 20] [--rounds 3]

The media is made once per run by ffmpeg (1-second GOPs, one Cluster each) and sent
through PutMedia with RELATIVE timecodes, so the server cuts and stores the fragments
itself; the calls are the real boto3 ``kinesis-video-archived-media`` client's, rate
limits off. Each figure stands beside the same work done on a local file of the same
media, in the same run:

* GetClip (``clip``): ``--fragments`` 1-second fragments of 1280x720 H.264 (~1 MB each)
  + AAC, one ``get_clip`` of them all (within the 200-fragment / 100 MB limits), the
  payload read to its end; MB/s of clip received, best of ``--rounds``. Baseline:
  ``ffmpeg -c copy -f mp4`` of the same MKV file to the same disk, MB/s of input.
* GetImages (``images``): ``--seconds`` of 640x480 H.264, JPEG every 200 ms, the
  paginator's pages of 25; images/s of the first pass and of a second pass over the
  same range (the server keeps a few fragments' decoders). Baseline: PyAV in this
  process decoding the same MKV file and encoding, for each sample time, the last frame
  at or before it with mjpeg at the same quality (best of two runs).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MB, Row, Settings, openkvs_server, request_json, standalone
from tests.producer import put_media

OPTIONS = {"fragments": 90, "seconds": 20, "rounds": 3}
START_S = 1_700_000_000.0
"""x-amzn-producer-start-timestamp of every stream: producer time of the media's start."""
ARCHIVED = "kinesis-video-archived-media"
INTERVAL_MS = 200
PAGE = 25
JPEG_QUALITY = 80  # GetImages' default


# ---- shared: clients, media, ingest --------------------------------------------------------


def aws_client(url: str, service: str = ARCHIVED) -> Any:
    """A real boto3 client of ``service`` on ``url`` (any keys: the server runs in dev mode)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-west-2",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}, read_timeout=300),
    )


def encode(path: Path, seconds: int, size: str, *video: str, audio: bool) -> Path:
    """``seconds`` of ffmpeg's testsrc2 at 25 fps in 1-second GOPs, one Cluster per GOP."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", *video]
    cmd += ["-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "128k"]
    # A Cluster is cut at each keyframe (ffmpeg's rule once a Cluster passes 4 KB); the
    # limits only keep ffmpeg from cutting one GOP in two.
    cmd += ["-cluster_size_limit", "8M", "-cluster_time_limit", "1100", "-f", "matroska"]
    subprocess.run([*cmd, str(path)], check=True)
    return path


def ingest(url: str, name: str, media: Path, count: int) -> None:
    """Create ``name`` and PutMedia ``media`` into it (RELATIVE timecodes from START_S);
    check that it became ``count`` stored fragments."""
    asyncio.run(request_json(url, "createStream", {"StreamName": name, "DataRetentionInHours": 24}))
    result = asyncio.run(
        put_media(
            url,
            name,
            media.read_bytes(),
            timecode_type="RELATIVE",
            start_timestamp=f"{START_S:.3f}",
            piece=256 * 1024,
        )
    )
    persisted = result.events("PERSISTED")
    if result.status != 200 or len(persisted) != count:
        errors = result.events("ERROR")
        raise RuntimeError(f"{name}: {len(persisted)} of {count} fragments stored: {errors}")


def producer_range(first_s: float, last_s: float) -> dict[str, float]:
    return {"StartTimestamp": START_S + first_s, "EndTimestamp": START_S + last_s}


# ---- GetClip -------------------------------------------------------------------------------


def clip_once(client: Any, name: str, seconds: int) -> tuple[int, float, float]:
    """(payload bytes, seconds to its last byte, seconds to its first byte) of one get_clip."""
    started = time.perf_counter()
    response = client.get_clip(
        StreamName=name,
        ClipFragmentSelector={
            "FragmentSelectorType": "PRODUCER_TIMESTAMP",
            "TimestampRange": producer_range(0, seconds + 1),
        },
    )
    first, total = None, 0
    for chunk in response["Payload"].iter_chunks(MB):
        first = first or time.perf_counter()
        total += len(chunk)
    done = time.perf_counter()
    return total, done - started, (first or done) - started


def ffmpeg_copy(source: Path, out: Path) -> float:
    """Seconds for ffmpeg to remux ``source`` (MKV) to an MP4 file without re-encoding."""
    started = time.perf_counter()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", "-f", "mp4", str(out)],
        check=True,
    )
    return time.perf_counter() - started


def run_clip(settings: Settings) -> list[Row]:
    options = {**OPTIONS, **settings.options}
    count = 3 if settings.smoke else options["fragments"]
    rounds = 1 if settings.smoke else options["rounds"]
    started = time.perf_counter()
    # ~8 Mbit/s of video: testsrc2 at 1280x720, fixed quantizer 16.
    media = encode(settings.work / "clip.mkv", count, "1280x720", "-qp", "16", audio=True)
    size = media.stat().st_size
    print(f"  encoded {count} s, {size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    ours, base, first = [], [], []
    with openkvs_server(settings.work / "data", "--no-rate-limits") as server:
        ingest(server.url, "clip", media, count)
        client = aws_client(server.url)
        for r in range(rounds):  # alternate who goes first
            if r % 2:
                base.append(size / 1e6 / ffmpeg_copy(media, settings.work / "copy.mp4"))
            got, elapsed, ttfb = clip_once(client, "clip", count)
            ours.append(got / 1e6 / elapsed)
            first.append(ttfb)
            if not r % 2:
                base.append(size / 1e6 / ffmpeg_copy(media, settings.work / "copy.mp4"))
    print(
        f"  clip {got / 1e6:.1f} MB (source {size / 1e6:.1f} MB); first byte after {min(first):.2f} s"
    )
    return [
        Row(
            f"GetClip, {count} x ~1 MB H.264+AAC fragments ({got / 1e6:.0f} MB clip)",
            max(ours),
            max(base),
            "MB/s",
            quota="≤ 200 fragments / 100 MB per clip",
            baseline_name="ffmpeg -c copy MKV→MP4 file",
        )
    ]


# ---- GetImages -----------------------------------------------------------------------------


def images_pass(client: Any, name: str, seconds: int) -> tuple[int, float]:
    """(images made, seconds) of one paginated get_images over ``seconds`` of media."""
    paginator = client.get_paginator("get_images")
    started = time.perf_counter()
    made = 0
    for page in paginator.paginate(
        StreamName=name,
        ImageSelectorType="PRODUCER_TIMESTAMP",
        **producer_range(0, (seconds * 1000 - INTERVAL_MS) / 1000),
        SamplingInterval=INTERVAL_MS,
        Format="JPEG",
        PaginationConfig={"PageSize": PAGE},
    ):
        made += sum("ImageContent" in image for image in page["Images"])
    return made, time.perf_counter() - started


def pyav_images(path: Path, offsets_ms: list[int]) -> tuple[int, float]:
    """(images, seconds): decode ``path`` and JPEG the last frame at or before each offset."""
    import av

    from openkvs.server.archive.imaging import jpeg_qscale

    qscale = str(jpeg_qscale(JPEG_QUALITY))

    def jpeg(frame: Any) -> bytes:
        image = frame.reformat(format="yuvj420p")
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = image.width, image.height, "yuvj420p"
        encoder.time_base = Fraction(1, 1)
        encoder.options = {"qmin": qscale, "qmax": qscale}
        return b"".join(bytes(p) for p in [*encoder.encode(image), *encoder.encode(None)])

    started = time.perf_counter()
    made, k, previous, origin = 0, 0, None, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        base = stream.time_base or Fraction(1, 1000)
        for frame in container.decode(stream):
            pts = frame.pts or 0
            origin = pts if origin is None else origin
            at_ms = (pts - origin) * base * 1000
            while k < len(offsets_ms) and offsets_ms[k] < at_ms:
                if previous is not None:
                    jpeg(previous)
                    made += 1
                k += 1
            if k == len(offsets_ms):
                break
            previous = frame
        while k < len(offsets_ms) and previous is not None:
            jpeg(previous)
            made += 1
            k += 1
    return made, time.perf_counter() - started


def run_images(settings: Settings) -> list[Row]:
    options = {**OPTIONS, **settings.options}
    seconds = 2 if settings.smoke else options["seconds"]
    media = encode(settings.work / "images.mkv", seconds, "640x480", audio=False)
    offsets = list(range(0, seconds * 1000, INTERVAL_MS))
    with openkvs_server(settings.work / "data", "--no-rate-limits") as server:
        ingest(server.url, "images", media, seconds)
        ingest(server.url, "warmup", media, seconds)
        client = aws_client(server.url)
        images_pass(client, "warmup", 1)  # the server loads PyAV on its first GetImages
        ours = [images_pass(client, "images", seconds) for _ in range(2)]
    base = [pyav_images(media, offsets) for _ in range(2)]
    for made, _ in ours + base:
        if made != len(offsets):
            print(f"  warning: {made} images of {len(offsets)} sample times")
    best = max(made / elapsed for made, elapsed in base)  # no cache: the same work twice
    return [
        Row(
            f"GetImages JPEG every 200 ms, {seconds} s of 640x480 H.264, {what}",
            made / elapsed,
            best,
            "images/s",
            baseline_name="PyAV decode + mjpeg of the MKV file",
        )
        for what, (made, elapsed) in zip(
            ("first pass", "second pass, same range"), ours, strict=True
        )
    ]


def run(settings: Settings) -> list[Row]:
    rows = []
    for name, bench in (("clip", run_clip), ("images", run_images)):
        work = settings.work / name
        work.mkdir(parents=True, exist_ok=True)
        rows += bench(Settings(work, settings.smoke, settings.profile, settings.options))
    return rows


if __name__ == "__main__":
    standalone(run, __doc__, OPTIONS)
