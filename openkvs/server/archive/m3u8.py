"""HLS playlists as KVS writes them (pure: entries in, text out).

Shapes follow real KVS playlists (spec archived-media §2.5): a master with one
``EXT-X-STREAM-INF`` (and an audio ``EXT-X-MEDIA`` rendition when there is an
audio track), and media playlists of version 7 with one segment per KVS
fragment. URIs are relative, so a playlist works behind any host name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from openkvs.server.archive.timeline import Entry


@dataclass(frozen=True, slots=True)
class Variant:
    """What the master playlist says of the stream."""

    codecs: str
    bandwidth: int
    resolution: tuple[int, int] | None
    video_uri: str
    audio_uri: str | None = None


def master_playlist(variant: Variant) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3" if variant.audio_uri else "#EXT-X-VERSION:1"]
    attributes = f'CODECS="{variant.codecs}"'
    if variant.resolution and all(variant.resolution):
        attributes += f",RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}"
    attributes += f",BANDWIDTH={max(variant.bandwidth, 1)}"
    if variant.audio_uri:
        lines.append(
            "#EXT-X-MEDIA:AUTOSELECT=YES,FORCED=NO,TYPE=AUDIO,"
            f'URI="{variant.audio_uri}",GROUP-ID="audio",DEFAULT=YES,NAME="audio"'
        )
        attributes += ',AUDIO="audio"'
    lines += [f"#EXT-X-STREAM-INF:{attributes}", variant.video_uri]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class PartLine:
    duration_ms: int
    uri: str
    independent: bool

    def render(self) -> str:
        line = f'#EXT-X-PART:DURATION={self.duration_ms / 1000:.3f},URI="{self.uri}"'
        return line + (",INDEPENDENT=YES" if self.independent else "")


@dataclass(frozen=True, slots=True)
class LowLatency:
    """What LL-HLS adds: parts of the newest segments and of the one being made."""

    part_target_ms: int
    parts: dict[int, list[PartLine]]
    """Entry index -> its parts (the last few segments only)."""
    growing: list[PartLine]
    """The parts made so far of the next segment (media sequence last + 1)."""
    growing_head: list[str]
    """Tags the next segment opens with (a discontinuity and its init segment)."""
    hint: str
    """The next part's URI (EXT-X-PRELOAD-HINT): the server answers it once it exists."""


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    entries: Sequence[Entry]
    segment_uri: Callable[[Entry], str]
    map_uri: Callable[[Entry], str] | None
    """None for MPEG-TS, whose segments carry their own codec data."""
    ended: bool
    on_demand: bool
    date_of: Callable[[Entry], int] | None = None
    """Each segment's EXT-X-PROGRAM-DATE-TIME, epoch ms (DisplayFragmentTimestamp)."""
    low_latency: LowLatency | None = None

    def render(self) -> str:
        entries = self.entries
        ll = self.low_latency
        target = max((e.meta.duration_ms for e in entries), default=1000)
        version = 9 if ll else 7 if self.map_uri else 3
        lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}"]
        if self.on_demand:
            lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
        lines.append(f"#EXT-X-TARGETDURATION:{max(1, math.ceil(target / 1000))}")
        if ll is not None:
            part = ll.part_target_ms / 1000
            lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={3 * part:.3f}")
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={part:.3f}")
        first = entries[0] if entries else None
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first.index if first else 0}")
        if first is not None and first.discontinuities:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{first.discontinuities}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        mapped: int | None = None
        for entry in entries:
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if self.map_uri is not None and (entry.discontinuity or mapped != entry.generation):
                lines.append(f'#EXT-X-MAP:URI="{self.map_uri(entry)}"')
                mapped = entry.generation
            if self.date_of is not None:
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_ms(self.date_of(entry))}")
            if ll is not None:
                lines += [p.render() for p in ll.parts.get(entry.index, ())]
            lines.append(f"#EXTINF:{max(entry.meta.duration_ms, 1) / 1000:.3f},")
            lines.append(self.segment_uri(entry))
        if ll is not None:
            lines += ll.growing_head
            lines += [p.render() for p in ll.growing]
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{ll.hint}"')
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def iso_ms(epoch_ms: int) -> str:
    """``2023-05-17T13:48:35.994Z``, as KVS writes program dates."""
    when = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
