"""KVS ErrorIds: in PutMedia ERROR acks (spec §4) and GetMedia error chunks (spec §6.2).

One table for the server that sends them, the producer that reacts to them, and
the reader and CLI that explain them. Ids from 5000 on are the service's fault:
a producer sends the fragment again; below 5000 the fragment itself is refused.
"""

from __future__ import annotations

READ_ERROR = 4000
FRAGMENT_TOO_LARGE = 4001
FRAGMENT_TOO_LONG = 4002
CONNECTION_TOO_LONG = 4003
TIMECODE_LESSER_THAN_PREVIOUS = 4004
MULTI_TRACK_MKV = 4005
INVALID_MKV = 4006
INVALID_PRODUCER_TIMESTAMP = 4007
STREAM_NOT_ACTIVE = 4008
FRAGMENT_METADATA_LIMIT = 4009
TRACK_NUMBER_MISMATCH = 4010
FRAMES_MISSING_FOR_TRACK = 4011
TOO_MANY_TRACKS = 4012
INTERNAL_ERROR = 5000
PERSIST_FAILED = 5001

MEANINGS: dict[int, str] = {
    READ_ERROR: "the fragment could not be read (not found, deleted or damaged)",
    FRAGMENT_TOO_LARGE: "fragment larger than the size limit",
    FRAGMENT_TOO_LONG: "fragment longer than the duration limit",
    CONNECTION_TOO_LONG: "the connection lasted longer than allowed",
    TIMECODE_LESSER_THAN_PREVIOUS: "fragment starts before the previous fragment",
    MULTI_TRACK_MKV: "multi-track media where one track is allowed",
    INVALID_MKV: "not valid Matroska",
    INVALID_PRODUCER_TIMESTAMP: "bad producer timestamp",
    STREAM_NOT_ACTIVE: "the stream was deleted or is not active",
    FRAGMENT_METADATA_LIMIT: "too many fragment tags",
    TRACK_NUMBER_MISMATCH: "a frame on an undeclared track",
    FRAMES_MISSING_FOR_TRACK: "a declared track without frames",
    TOO_MANY_TRACKS: "too many tracks",
    INTERNAL_ERROR: "internal service error",
    PERSIST_FAILED: "the server could not store it (disk full?)",
}

# The ERROR_CODE text of a GetMedia error chunk, by ErrorId.
ERROR_CODES: dict[int, str] = {
    READ_ERROR: "FRAGMENT_NOT_FOUND",
    INTERNAL_ERROR: "INTERNAL_ERROR",
}


def meaning(error_id: int) -> str:
    return MEANINGS.get(error_id, "see the KVS ErrorId list")


def is_server_fault(error_id: int) -> bool:
    """Whether the fragment should be sent again (5000 internal, 5001 persist failure)."""
    return error_id >= INTERNAL_ERROR
