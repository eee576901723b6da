"""The service: HTTP app, control plane, auth, per-stream runtime, ingest, serving, storage.

``app`` routes requests; ``control`` is the kinesisvideo API; ``auth`` checks
SigV4 and access rules; ``runtime`` owns each stream's live state; ``ingest`` is
PutMedia; ``serve`` is GetMedia; ``store`` keeps streams and fragments durably.
"""
