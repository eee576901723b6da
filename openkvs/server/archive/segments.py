"""Stored fragments as playback packages them: codecs checked, frames read, MP4 segments.

Codec problems become the errors AWS names for them (spec archived-media §2.4). Which
G.711 audio a path takes is AWS's codec table: GetClip A-law (§2.4), DASH A-law or
mu-law (§2.6), HLS and its MPEG-TS none (§2.8).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from openkvs.server.errors import (
    AwsError,
    InvalidCodecPrivateDataException,
    InvalidMediaFrameException,
    MissingCodecPrivateDataException,
    ResourceNotFoundException,
    UnsupportedStreamMediaTypeException,
)
from openkvs.server.model import Fragment, FragmentMeta, TrackSet
from openkvs.server.runtime.stream import StreamRuntime
from openkvs.wire.mkv.frames import Frame, FrameError, cluster_frames, read_header
from openkvs.wire.mp4.codecs import ALAW, NO_G711, ULAW, Codec, CodecError, playable
from openkvs.wire.mp4.fragmented import init_segment, media_segment
from openkvs.wire.mp4.samples import track_samples

CODEC_ERRORS: dict[str, type[AwsError]] = {
    "missing": MissingCodecPrivateDataException,
    "invalid": InvalidCodecPrivateDataException,
    "unsupported": UnsupportedStreamMediaTypeException,
}
CLIP_G711 = frozenset({ALAW})
SESSION_G711 = {"HLS": NO_G711, "DASH": frozenset({ALAW, ULAW})}
"""The G.711 laws of a session's kind."""


def codecs_of(tracks: TrackSet, g711: frozenset[str] = NO_G711) -> list[Codec]:
    """The fragment's tracks as MP4 carries them, or the AWS error saying why not;
    ``g711``: the G.711 laws the caller's playback takes."""
    try:
        return playable(tracks, g711)
    except CodecError as exc:
        raise CODEC_ERRORS[exc.kind](str(exc)) from None


def codec_for(tracks: TrackSet, track_number: int, g711: frozenset[str] = NO_G711) -> Codec:
    for codec in codecs_of(tracks, g711):
        if codec.track.number == track_number:
            return codec
    raise ResourceNotFoundException(f"The fragments have no track {track_number}.")


def frames_of(fragment: Fragment) -> list[Frame]:
    """The fragment's frames in stored order; InvalidMediaFrame if its blocks are unreadable."""
    try:
        scale = read_header(fragment.header).scale
        return list(cluster_frames(fragment.body_parts(), scale))
    except FrameError as exc:
        raise InvalidMediaFrameException(
            f"Fragment {fragment.meta.number} cannot be read: {exc}"
        ) from None


T = TypeVar("T")


def in_runs(items: Iterable[T], size: Callable[[T], int], limit: int) -> Iterator[list[T]]:
    """``items`` in consecutive runs of about ``limit`` bytes: one store trip a run, never
    the whole request in memory at once."""
    run: list[T] = []
    total = 0
    for item in items:
        run.append(item)
        total += size(item)
        if total >= limit:
            yield run
            run, total = [], 0
    if run:
        yield run


async def read_fragments(stream: StreamRuntime, metas: Sequence[FragmentMeta]) -> list[Fragment]:
    """The fragments' bytes, from memory or the store; ResourceNotFound for one that is gone."""
    out = []
    for outcome in await stream.fetch(metas):
        if not isinstance(outcome, Fragment):
            raise ResourceNotFoundException(
                f"Fragment {outcome.meta.number} is no longer available."
            )
        out.append(outcome)
    return out


def init_fragment(
    tracks: TrackSet, track_number: int, g711: frozenset[str] = NO_G711
) -> bytes:
    return init_segment([codec_for(tracks, track_number, g711)])


def media_fragment(
    fragment: Fragment, track_number: int, sequence: int, g711: frozenset[str] = NO_G711
) -> list[bytes | memoryview]:
    """``moof`` + ``mdat`` of one track of one fragment, at its producer time (``tfdt``)."""
    codec = codec_for(fragment.meta.tracks, track_number, g711)
    run = track_samples(
        track_number,
        frames_of(fragment),
        fragment.meta.producer_ms,
        not codec.is_video,
        fragment.meta.duration_ms,
    )
    return media_segment(sequence, [run])
