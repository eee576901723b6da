"""The PutMedia producer: stream MKV to ``/putMedia`` and keep it there.

It sends each fragment as soon as the input completes it and reads ACKs on the
same connection while it sends (full duplex, as the KVS producer SDKs do). When
the connection fails it reconnects and sends again, from the first fragment the
server has not acknowledged, so a server restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from openkvs import __version__
from openkvs.credentials import resolve
from openkvs.producer.outbox import Outbox, OutgoingFragment, Summary
from openkvs.producer.source import InputError, InputFragment, Source, read_fragments
from openkvs.wire.acks import Ack, AckError, AckParser

log = logging.getLogger("openkvs.producer")

ABSOLUTE_AFTER_MS = 1_000_000_000_000
"""Cluster timecodes past 2001 in ms are wall-clock times: send them as ABSOLUTE."""
_FATAL_CODES = {
    "ResourceNotFoundException",
    "NotAuthorizedException",
    "AccessDeniedException",
    "InvalidArgumentException",
    "InvalidEndpointException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
}


class ProducerError(Exception):
    """The stream could not be written; ``summary`` says how far it got."""

    def __init__(self, message: str, summary: Summary, code: str | None = None) -> None:
        super().__init__(message)
        self.summary, self.code = summary, code


class Producer:
    """Streams one MKV source into a stream with PutMedia.

    ``endpoint_url`` is the PUT_MEDIA data endpoint (GetDataEndpoint). ``on_ack``
    sees every ACK as it arrives. ``rediscover``, if given, returns the data endpoint
    anew (GetDataEndpoint); it runs in a thread after a connection fails, since on a
    cluster the stream may have moved to another node. ``timecode_type`` None picks ABSOLUTE when the
    Cluster timecodes are wall-clock times and RELATIVE otherwise. Streams with
    no retention never send PERSISTED: pass ``ack_event="RECEIVED"`` for them.
    """

    def __init__(
        self,
        endpoint_url: str,
        stream_name: str,
        *,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        timecode_type: str | None = None,
        producer_start_timestamp: float | None = None,
        ack_event: str = "PERSISTED",
        realtime: bool = False,
        max_retries: int = 10,
        retry_delay: float = 0.5,
        verify: bool | str = True,
        on_ack: Callable[[Ack], None] | None = None,
        rediscover: Callable[[], str] | None = None,
    ) -> None:
        self.url = endpoint_url.rstrip("/") + "/putMedia"
        self.rediscover = rediscover
        self.stream_name = stream_name
        credentials, _, region = resolve(
            botocore.session.get_session(),
            aws_access_key_id,
            aws_secret_access_key,
            aws_session_token,
        )
        self._signer = SigV4Auth(credentials, "kinesisvideo", region_name or region)
        self.timecode_type = timecode_type
        self.start_timestamp = producer_start_timestamp
        self.realtime = realtime
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.on_ack = on_ack
        self.outbox = Outbox(ack_event)
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._queue: asyncio.Queue[InputFragment | None] = asyncio.Queue(maxsize=4)
        self._held: InputFragment | None = None
        self._header = b""
        self._input_done = False
        self._input_error: InputError | None = None
        self._used = False

    @property
    def summary(self) -> Summary:
        return self.outbox.summary

    def put(self, source: Source) -> Summary:
        """Send the whole source and wait until every fragment is acknowledged."""
        return asyncio.run(self.aput(source))

    async def aput(self, source: Source) -> Summary:
        """Send the whole source and wait until every fragment is acknowledged."""
        if self._used:
            raise RuntimeError("a Producer sends one source; make another for the next")
        self._used = True
        feeder = asyncio.create_task(self._feed(source))
        try:
            self._held = await self._queue.get()
            if self._held is not None:
                self._choose_timecodes(self._held)
                await self._connections()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        if self._input_error is not None:
            raise ProducerError(str(self._input_error), self.summary, "InvalidInput")
        return self.summary

    async def _feed(self, source: Source) -> None:
        started: tuple[float, int] | None = None
        try:
            async for fragment in read_fragments(source):
                if self.realtime:
                    started = started or (time.monotonic(), fragment.producer_ms)
                    due = started[0] + (fragment.producer_ms - started[1]) / 1000
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self._queue.put(fragment)
        except InputError as exc:
            self._input_error = exc
        await self._queue.put(None)

    def _choose_timecodes(self, first: InputFragment) -> None:
        self._header = first.header
        if self.timecode_type is None:
            absolute = first.producer_ms >= ABSOLUTE_AFTER_MS
            self.timecode_type = "ABSOLUTE" if absolute else "RELATIVE"
        if self.start_timestamp is None:
            self.start_timestamp = time.time()

    async def _connections(self) -> None:
        failures = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                healthy, reason = await self._connection(http)
                if self._input_done and not self.outbox:
                    return
                failures = 0 if healthy else failures + 1
                if failures > self.max_retries:
                    raise ProducerError(
                        f"PutMedia failed {failures} times in a row: {reason}", self.summary
                    )
                self.summary.reconnects += 1
                log.info("putmedia reconnecting", extra={"reason": reason, "failures": failures})
                await asyncio.sleep(min(5.0, self.retry_delay * 2 ** max(0, failures - 1)))
                if failures and self.rediscover is not None:
                    await self._rediscover()

    async def _rediscover(self) -> None:
        try:
            endpoint = await asyncio.to_thread(self.rediscover)  # type: ignore[arg-type]
        except Exception as exc:  # keep the endpoint we have; the next failure asks again
            log.info("GetDataEndpoint failed", extra={"error": str(exc)})
            return
        self.url = endpoint.rstrip("/") + "/putMedia"

    async def _connection(self, http: aiohttp.ClientSession) -> tuple[bool, str]:
        """One PutMedia request; (whether it got anywhere, why it ended)."""
        settled = 0
        try:
            body = self._body(self.outbox.to_resend())
            async with http.post(
                self.url, data=body, headers=self._signed_headers(), ssl=self._ssl
            ) as response:
                if response.status != 200:
                    return False, await self._refused(response)
                parser = AckParser()
                async for data in response.content.iter_any():
                    for ack in parser.feed(data):
                        settled += self.outbox.on_ack(ack)
                        if self.on_ack is not None:
                            self.on_ack(ack)
            error = self.outbox.last_error
            reason = f"ERROR ack {error.error_id}" if error else "the server ended the response"
        except (aiohttp.ClientError, ConnectionError, TimeoutError, AckError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        self.outbox.last_error = None
        return settled > 0 or (not self.outbox and reason.startswith("the server")), reason

    async def _refused(self, response: aiohttp.ClientResponse) -> str:
        code = response.headers.get("x-amzn-ErrorType", str(response.status)).split(":")[0]
        text = await response.text()
        if code in _FATAL_CODES:
            raise ProducerError(f"PutMedia refused: {code}: {text}", self.summary, code)
        return f"HTTP {response.status} {code}"

    async def _body(self, resend: list[OutgoingFragment]) -> AsyncIterator[bytes]:
        yield self._header
        for fragment in resend:
            yield fragment.data
        while not self._input_done:
            item, self._held = self._held or await self._queue.get(), None
            if item is None:
                self._input_done = True
                return
            self.outbox.sent(OutgoingFragment(item.timecode, item.producer_ms, item.data))
            yield item.data

    def _signed_headers(self) -> dict[str, str]:
        request = AWSRequest(
            method="POST",
            url=self.url,
            data=b"",
            headers={
                "x-amzn-stream-name": self.stream_name,
                "x-amzn-fragment-timecode-type": self.timecode_type or "RELATIVE",
                "x-amzn-producer-start-timestamp": f"{self.start_timestamp:.3f}",
                "x-amzn-fragment-acknowledgment-required": "1",
                "Content-Type": "application/json",
                "User-Agent": f"openkvs-producer/{__version__}",
            },
        )
        self._signer.add_auth(request)
        return dict(request.headers.items())
