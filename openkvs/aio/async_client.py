"""The asyncio client: the same requests, retries and errors as ``openkvs.client``, over aiohttp."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from openkvs.aio.body import AioStreamingBody
from openkvs.aio.http import AIOHTTP_ERRORS, EXTRA_HEADERS, http_session
from openkvs.client import errors
from openkvs.client.base import BaseClient
from openkvs.client.core import ClientSettings


class KinesisVideoMediaClient(BaseClient):
    """boto3's ``kinesis-video-media`` client with ``await``; use it with ``async with``.

    The aiohttp pool is created on first use, inside the running loop, and
    closed by ``await client.close()`` or leaving ``async with``.
    """

    def __init__(self, settings: ClientSettings) -> None:
        super().__init__(settings)
        self._settings = settings
        self._http: aiohttp.ClientSession | None = None

    def _pool(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = http_session(self._settings.config, self._settings.verify)
        return self._http

    async def get_media(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """GetMedia; ``Payload`` is an ``AioStreamingBody`` over the open response."""
        call = self._core.start("get_media", args, kwargs)
        while True:
            request = call.next_request()
            try:
                response = await self._pool().request(
                    request.method,
                    request.url,
                    data=request.body,
                    headers={**request.headers, **EXTRA_HEADERS},
                    allow_redirects=False,
                )
                headers = errors.headers_dict(response.headers.items())
                if response.status < 300:
                    body = AioStreamingBody(response, headers.get("content-length"))
                    return call.result(response.status, headers, body)
                async with response:
                    content = await response.read()
            except (aiohttp.ClientError, OSError) as exc:
                error = errors.transport_error(exc, request.url, AIOHTTP_ERRORS)
                await asyncio.sleep(call.retry_after_exception(error))
                continue
            await asyncio.sleep(call.retry_after_error(response.status, headers, content))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> KinesisVideoMediaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
