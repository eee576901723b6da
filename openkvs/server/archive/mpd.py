"""The DASH manifest of a session (pure: entries in, XML out).

Segments are a ``SegmentTemplate`` over a ``SegmentTimeline`` addressed by
``$Number$``, the session's own numbering of what it shows (KVS fragment
numbers are not consecutive), the form every DASH client reads; ``kvs:fn`` and
``kvs:ts`` on each ``S`` carry the fragment number and start when asked.
Times are producer milliseconds, as in the media segments' ``tfdt``; a live
manifest sets ``availabilityStartTime`` to the epoch so that media time is wall
time, which is what producer timestamps are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from openkvs.server.archive.m3u8 import iso_ms
from openkvs.server.archive.timeline import Entry
from openkvs.wire.mp4.codecs import Codec

KVS_NAMESPACE = "https://kinesisvideo.amazonaws.com/ns/dash"
SLACK_MS = 30_000
"""Added to a live window's depth: a producer clock a little behind keeps its segments in it."""


@dataclass(frozen=True, slots=True)
class Manifest:
    entries: Sequence[Entry]
    codecs: Sequence[Codec]
    bandwidth: int
    init_uri: Callable[[int], str]
    """The init segment of a track number."""
    media_template: Callable[[int], str]
    """The media segment URI template of a track number (with ``$Number$``)."""
    live: bool
    now_ms: int
    show_number: bool = False
    date_of: Callable[[Entry], int] | None = None
    origin_ms: int = 0
    """Live: the wall-clock time (epoch ms) of media time 0. Producer time is wall-clock
    time, so LIVE uses the epoch; LIVE_REPLAY moves it so the replay is live now."""

    def render(self) -> str:
        entries = self.entries
        first_t = entries[0].meta.producer_ms if entries else 0
        end_t = entries[-1].meta.producer_ms + entries[-1].meta.duration_ms if entries else 0
        total_ms = max(end_t - first_t, 1)
        out = ['<?xml version="1.0" encoding="UTF-8"?>']
        mpd = (
            f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:kvs="{KVS_NAMESPACE}" '
            'profiles="urn:mpeg:dash:profile:isoff-live:2011" minBufferTime="PT1S" '
        )
        if self.live:
            target = max((e.meta.duration_ms for e in entries), default=1000)
            mpd += (
                f'type="dynamic" availabilityStartTime="{iso_ms(self.origin_ms)}" '
                f'publishTime="{iso_ms(self.now_ms)}" minimumUpdatePeriod="{_duration(target)}" '
                f'timeShiftBufferDepth="{_duration(total_ms + SLACK_MS)}" '
                f'suggestedPresentationDelay="{_duration(target * 2)}">'
            )
            offset = 0
        else:
            mpd += f'type="static" mediaPresentationDuration="{_duration(total_ms)}">'
            offset = first_t
        out += [mpd, '<Period id="0" start="PT0S">']
        for codec in self.codecs:
            out += self._adaptation(codec, offset)
        out += ["</Period>", "</MPD>"]
        return "\n".join(out) + "\n"

    def _adaptation(self, codec: Codec, offset: int) -> list[str]:
        track = codec.track
        kind = "video" if codec.is_video else "audio"
        representation = (
            f'<Representation id="{track.number}" codecs="{codec.codec}" '
            f'bandwidth="{max(self.bandwidth, 1)}"'
        )
        if codec.is_video and track.width and track.height:
            representation += f' width="{track.width}" height="{track.height}"'
        elif not codec.is_video:
            representation += f' audioSamplingRate="{codec.sample_rate}"'
        lines = [
            f'<AdaptationSet contentType="{kind}" mimeType="{kind}/mp4" segmentAlignment="true" '
            'startWithSAP="1">',
            representation + ">",
            f'<SegmentTemplate timescale="1000" presentationTimeOffset="{offset}" '
            f'startNumber="{self.entries[0].index if self.entries else 0}" '
            f"initialization={quoteattr(self.init_uri(track.number))} "
            f"media={quoteattr(self.media_template(track.number))}>",
            "<SegmentTimeline>",
        ]
        for entry in self.entries:
            meta = entry.meta
            s = f'<S t="{meta.producer_ms}" d="{max(meta.duration_ms, 1)}"'
            if self.show_number:
                s += f' kvs:fn="{meta.number}"'
            if self.date_of is not None:
                s += f' kvs:ts="{self.date_of(entry) / 1000:.3f}"'
            lines.append(s + "/>")
        lines.append("</SegmentTimeline>")
        return [*lines, "</SegmentTemplate>", "</Representation>", "</AdaptationSet>"]


def _duration(ms: int) -> str:
    return f"PT{ms / 1000:.3f}S"
