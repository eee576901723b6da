"""The embedded store, the in-memory store, and the interface both implement."""
