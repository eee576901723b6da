"""Reading GetMedia payloads: fragments, frames and in-band errors."""

from openkvs.media.follow import follow
from openkvs.media.reader import (
    FragmentReader,
    Frame,
    GetMediaError,
    MediaFragment,
    aiter_fragments,
    iter_fragments,
)
from openkvs.media.writer import write_mkv

__all__ = [
    "Frame",
    "FragmentReader",
    "GetMediaError",
    "MediaFragment",
    "aiter_fragments",
    "follow",
    "iter_fragments",
    "write_mkv",
]
