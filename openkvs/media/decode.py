"""Decoding a fragment's media with PyAV (the optional ``openkvs[decode]`` extra).

Each KVS fragment starts at a keyframe and its chunk is a complete MKV, so a
fragment decodes on its own, without the fragments before it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

INSTALL_HINT = "decoding needs PyAV: pip install 'openkvs[decode]'"


def _av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return av


def decode_frames(raw: bytes, video_only: bool = False) -> Iterator[Any]:
    """PyAV ``VideoFrame``/``AudioFrame`` objects of one chunk, in decode order per stream."""
    av = _av()
    with av.open(io.BytesIO(raw), format="matroska") as container:
        streams = container.streams.video if video_only else container.streams
        yield from container.decode(*streams)


def decode_arrays(raw: bytes, pixel_format: str = "rgb24") -> Iterator[Any]:
    """Each video frame of one chunk as a numpy array (height, width, channels)."""
    for frame in decode_frames(raw, video_only=True):
        yield frame.to_ndarray(format=pixel_format)
