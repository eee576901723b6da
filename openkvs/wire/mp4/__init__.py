"""ISO BMFF (MP4) written from stored Matroska fragments, without re-encoding.

Pure: tracks and frames in, bytes out. ``fragmented`` writes the init and media
segments HLS and DASH serve (one KVS fragment, one ``moof``); ``progressive``
plans a GetClip file (``ftyp`` + ``moov`` + ``mdat``) whose ``moov`` comes first
though the frames are only read afterwards.
"""
