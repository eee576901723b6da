"""Per-stream runtime state: fragment numbering, the live edge, waiting readers, quotas."""

from openkvs.live.state import StreamState

__all__ = ["StreamState"]
