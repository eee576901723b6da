"""Which Matroska tracks MP4 can carry, their sample entries and RFC 6381 codec strings.

KVS packages H.264 or H.265 video (CodecPrivate avcC or hvcC, used as is) with
optional AAC audio (CodecPrivate an AudioSpecificConfig), or AAC alone; some
playback paths also take H.264 with G.711 audio (Matroska ``A_MS/ACM``, its
CodecPrivate a WAVEFORMATEX), each naming the laws it takes. The checks say, as
KVS does, which of missing, invalid or unsupported a track is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from openkvs.wire.mkv.elements import AUDIO_TRACK, VIDEO_TRACK, TrackEntry
from openkvs.wire.mp4.boxes import box, full_box

# The real Matroska ids, and the spellings AWS's documentation prints (spec §2.4).
AVC = frozenset({"V_MPEG4/ISO/AVC", "V_MPEG/ISO/AVC"})
HEVC = frozenset({"V_MPEGH/ISO/HEVC", "V_MPEG/ISO/HEVC"})
AAC = frozenset({"A_AAC"}) | {f"A_AAC/MPEG{v}/{p}" for v in (2, 4) for p in ("MAIN", "LC", "SSR")}
AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
G711 = "A_MS/ACM"
ALAW, ULAW = "alaw", "ulaw"
"""G.711's laws, named as MP4's (QuickTime's) sample entries and DASH's codecs attribute."""
NO_G711: frozenset[str] = frozenset()
WAVE_LAWS = {6: ALAW, 7: ULAW}  # WAVEFORMATEX wFormatTag -> law
WAVE_BYTES = 16
"""A WAVEFORMAT up to wBitsPerSample (cbSize may follow); what KVS's producer SDK reads."""


class CodecError(ValueError):
    """A track playback cannot package; ``kind`` is ``missing``, ``invalid`` or ``unsupported``
    (KVS's MissingCodecPrivateData, InvalidCodecPrivateData, UnsupportedStreamMediaType)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Codec:
    """A packageable track: its MP4 sample entry and what a playlist says of it."""

    track: TrackEntry
    handler: bytes  # b"vide" or b"soun"
    codec: str  # RFC 6381, for CODECS= and codecs=
    nal_length_size: int = 0  # of each NAL unit's length prefix (video)

    @property
    def is_video(self) -> bool:
        return self.handler == b"vide"

    @property
    def is_g711(self) -> bool:
        return self.codec in (ALAW, ULAW)

    @property
    def sample_rate(self) -> int:
        cpd = self.track.codec_private
        return self.track.sample_rate or (_wave(cpd)[2] if self.is_g711 else _asc_rate(cpd))

    @property
    def channels(self) -> int:
        return self.track.channels or (_wave(self.track.codec_private)[1] if self.is_g711 else 2)

    def sample_entry(self) -> bytes:
        t = self.track
        if self.is_video:
            kind, config = (b"avc1", b"avcC") if t.codec_id in AVC else (b"hvc1", b"hvcC")
            return box(
                kind,
                bytes(6) + struct.pack(">H", 1) + bytes(16),
                struct.pack(">HHIIIH", t.width, t.height, 0x480000, 0x480000, 0, 1),
                bytes(32) + struct.pack(">Hh", 0x18, -1),
                box(config, t.codec_private),
            )
        # a SoundDescription (version 0, QuickTime's and ISO's AudioSampleEntry alike); its rate
        # is 16.16: AAC rates above 65,535 Hz are written as 0 (decoders read the ASC)
        rate = self.sample_rate if self.sample_rate <= 0xFFFF else 0
        return box(
            self.codec.encode() if self.is_g711 else b"mp4a",
            bytes(6) + struct.pack(">H", 1) + bytes(8),
            struct.pack(">HHHHI", self.channels, 16, 0, 0, rate << 16),
            b"" if self.is_g711 else _esds(t.number, t.codec_private),
        )


def codec_of(track: TrackEntry, g711: frozenset[str] = NO_G711) -> Codec:
    """The track as MP4 carries it, or CodecError saying why it cannot be. ``g711``: the
    laws of G.711 the caller's playback takes (none: ``A_MS/ACM`` is unsupported)."""
    cpd = track.codec_private
    if not 0 < track.number <= 0xFFFF or max(track.width, track.height) > 0xFFFF:
        raise CodecError(
            "invalid", f"Track {track.number} has a number or picture size MP4 cannot carry."
        )
    if track.codec_id in AVC | HEVC:
        if not cpd:
            raise CodecError("missing", f"Track {track.number} has no codec private data.")
        hevc = track.codec_id in HEVC
        if cpd[0] != 1 or len(cpd) < (23 if hevc else 7):
            raise CodecError(
                "invalid",
                f"Track {track.number}'s codec private data is not an "
                f"{'hvcC' if hevc else 'avcC'} record.",
            )
        length_size = (cpd[21 if hevc else 4] & 3) + 1
        return Codec(track, b"vide", _hevc_string(cpd) if hevc else _avc_string(cpd), length_size)
    if track.codec_id in AAC:
        if not cpd:
            raise CodecError("missing", f"Track {track.number} has no codec private data.")
        if len(cpd) < 2 or not 1 <= cpd[0] >> 3 <= 30 or not _asc_rate(cpd):
            raise CodecError(
                "invalid", f"Track {track.number}'s codec private data is not an AAC config."
            )
        return Codec(track, b"soun", f"mp4a.40.{cpd[0] >> 3}")
    if track.codec_id == G711 and g711:
        law = _g711_law(track)
        if law not in g711:
            raise CodecError(
                "unsupported", f"Track {track.number}'s G.711 {law} is not supported here."
            )
        return Codec(track, b"soun", law)
    raise CodecError(
        "unsupported",
        f"Track {track.number}'s codec {track.codec_id or '(none)'} is not supported: "
        "playback takes H.264 or H.265 video and AAC audio.",
    )


def playable(tracks: tuple[TrackEntry, ...], g711: frozenset[str] = NO_G711) -> list[Codec]:
    """The tracks of a fragment as playback packages them: H.264/H.265 video as track 1
    with optional AAC, or AAC alone; and H.264 with G.711 audio in the laws ``g711``
    names (``ALAW``, ``ULAW``; none by default). A CodecError otherwise."""
    if not tracks:
        raise CodecError("missing", "The fragment declares no tracks.")
    codecs = [codec_of(t, g711) for t in tracks]
    kinds = [c.is_video for c in codecs]
    if kinds not in ([True], [True, False], [False]):
        raise CodecError(
            "unsupported",
            "Playback takes one video track with at most one audio track, or one audio track.",
        )
    if any(c.is_g711 for c in codecs) and codecs[0].track.codec_id not in AVC:
        raise CodecError("unsupported", "G.711 audio plays only beside H.264 video.")
    if any(t.track_type not in (0, VIDEO_TRACK if c.is_video else AUDIO_TRACK) for t, c in zip(tracks, codecs, strict=True)):
        raise CodecError("unsupported", "A track's type does not match its codec.")
    return codecs


def _avc_string(avcc: bytes) -> str:
    return f"avc1.{avcc[1]:02x}{avcc[2]:02x}{avcc[3]:02x}"


def _hevc_string(hvcc: bytes) -> str:
    space, tier, profile = hvcc[1] >> 6, (hvcc[1] >> 5) & 1, hvcc[1] & 0x1F
    compat = int.from_bytes(hvcc[2:6], "big")
    reversed_compat = int(f"{compat:032b}"[::-1], 2)
    constraints = hvcc[6:12].rstrip(b"\0")
    text = f"hvc1.{'' if not space else 'ABC'[space - 1]}{profile}.{reversed_compat:X}"
    text += f".{'H' if tier else 'L'}{hvcc[12]}"
    return text + "".join(f".{b:X}" for b in constraints)


def _asc_rate(asc: bytes) -> int:
    """The sampling rate an AudioSpecificConfig names (0 if it names none)."""
    if len(asc) < 2:
        return 0
    index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7)
    if index < len(AAC_SAMPLE_RATES):
        return AAC_SAMPLE_RATES[index]
    if index == 15 and len(asc) >= 5:
        return (int.from_bytes(asc[1:5], "big") >> 7) & 0xFFFFFF
    return 0


