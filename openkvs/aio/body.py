"""The asyncio ``Payload``: botocore's ``StreamingBody`` API with ``await`` and ``async for``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError

CHUNK_SIZE = 1024


class AioStreamingBody:
    """Reads the open aiohttp response as it arrives; nothing is buffered beyond aiohttp's window.

    ``await read(n)`` returns what has arrived, at most ``n`` bytes (as
    aiobotocore does), so a live GetMedia yields each fragment as soon as it
    lands; ``b""`` means the response ended.
    """

    def __init__(self, response: aiohttp.ClientResponse, content_length: str | None) -> None:
        self._response = response
        self._content_length = content_length
        self._amount_read = 0

    async def read(self, amt: int | None = None) -> bytes:
        try:
            chunk = await self._response.content.read(-1 if amt is None else amt)
        except TimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=str(self._response.url), error=exc) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ResponseStreamingError(error=exc) from exc
        self._amount_read += len(chunk)
        if amt is None or (not chunk and amt > 0):
            self._verify_content_length()
        return chunk

    def _verify_content_length(self) -> None:
        if self._content_length is not None and self._amount_read != int(self._content_length):
            raise IncompleteReadError(
                actual_bytes=self._amount_read, expected_bytes=int(self._content_length)
            )

    async def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        while chunk := await self.read(chunk_size):
            yield chunk

    async def iter_lines(
        self, chunk_size: int = CHUNK_SIZE, keepends: bool = False
    ) -> AsyncIterator[bytes]:
        pending = b""
        async for chunk in self.iter_chunks(chunk_size):
            lines = (pending + chunk).splitlines(True)
            for line in lines[:-1]:
                yield line if keepends else line.splitlines()[0]
            pending = lines[-1]
        if pending:
            yield pending if keepends else pending.splitlines()[0]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_chunks()

    def tell(self) -> int:
        return self._amount_read

    def readable(self) -> bool:
        return not self._response.closed

    def close(self) -> None:
        """Drop the connection: the rest of a live response is not worth reading."""
        self._response.close()

    async def __aenter__(self) -> AioStreamingBody:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
