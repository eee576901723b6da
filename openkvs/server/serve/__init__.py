"""GetMedia: stored and live fragments out as MKV chunks, following the live edge."""
