"""G.711 audio where AWS plays it: GetClip takes H.264 + A-law, DASH takes A-law or mu-law,
HLS (fMP4 or MPEG-TS) takes neither (spec archived-media §2.4, §2.6, §2.8).

ffmpeg writes ``pcm_alaw`` / ``pcm_mulaw`` in Matroska as ``A_MS/ACM`` with a
WAVEFORMATEX, as KVS producers do; the server's MP4 carries them in QuickTime's
``alaw`` / ``ulaw`` sample entries, one Matroska block per sample.
"""

from __future__ import annotations

import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from openkvs.wire.mkv.elements import TrackEntry
from openkvs.wire.mkv.frames import read_header
from openkvs.wire.mp4.codecs import ALAW, NO_G711, ULAW, CodecError, codec_of, playable
from openkvs.wire.mp4.fragmented import init_segment
from tests import test_archived_media as archived_media
from tests.archive import Loaded, fetch, ffmpeg_variant, load, packets, relative
from tests.conftest import ServerProcess
from tests.test_archived_media import H264, code, hls_url

LAWS = {ALAW: ("pcm_alaw", 6), ULAW: ("pcm_mulaw", 7)}  # ffmpeg encoder, wFormatTag
BOTH = frozenset({ALAW, ULAW})
archive_server = archived_media.archive_server  # its fixtures: a server of its own for this module
archived = archived_media.archived
media_dir = archived_media.media_dir


def wave(tag: int = 6, channels: int = 1, rate: int = 8000, bits: int = 8, extra: bytes = b"") -> bytes:
    """A WAVEFORMATEX, little-endian, cbSize counting ``extra``."""
    return struct.pack("<HHIIHHH", tag, channels, rate, rate * channels, channels, bits, len(extra)) + extra


def tracks_of(mkv: bytes) -> tuple[TrackEntry, ...]:
    return read_header(mkv[: mkv.index(b"\x1f\x43\xb6\x75")]).tracks  # up to the first Cluster


def g711_mkv(path: Path, law: str) -> Path:
    """4 s of H.264 + G.711 ``law`` at 8 kHz mono, one 1-second Cluster per GOP."""
    source = ffmpeg_variant(
        path, *H264, audio=True, audio_codec=("-c:a", LAWS[law][0], "-ar", "8000", "-ac", "1")
    )
    tracks = tracks_of(source.read_bytes())
    assert [t.codec_id for t in tracks] == ["V_MPEG4/ISO/AVC", "A_MS/ACM"]
    assert tracks[1].codec_private == wave(LAWS[law][1])  # what KVS's producer SDK sends too
    return source


@pytest.fixture(scope="module")
def alaw(archive_server: ServerProcess, media_dir: Path) -> Loaded:
    return load(archive_server, "g711-alaw", g711_mkv(media_dir / "alaw.mkv", ALAW))


@pytest.fixture(scope="module")
def ulaw(archive_server: ServerProcess, media_dir: Path) -> Loaded:
    return load(archive_server, "g711-ulaw", g711_mkv(media_dir / "ulaw.mkv", ULAW))


def clip_of(archived, loaded: Loaded) -> bytes:  # type: ignore[no-untyped-def]
    return archived.get_clip(
        StreamName=loaded.name,
        ClipFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()},
    )["Payload"].read()


def audio_stream(source: Path | str) -> str:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries",
         "stream=codec_name,codec_tag_string,sample_rate,channels", "-of", "csv=p=0", str(source)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    return out.stdout.strip()


