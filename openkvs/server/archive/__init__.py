"""Archived media (service ``kinesis-video-archived-media``): ListFragments,
GetMediaForFragmentList, GetClip, GetImages and the HLS and DASH sessions."""
