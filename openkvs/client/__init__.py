"""A boto3-identical ``kinesis-video-media`` client that needs only botocore and urllib3.

``openkvs.client.client('kinesis-video-media', endpoint_url=…)`` or
``Session(...).create_client(...)`` return a client whose ``get_media``,
``generate_presigned_url``, ``exceptions`` and ``meta`` behave as boto3's do;
``openkvs.aio`` is the asyncio twin.
"""

from openkvs.client.session import Session, client
from openkvs.client.sync_client import KinesisVideoMediaClient

__all__ = ["KinesisVideoMediaClient", "Session", "client"]