def decoded_audio(source: Path) -> bytes:
    """The audio decoded to 16-bit PCM; fails on any decoder error."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(source), "-map", "0:a", "-f", "s16le", "-"],
        capture_output=True, timeout=60,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    return done.stdout


# ---- GetClip -------------------------------------------------------------------------------


def test_get_clip_carries_alaw_packet_for_packet(archived, alaw: Loaded, tmp_path: Path) -> None:
    clip = tmp_path / "alaw.mp4"
    clip.write_bytes(clip_of(archived, alaw))
    assert audio_stream(clip) == "pcm_alaw,alaw,8000,1"
    for kind in ("v", "a"):
        assert relative(packets(clip, kind)) == relative(packets(alaw.source, kind))
    assert len(packets(clip, "v")) == 100 and len(packets(clip, "a")) > 150
    pcm = decoded_audio(clip)
    assert len(pcm) == 2 * 8000 * 4  # 4 s of 8 kHz mono, every sample
    assert pcm == decoded_audio(alaw.source)


def test_get_clip_refuses_ulaw(archived, ulaw: Loaded) -> None:
    with pytest.raises(ClientError) as err:
        clip_of(archived, ulaw)
    assert code(err) == ("UnsupportedStreamMediaTypeException", 400)


def _with_codec_private(source: Path, path: Path, replacement: bytes) -> Path:
    """``source`` with the audio track's 18-byte CodecPrivate element (3-byte head) replaced
    by ``replacement``, 21 bytes as well, so no enclosing size changes."""
    data = source.read_bytes()
    element = b"\x63\xa2\x92" + tracks_of(data)[1].codec_private
    assert len(replacement) == len(element) and data.count(element) == 1
    path.write_bytes(data.replace(element, replacement))
    return path


@pytest.mark.parametrize(
    ("case", "replacement", "error"),
    [
        ("none", b"\xec\x93" + bytes(19), "MissingCodecPrivateDataException"),  # a Void instead
        ("no-channels", b"\x63\xa2\x92" + wave(channels=0), "InvalidCodecPrivateDataException"),
        ("cbsize-9", b"\x63\xa2\x92" + wave()[:16] + b"\x09\x00", "InvalidCodecPrivateDataException"),
        ("pcm", b"\x63\xa2\x92" + wave(tag=1), "UnsupportedStreamMediaTypeException"),
    ],
)
def test_get_clip_codec_private_errors(
    archive_server: ServerProcess, archived, media_dir: Path, alaw: Loaded, case: str, replacement: bytes, error: str
) -> None:
    source = _with_codec_private(alaw.source, media_dir / f"{case}.mkv", replacement)
    with pytest.raises(ClientError) as err:
        clip_of(archived, load(archive_server, f"g711-{case}", source))
    assert code(err) == (error, 400)


# ---- DASH and HLS ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["alaw", "ulaw"])
def test_dash_plays_g711(archived, request, which: str) -> None:
    loaded: Loaded = request.getfixturevalue(which)
    url = archived.get_dash_streaming_session_url(
        StreamName=loaded.name,
        PlaybackMode="ON_DEMAND",
        DASHFragmentSelector={"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": loaded.server_range()},
    )["DASHStreamingSessionURL"]
    status, body, _ = fetch(url)
    assert status == 200
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    audio = ET.fromstring(body).find(".//d:AdaptationSet[@contentType='audio']/d:Representation", ns)
    assert audio is not None
    assert (audio.get("codecs"), audio.get("audioSamplingRate")) == (which, "8000")
    assert relative(packets(url, "v")) == relative(packets(loaded.source, "v"))
    got, want = relative(packets(url, "a")), relative(packets(loaded.source, "a"))
    assert got in (want, want[:-1])  # ffmpeg's DASH demuxer drops the last audio packet
    probe = subprocess.run(["ffmpeg", "-v", "error", "-i", url, "-f", "null", "-"],
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and not probe.stderr, probe.stderr


@pytest.mark.parametrize("container", ["FRAGMENTED_MP4", "MPEG_TS"])
def test_hls_refuses_g711(archived, alaw: Loaded, container: str) -> None:
    with pytest.raises(ClientError) as err:
        hls_url(archived, alaw, ContainerFormat=container)
    assert code(err) == ("UnsupportedStreamMediaTypeException", 400)


# ---- the pure codec table and sample entry --------------------------------------------------

AVCC = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2, 0x68, 0xCE])
VIDEO = TrackEntry(1, "V_MPEG4/ISO/AVC", AVCC, 1, 640, 480)
HEVC = TrackEntry(1, "V_MPEGH/ISO/HEVC", bytes([1]) + bytes(22), 1, 640, 480)


def g711_track(cpd: bytes, **fields: int) -> TrackEntry:
    return TrackEntry(2, "A_MS/ACM", cpd, 2, **fields)


def test_g711_sample_entry_is_a_quicktime_sound_description(tmp_path: Path) -> None:
    codec = codec_of(g711_track(wave(7)), BOTH)
    assert (codec.codec, codec.sample_rate, codec.channels) == ("ulaw", 8000, 1)
    assert codec.sample_entry() == (
        struct.pack(">I4s", 36, b"ulaw")
        + bytes(6) + struct.pack(">H", 1)  # reserved, data_reference_index
        + bytes(8)  # version 0, revision, vendor
        + struct.pack(">HHHHI", 1, 16, 0, 0, 8000 << 16)  # channels, sample size, 16.16 rate
    )
    # Matroska's SamplingFrequency and Channels win over the WAVEFORMATEX, as in ffmpeg
    stereo = codec_of(g711_track(wave(6), sample_rate=16000, channels=2), BOTH)
    assert (stereo.codec, stereo.sample_rate, stereo.channels) == ("alaw", 16000, 2)
    init = tmp_path / "init.mp4"
    init.write_bytes(init_segment([stereo]))
    assert audio_stream(init) == "pcm_alaw,alaw,16000,2"


def test_g711_codec_table() -> None:
    alaw, ulaw = g711_track(wave(6)), g711_track(wave(7))
    assert [c.codec for c in playable((VIDEO, alaw), frozenset({ALAW}))] == ["avc1.64001f", "alaw"]
    assert [c.codec for c in playable((VIDEO, ulaw), BOTH)] == ["avc1.64001f", "ulaw"]
    refused = [
        ((VIDEO, ulaw), frozenset({ALAW})),  # GetClip: A-law only
        ((VIDEO, alaw), NO_G711),  # HLS and MPEG-TS: no G.711
        ((VIDEO, g711_track(b"")), NO_G711),  # ... whatever its codec private data
        ((alaw,), BOTH),  # no G.711 alone
        ((HEVC, alaw), BOTH),  # nor beside H.265
        ((VIDEO, g711_track(wave(0x55))), BOTH),  # MP3 in A_MS/ACM
    ]
    for tracks, laws in refused:
        with pytest.raises(CodecError) as raised:
            playable(tracks, laws)
        assert raised.value.kind == "unsupported", (tracks, laws)
    for cpd, kind in (
        (b"", "missing"),
        (wave()[:15], "invalid"),  # shorter than a WAVEFORMAT with wBitsPerSample
        (wave(channels=0), "invalid"),
        (wave(rate=0), "invalid"),
        (wave(rate=96000), "invalid"),  # more than MP4's 16.16 rate carries
        (wave()[:16] + b"\x02\x00\x01", "invalid"),  # cbSize 2, one byte follows
    ):
        with pytest.raises(CodecError) as raised:
            playable((VIDEO, g711_track(cpd)), BOTH)
        assert raised.value.kind == kind, cpd.hex()
    # what KVS's producer SDK writes: wBitsPerSample 0, nAvgBytesPerSec an eighth of the rate
    sdk = struct.pack("<HHIIH", 6, 1, 8000, 1000, 1) + bytes(4)
    assert playable((VIDEO, g711_track(sdk)), BOTH)[1].codec == "alaw"
    assert playable((VIDEO, g711_track(wave(bits=0)[:16])), BOTH)[1].codec == "alaw"
