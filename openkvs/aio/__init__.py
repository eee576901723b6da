"""The asyncio twin of ``openkvs.client``: same arguments, results and exceptions, with ``await``.

async with openkvs.aio.client("kinesis-video-media", endpoint_url=…) as kvs:
    response = await kvs.get_media(StreamName="cam", StartSelector={…})
    async for piece in response["Payload"].iter_chunks():
        ...
"""

from openkvs.aio.async_client import KinesisVideoMediaClient
from openkvs.aio.body import AioStreamingBody
from openkvs.aio.session import Session, client

__all__ = ["AioStreamingBody", "KinesisVideoMediaClient", "Session", "client"]
