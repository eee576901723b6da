"""Follow a stream across ends of response, timeouts and broken connections.

GetMedia ends after an idle period, and connections break; ``follow`` resumes
each time with the CONTINUATION_TOKEN of the last fragment it yielded, so the
caller sees every fragment once, in order, with no gap.

A server may serve a fragment before it is durable; if it then crashes, the
producer sends that fragment again and it is stored under a new number. Producer
timestamps increase within a stream, so ``follow`` skips a fragment whose
producer timestamp is not after the last one it yielded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from openkvs.media.reader import MediaFragment, iter_fragments
from openkvs.wire.mkv.reader import MkvError

log = logging.getLogger("openkvs.media")

_RETRYABLE_CODES = {"ClientLimitExceededException", "ConnectionLimitExceededException"}


def follow(
    client: Any,
    stream_name: str,
    start: dict[str, Any] | None = None,
    retry_delay: float = 1.0,
) -> Iterator[MediaFragment]:
    """Yield fragments of ``stream_name`` from ``start`` (default NOW), forever.

    ``client`` is a ``kinesis-video-media`` client (boto3's or ours). Stop by
    breaking out of the loop. In-band errors (e.g. a fragment deleted by
    retention) raise ``GetMediaError``; throttling and broken connections retry.
    """
    selector = dict(start or {"StartSelectorType": "NOW"})
    last_producer_ms = -1
    while True:
        try:
            response = client.get_media(StreamName=stream_name, StartSelector=selector)
            for fragment in iter_fragments(response["Payload"]):
                if fragment.continuation_token:
                    selector = {
                        "StartSelectorType": "CONTINUATION_TOKEN",
                        "ContinuationToken": fragment.continuation_token,
                    }
                    producer_ms = fragment.producer_timestamp_ms
                    if producer_ms is not None:
                        if producer_ms <= last_producer_ms:
                            continue
                        last_producer_ms = producer_ms
                    yield fragment
            continue  # the response ended cleanly: resume at once
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in _RETRYABLE_CODES:
                raise
            reason: object = exc
        except (BotoCoreError, ConnectionError, MkvError) as exc:
            reason = exc
        log.info("getmedia interrupted; resuming", extra={"reason": str(reason)})
        time.sleep(retry_delay)