def _wave(cpd: bytes) -> tuple[int, int, int]:
    """wFormatTag, nChannels and nSamplesPerSec of a WAVEFORMATEX (little-endian)."""
    tag, channels, rate = struct.unpack_from("<HHI", cpd)
    return tag, channels, rate


def _g711_law(track: TrackEntry) -> str:
    """The law of an ``A_MS/ACM`` track, from its WAVEFORMATEX. Only the fields MP4 needs are
    checked: KVS's producer SDK writes nAvgBytesPerSec, nBlockAlign and wBitsPerSample
    loosely (bits 0, bytes per second an eighth of the rate)."""
    cpd = track.codec_private
    if not cpd:
        raise CodecError("missing", f"Track {track.number} has no codec private data.")
    extra = len(cpd) - WAVE_BYTES - 2  # after cbSize, which must not claim more than is there
    if len(cpd) < WAVE_BYTES or (extra >= 0 and int.from_bytes(cpd[16:18], "little") > extra):
        raise CodecError(
            "invalid", f"Track {track.number}'s codec private data is not a WAVEFORMATEX."
        )
    tag, channels, rate = _wave(cpd)
    if tag not in WAVE_LAWS:
        raise CodecError(
            "unsupported",
            f"Track {track.number}'s wave format 0x{tag:04x} is not G.711 (6 A-law, 7 mu-law).",
        )
    if not channels or not 0 < rate <= 0xFFFF:
        raise CodecError(
            "invalid",
            f"Track {track.number}'s WAVEFORMATEX says {channels} channels at {rate} Hz.",
        )
    return WAVE_LAWS[tag]


def _descriptor(tag: int, payload: bytes) -> bytes:
    size = len(payload)
    return bytes([tag, 0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F, size & 0x7F]) + payload


def _esds(track_id: int, asc: bytes) -> bytes:
    config = _descriptor(4, bytes([0x40, 0x15]) + bytes(11) + _descriptor(5, asc))
    es = _descriptor(3, struct.pack(">HB", track_id, 0) + config + _descriptor(6, b"\x02"))
    return full_box(b"esds", 0, 0, es)
