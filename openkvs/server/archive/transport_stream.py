"""MPEG-TS segments for HLS ``ContainerFormat=MPEG_TS`` (``getTSFragment.ts``): one KVS
fragment, every track, in one self-contained segment.

Written by hand rather than remuxed by PyAV: a segment is only PAT, PMT and the frames
cut into PES and 188-byte packets. Measured on 1-second 320x240 H.264+AAC fragments, an
``av`` remux (open, probe, mux) costs about 2 ms before any timestamp is fixed; this
takes 0.65-0.8 ms, half of it reading the Cluster's blocks. And each frame gets exactly
its stored time, where libavformat shifts and guesses timestamps (spec §4.4).

Video goes from length-prefixed NAL units (avcC/hvcC) to Annex B, each access unit
opened by an access unit delimiter and each keyframe preceded by the CodecPrivate's
parameter sets (unless it carries its own). AAC frames get ADTS headers, several to a
PES while their stored times are those of back-to-back frames (a demuxer times the
rest from the first, within 1 ms), so audio costs little more than its bitrate.

Time: a frame's PTS is ``(base_ms + offset_ms) * 90`` modulo 2**33, what a 90 kHz clock
started at the stream clock's zero reads then. Each segment is made alone, yet
consecutive segments continue one another with no reset, and the clock wraps only where
TS wraps it (every ~26.5 h of stream time; demuxers and players unwrap it). Matroska
stores PTS only, so decode times are the fragment's presentation times sorted, moved
back by the least delay that keeps every DTS at or before its PTS (none without
B-frames). Fragments of one encoder need the same delay, so DTS runs on across segments
(a fragment needing more than the one before may start up to the difference too early).
The PCR rides the first packet of each PES on the video PID (the audio PID if there is
no video), 0.7 s before that PES's DTS, as FFmpeg's VBR mode does.

Continuity counters: each elementary stream starts at 0 in every segment and its last
PES is spread over up to 15 more packets so that it ends at 15 (about 1.4 KB per stream
per segment), so any segment continues the one before without a counter break that
demuxers would flag, or read as a duplicate packet and drop. PAT and PMT, one packet
each, count from ``sequence``: consecutive segment numbers continue them too.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import cache

from openkvs.wire.mkv.frames import Frame, FrameError, cluster_frames, read_header
from openkvs.wire.mp4.codecs import AAC_SAMPLE_RATES, HEVC, Codec, CodecError, playable

PACKET = 188
PAYLOAD = PACKET - 4
WRAP = 1 << 33  # PTS, DTS and the PCR base count 90 kHz ticks modulo 2**33
TICKS_PER_MS = 90
PCR_LEAD = 63_000  # ticks; FFmpeg's default max_delay (0.7 s)
PMT_PID, VIDEO_PID, AUDIO_PID = 0x1000, 0x0100, 0x0101
PROGRAM = 1
STREAM_H264, STREAM_H265, STREAM_ADTS = 0x1B, 0x24, 0x0F
VIDEO_STREAM_ID, AUDIO_STREAM_ID = 0xE0, 0xC0
AUDIO_PES_BYTES = 2930  # FFmpeg's default pes_payload_size
START = b"\0\0\0\1"
RANDOM_ACCESS, PCR_FLAG = 0x40, 0x10
AAC_FRAME_SAMPLES = 1024
ADTS_BYTES = 7


def ts_segment(
    header: bytes, body: bytes | tuple[bytes, ...], base_ms: int, sequence: int
) -> bytes:
    """One fragment (its producer ``header`` and stored ``body``, starting at ``base_ms`` on
    the stream clock) as a complete MPEG-TS segment; ``sequence`` is its media sequence
    number in the playlist. Raises CodecError for tracks HLS cannot carry and FrameError
    for frames that cannot be read."""
    head = read_header(header)
    codecs = playable(head.tracks)
    frames = list(cluster_frames(body, head.scale))
    video = next((c for c in codecs if c.is_video), None)
    pcr_pid = VIDEO_PID if video else AUDIO_PID
    units: list[tuple[int, int, bytes, bool]] = []
    for codec in codecs:
        mine = [f for f in frames if f.track == codec.track.number]
        units += (
            _video_units(codec, mine, base_ms)
            if codec.is_video
            else _audio_units(codec, mine, base_ms)
        )
    units.sort(key=lambda unit: (unit[0], unit[1]))

    video_type = (
        None if video is None else STREAM_H265 if video.track.codec_id in HEVC else STREAM_H264
    )
    out = [_psi(video_type, any(not c.is_video for c in codecs), sequence & 0xF)]
    packets, last = {VIDEO_PID: 0, AUDIO_PID: 0}, {}
    for i, (_, pid, pes, _) in enumerate(units):
        packets[pid] += _count(len(pes), pid == pcr_pid)
        last[pid] = i
    counters = {VIDEO_PID: 0, AUDIO_PID: 0}
    for i, (dts, pid, pes, key) in enumerate(units):
        pcr = dts - PCR_LEAD if pid == pcr_pid else None
        extra = -packets[pid] % 16 if last[pid] == i else 0
        counters[pid] = _packetize(out, pid, pes, counters[pid], pcr, key, extra)
    return b"".join(out)


# Elementary streams: (DTS in unwrapped ticks, PID, PES, keyframe) per PES.


def _video_units(
    codec: Codec, frames: list[Frame], base_ms: int
) -> list[tuple[int, int, bytes, bool]]:
    hevc = codec.track.codec_id in HEVC
    shift, mask = (1, 0x3F) if hevc else (0, 0x1F)
    aud_type, sps_type = (35, 33) if hevc else (9, 7)
    aud = START + (b"\x46\x01\x50" if hevc else b"\x09\xf0")
    params = _parameter_sets(codec.track.codec_private, hevc)
    size = codec.nal_length_size

    pts = [base_ms + f.offset_ms for f in frames]
    order = sorted(pts)
    delay = max((o - p for o, p in zip(order, pts, strict=True)), default=0)
    units = []
    for frame, p, o in zip(frames, pts, order, strict=True):
        nals = _nal_units(frame.data, size)
        types = [(nal[0] >> shift) & mask for nal in nals]
        own_aud = bool(types) and types[0] == aud_type
        parts: list[bytes | memoryview] = [START, nals[0]] if own_aud else [aud]
        if frame.keyframe and sps_type not in types:
            parts.append(params)
        for nal in nals[1:] if own_aud else nals:
            parts += (START, nal)
        es = b"".join(parts)
        dts = (o - delay) * TICKS_PER_MS
        pes = _pes_header(VIDEO_STREAM_ID, p * TICKS_PER_MS, dts, len(es)) + es
        units.append((dts, VIDEO_PID, pes, frame.keyframe))
    return units


def _nal_units(data: memoryview, size: int) -> list[memoryview]:
    nals: list[memoryview] = []
    pos, end = 0, len(data)
    while pos < end:
        length = int.from_bytes(data[pos : pos + size], "big")
        start, pos = pos + size, pos + size + length
        if length == 0 or pos > end:
            raise FrameError("a video frame is not a run of length-prefixed NAL units")
        nals.append(data[start:pos])
    return nals


def _parameter_sets(config: bytes, hevc: bool) -> bytes:
    """The NAL units an avcC or hvcC record carries, in Annex B."""
    nals: list[bytes] = []
    try:
        if hevc:
            pos = 23
            for _ in range(config[22]):
                count = int.from_bytes(config[pos + 1 : pos + 3], "big")
                pos += 3
                for _ in range(count):
                    pos = _take(config, pos, nals)
        else:
            pos = 6
            for _ in range(config[5] & 0x1F):
                pos = _take(config, pos, nals)
            pos += 1
            for _ in range(config[pos - 1]):
                pos = _take(config, pos, nals)
    except IndexError:
        raise CodecError("invalid", "The video codec private data is truncated.") from None
    return b"".join(START + nal for nal in nals)


def _take(config: bytes, pos: int, nals: list[bytes]) -> int:
    end = pos + 2 + int.from_bytes(config[pos : pos + 2], "big")
    if end > len(config):
        raise IndexError(pos)
    nals.append(config[pos + 2 : end])
    return end


def _audio_units(
    codec: Codec, frames: list[Frame], base_ms: int
) -> list[tuple[int, int, bytes, bool]]:
    adts, rate = _adts_header(codec.track.codec_private)
    step_ms = AAC_FRAME_SAMPLES * 1000 / rate
    units: list[tuple[int, int, bytes, bool]] = []
    parts: list[bytes | memoryview] = []
    first = size = count = 0

    def flush() -> None:
        es = b"".join(parts)
        pts = first * TICKS_PER_MS
        units.append((pts, AUDIO_PID, _pes_header(AUDIO_STREAM_ID, pts, pts, len(es)) + es, True))

    for frame in frames:
        length = ADTS_BYTES + len(frame.data)
        if length >= 1 << 13:
            raise FrameError("an AAC frame is too long for ADTS")
        pts = base_ms + frame.offset_ms
        if parts and (size + length > AUDIO_PES_BYTES or abs(pts - first - count * step_ms) > 1):
            flush()
            parts, size, count = [], 0, 0
        if not parts:
            first = pts
        parts += ((adts | length << 13).to_bytes(ADTS_BYTES, "big"), frame.data)
        size += length
        count += 1
    if parts:
        flush()
    return units


def _adts_header(asc: bytes) -> tuple[int, int]:
    """The fixed bits of an ADTS header for this AudioSpecificConfig, and its sampling rate."""
    bits = int.from_bytes(asc[:5].ljust(5, b"\0"), "big")
    kind, index = bits >> 35, (bits >> 31) & 0xF
    if index == 15:
        rate, channels = (bits >> 7) & 0xFFFFFF, (bits >> 3) & 0xF
        index = AAC_SAMPLE_RATES.index(rate) if rate in AAC_SAMPLE_RATES else 15
    else:
        rate, channels = (
            AAC_SAMPLE_RATES[index] if index < len(AAC_SAMPLE_RATES) else 0,
            (bits >> 27) & 0xF,
        )
    profile = 1 if kind in (5, 29) else kind - 1  # HE-AAC (SBR, PS) rides on its AAC-LC core
    if not 0 <= profile <= 3 or index >= len(AAC_SAMPLE_RATES) or channels > 7:
        raise CodecError("unsupported", "This AAC configuration cannot be carried in ADTS.")
    return 0xFFF1 << 40 | profile << 38 | index << 34 | channels << 30 | 0x7FF << 2, rate


# PES and TS packets.


def _pes_header(stream_id: int, pts: int, dts: int, size: int) -> bytes:
    if pts == dts:
        flags, stamps = 0x80, _timestamp(2, pts)
    else:
        flags, stamps = 0xC0, _timestamp(3, pts) + _timestamp(1, dts)
    length = 3 + len(stamps) + size
    length = length if length <= 0xFFFF else 0  # unbounded: allowed for video only
    return struct.pack(">3sBHBBB", b"\0\0\1", stream_id, length, 0x84, flags, len(stamps)) + stamps


def _timestamp(prefix: int, ticks: int) -> bytes:
    t = ticks % WRAP
    return struct.pack(
        ">BHH", prefix << 4 | (t >> 29) & 0x0E | 1, (t >> 14) & 0xFFFE | 1, (t << 1) & 0xFFFE | 1
    )


def _count(size: int, pcr: bool) -> int:
    """How many packets a PES of ``size`` bytes takes (the first has room for a PCR or not)."""
    return 1 + -(-max(0, size - _room(pcr)) // PAYLOAD)


def _room(pcr: bool) -> int:
    return PAYLOAD - 8 if pcr else PAYLOAD


def _packetize(
    out: list[bytes], pid: int, pes: bytes, cc: int, pcr: int | None, key: bool, extra: int
) -> int:
    """Append ``pes`` to ``out`` as TS packets on ``pid``, ``extra`` more than it needs (each
    of those carries a byte); returns the next continuity counter. A PES carrying a PCR
    marks a random access point if ``key``."""
    if pcr is None:
        flags, field = 0, b""
    else:
        flags = PCR_FLAG | (RANDOM_ACCESS if key else 0)
        field = (pcr % WRAP << 15 | 0x7E00).to_bytes(6, "big")
    after = _count(len(pes), pcr is not None) + extra - 1
    pos = min(_room(pcr is not None), len(pes) - after)
    adaptation = _adaptation(PAYLOAD - pos, flags, field)
    out.append(_head(pid, True, bool(adaptation), cc) + adaptation + pes[:pos])
    heads = _heads(pid)
    for left in range(after - 1, -1, -1):
        cc = (cc + 1) & 0xF
        size = min(PAYLOAD, len(pes) - pos - left)
        chunk = pes[pos : pos + size]
        pos += size
        if size == PAYLOAD:
            out += (heads[cc], chunk)
        else:
            out.append(_head(pid, False, True, cc) + _adaptation(PAYLOAD - size) + chunk)
    return (cc + 1) & 0xF


def _adaptation(size: int, flags: int = 0, field: bytes = b"") -> bytes:
    """An adaptation field of exactly ``size`` bytes, its length byte included."""
    if size <= 1:
        return b"\0" * size
    return bytes((size - 1, flags)) + field + b"\xff" * (size - 2 - len(field))


def _head(pid: int, unit_start: bool, adaptation: bool, cc: int) -> bytes:
    return struct.pack(">BHB", 0x47, unit_start << 14 | pid, (0x30 if adaptation else 0x10) | cc)


@cache
def _heads(pid: int) -> tuple[bytes, ...]:
    """The header of a payload-only continuation packet, by continuity counter."""
    return tuple(_head(pid, False, False, cc) for cc in range(16))


# Program tables.


@cache
def _psi(video_type: int | None, audio: bool, cc: int) -> bytes:
    """PAT and PMT packets for a program of this video stream type and optional audio."""
    pat = _section(0x00, 1, struct.pack(">HH", PROGRAM, 0xE000 | PMT_PID))
    streams: Sequence[tuple[int, int]] = [(video_type, VIDEO_PID)] if video_type is not None else []
    if audio:
        streams = [*streams, (STREAM_ADTS, AUDIO_PID)]
    pmt = _section(
        0x02,
        PROGRAM,
        struct.pack(">HH", 0xE000 | streams[0][1], 0xF000),
        *(struct.pack(">BHH", kind, 0xE000 | pid, 0xF000) for kind, pid in streams),
    )
    return b"".join(
        (_head(pid, True, False, cc) + b"\0" + section).ljust(PACKET, b"\xff")
        for pid, section in ((0x0000, pat), (PMT_PID, pmt))
    )


def _section(table_id: int, table_id_extension: int, *body: bytes) -> bytes:
    payload = b"".join(body)
    section = struct.pack(
        ">BHHBBB", table_id, 0xB000 | len(payload) + 9, table_id_extension, 0xC1, 0, 0
    )
    section += payload
    return section + _crc32_mpeg2(section).to_bytes(4, "big")


def _crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1 ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc
