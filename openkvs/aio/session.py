"""asyncio sessions: resolved exactly as ``openkvs.client.Session`` (shared code), aiohttp clients."""

from __future__ import annotations

from typing import Any

from openkvs.aio.async_client import KinesisVideoMediaClient
from openkvs.client.core import ClientSettings
from openkvs.client.session import SessionBase


class Session(SessionBase[KinesisVideoMediaClient]):
    """``Session(...).create_client('kinesis-video-media', ...)`` returning the asyncio client.

    Creating a client does no network I/O of its own (credential providers
    such as IMDS may, as in botocore); the connection pool opens on first use.
    """

    def _make_client(self, settings: ClientSettings) -> KinesisVideoMediaClient:
        return KinesisVideoMediaClient(settings)


def client(service_name: str, **kwargs: Any) -> KinesisVideoMediaClient:
    """``boto3.client`` for ``kinesis-video-media``, asyncio flavour."""
    return Session().create_client(service_name, **kwargs)
