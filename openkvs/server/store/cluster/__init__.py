"""The clustered store: PostgreSQL for the index and stream records, an S3-compatible
object store for fragment bytes (issue 12)."""

from openkvs.server.store.cluster.objects import S3Target
from openkvs.server.store.cluster.store import ClusterStore

__all__ = ["ClusterStore", "S3Target"]
