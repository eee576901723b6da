"""Many nodes, one set of streams: who owns a stream, and getting requests to its owner."""
