"""The pure cores of playback, fed values: timelines, playlists, manifests, parts, MP4 boxes."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from openkvs.server.archive.m3u8 import (
    LowLatency,
    MediaPlaylist,
    PartLine,
    Variant,
    master_playlist,
)
from openkvs.server.archive.mpd import Manifest
from openkvs.server.archive.parts import cut_parts
from openkvs.server.archive.timeline import Timeline
from openkvs.server.model import FragmentMeta, FragmentNumber
from openkvs.wire.fragmenter import FragmentDone, Fragmenter
from openkvs.wire.mkv.elements import TrackEntry
from openkvs.wire.mkv.frames import Frame, cluster_frames, read_header
from openkvs.wire.mp4.codecs import CodecError, codec_of, playable
from openkvs.wire.mp4.progressive import ClipLayout
from openkvs.wire.mp4.samples import track_samples
from tests.archive import packets, relative

AVCC = bytes([1, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2, 0x68, 0xCE])
VIDEO = TrackEntry(1, "V_MPEG4/ISO/AVC", AVCC, 1, 640, 480)
AUDIO = TrackEntry(2, "A_AAC", bytes([0x12, 0x10]), 2, sample_rate=44100, channels=2)


def meta(seq: int, start_ms: int, duration_ms: int = 1000, tracks: tuple[TrackEntry, ...] = (VIDEO,)) -> FragmentMeta:
    return FragmentMeta(FragmentNumber.make(seq, start_ms), start_ms, start_ms, duration_ms, 1000, True, tracks)


def test_timeline_numbers_what_it_shows_and_never_goes_back() -> None:
    timeline = Timeline("ON_DISCONTINUITY")
    assert timeline.extend([meta(1, 0), meta(2, 1000), meta(4, 2500)]) == 3
    assert timeline.extend([meta(3, 2000), meta(4, 2500)]) == 0  # older than the newest shown
    timeline.extend([meta(5, 3500, tracks=(VIDEO, AUDIO))])
    entries = timeline.entries
    assert [e.index for e in entries] == [0, 1, 2, 3]
    assert [e.discontinuity for e in entries] == [False, False, True, True]  # a gap, new tracks
    assert [e.discontinuities for e in entries] == [0, 0, 0, 1]
    assert [e.generation for e in entries] == [0, 0, 0, 1]
    always = Timeline("ALWAYS")
    always.extend([meta(1, 0), meta(2, 1000)])
    assert [(e.discontinuity, e.discontinuities) for e in always.entries] == [(True, 0), (True, 1)]
    assert [e.index for e in always.window(1)] == [1]


def test_media_playlist_renders_discontinuity_sequence_and_low_latency_parts() -> None:
    timeline = Timeline("ALWAYS")
    timeline.extend([meta(i, i * 1000) for i in range(1, 8)])
    window = timeline.window(3)
    low = LowLatency(200, {6: [PartLine(200, "p6-0", True)]}, [PartLine(200, "g-0", True)], [], "g-1")
    text = MediaPlaylist(
        window, lambda e: f"s{e.index}", lambda e: f"init{e.generation}", ended=False, on_demand=False,
        date_of=lambda e: e.meta.producer_ms, low_latency=low,
    ).render()
    lines = text.splitlines()
    assert lines[1] == "#EXT-X-VERSION:9"
    assert "#EXT-X-MEDIA-SEQUENCE:4" in lines and "#EXT-X-DISCONTINUITY-SEQUENCE:4" in lines
    assert lines.count("#EXT-X-DISCONTINUITY") == 3
    assert "#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:05.000Z" in lines
    assert lines[-3:] == [
        "s6",
        '#EXT-X-PART:DURATION=0.200,URI="g-0",INDEPENDENT=YES',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="g-1"',
    ]
    assert lines.index('#EXT-X-PART:DURATION=0.200,URI="p6-0",INDEPENDENT=YES') < lines.index("s6")
    assert "#EXT-X-ENDLIST" not in lines and "#EXT-X-PLAYLIST-TYPE:VOD" not in lines


def test_master_playlist_names_codecs_and_the_audio_rendition() -> None:
    text = master_playlist(Variant("avc1.64001f,mp4a.40.2", 2_000_000, (640, 480), "v.m3u8", "a.m3u8"))
    assert '#EXT-X-MEDIA:AUTOSELECT=YES,FORCED=NO,TYPE=AUDIO,URI="a.m3u8"' in text
    assert '#EXT-X-STREAM-INF:CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=640x480,BANDWIDTH=2000000,AUDIO="audio"' in text
    assert text.endswith("v.m3u8\n")


def test_mpd_is_a_segment_timeline_with_kvs_attributes() -> None:
    timeline = Timeline("NEVER")
    timeline.extend([meta(1, 5000), meta(2, 6000), meta(3, 8000)])
    manifest = Manifest(
        timeline.entries, playable((VIDEO, AUDIO)), 1000, lambda t: f"init{t}",
        lambda t: f"media{t}-$Number$", live=False, now_ms=0, show_number=True,
        date_of=lambda e: e.meta.server_ms,
    )
    root = ET.fromstring(manifest.render())
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    assert root.get("type") == "static" and root.get("mediaPresentationDuration") == "PT4.000S"
    template = root.find(".//d:SegmentTemplate", ns)
    assert template is not None and template.get("presentationTimeOffset") == "5000"
    assert template.get("startNumber") == "0" and template.get("media") == "media1-$Number$"
    s = template.findall(".//d:S", ns)
    assert [(e.get("t"), e.get("d")) for e in s] == [("5000", "1000"), ("6000", "1000"), ("8000", "1000")]
    kvs = "{https://kinesisvideo.amazonaws.com/ns/dash}"
    assert s[2].get(kvs + "ts") == "8.000" and s[0].get(kvs + "fn") == str(timeline.entries[0].meta.number)
    assert len(root.findall(".//d:AdaptationSet", ns)) == 2


def frame(offset: int, key: bool = False, track: int = 1) -> Frame:
    return Frame(track, offset, key, memoryview(b"\0\0\0\1x"))


def test_parts_cut_by_running_highest_time_and_stay_put_as_frames_arrive() -> None:
    frames = [frame(0, True), *(frame(40 * i) for i in range(1, 12))]
    parts = cut_parts(frames, 1, audio=False)
    assert [len(p.frames) for p in parts] == [5, 5, 2]
    assert [p.independent for p in parts] == [True, False, False]
    assert [p.duration_ms for p in parts] == [200, 200, 80]
    assert [len(p.frames) for p in cut_parts(frames[:7], 1, audio=False)][:1] == [5]
    # B-frames: a frame shown earlier than one before it stays in that one's part
    reordered = [frame(0, True), frame(120), frame(40), frame(80), frame(240), frame(160), frame(200)]
    assert [len(p.frames) for p in cut_parts(reordered, 1, audio=False)] == [4, 3]


def test_samples_keep_composition_offsets_non_negative() -> None:
    run = track_samples(1, [frame(0, True), frame(120), frame(40), frame(80)], 1000, audio=False)
    assert run.first_pts == 1000 and run.first_dts == 960  # decoded one frame earlier
    assert run.offsets == [40, 120, 0, 0]
    assert run.durations == [40, 40, 40, 40]


def test_codecs_say_why_a_track_cannot_be_packaged() -> None:
    assert codec_of(VIDEO).codec == "avc1.64001f"
    assert codec_of(AUDIO).codec == "mp4a.40.2" and codec_of(AUDIO).sample_rate == 44100
    for track, kind in (
        (TrackEntry(1, "V_MPEG4/ISO/AVC", b"", 1), "missing"),
        (TrackEntry(1, "V_MPEG4/ISO/AVC", b"\x02abcdefgh", 1), "invalid"),
        (TrackEntry(1, "V_VP9", b"", 1), "unsupported"),
    ):
        with pytest.raises(CodecError) as raised:
            codec_of(track)
        assert raised.value.kind == kind
    with pytest.raises(CodecError):
        playable((AUDIO, VIDEO))  # video must come first


def test_clip_layout_writes_a_progressive_mp4_ffprobe_reads(av_clip: Path, tmp_path: Path) -> None:
    fragmenter = Fragmenter(relative=True, producer_start_ms=1_700_000_000_000)
    done = [e for e in fragmenter.feed(av_clip.read_bytes(), 0) + fragmenter.feed_eof(0)
            if isinstance(e, FragmentDone)]
    header = read_header(done[0].header)
    layout = ClipLayout(playable(header.tracks))
    for fragment in done:
        layout.add(fragment.producer_ms, list(cluster_frames(fragment.parts, header.scale)))
    head = layout.head()
    assert head[4:8] == b"ftyp" and head[-4:] == b"mdat"
    assert struct.unpack(">I", head[-8:-4])[0] == 8 + layout.data_size
    out = tmp_path / "clip.mp4"
    with out.open("wb") as file:
        file.write(head)
        for fragment in done:
            file.write(b"".join(layout.sample_data(list(cluster_frames(fragment.parts, header.scale)))))
    for kind in ("v", "a"):
        assert relative(packets(out, kind)) == relative(packets(av_clip, kind))
    assert len(packets(out, "v")) == 150


def test_timeline_placement_announces_what_the_next_entry_opens_with() -> None:
    timeline = Timeline("NEVER", keep=2)
    timeline.extend([meta(1, 0), meta(2, 1000), meta(3, 2000)])
    assert len(timeline.entries) == 2 and timeline.shown_ms == 3000  # trimming keeps the total
    assert timeline.placement(3000, (VIDEO,)) == (False, 0)
    assert timeline.placement(4000, (VIDEO, AUDIO)) == (False, 1)  # registered before it is whole
    timeline.extend([meta(4, 3000, tracks=(VIDEO, AUDIO))])
    assert timeline.last is not None and timeline.last.generation == 1
    timeline.mark_break()  # the announced fragment failed: its replacement is cut off from it
    assert timeline.placement(4000, (VIDEO, AUDIO)) == (True, 1)
    timeline.extend([meta(5, 4000, tracks=(VIDEO, AUDIO))])
    assert timeline.last is not None and timeline.last.discontinuity and not timeline.broken


def test_live_replay_manifest_is_live_from_when_the_session_began() -> None:
    timeline = Timeline("NEVER")
    timeline.extend([meta(1, 5000), meta(2, 6000)])
    manifest = Manifest(
        timeline.entries, playable((VIDEO,)), 1000, lambda t: "i", lambda t: "m$Number$",
        live=True, now_ms=10_000, origin_ms=4_000,
    )
    root = ET.fromstring(manifest.render())
    assert root.get("type") == "dynamic"
    assert root.get("availabilityStartTime") == "1970-01-01T00:00:04.000Z"
    assert root.get("timeShiftBufferDepth") == "PT32.000S"
