"""The control plane (service ``kinesisvideo``): streams, data endpoints and tags.

An in-memory table of streams by name answers every read. A mutation is written
to the store first and applied to the table only once the store has it, so what a
client was told survives a restart and a failed write changes nothing. Mutations
run under one lock, which makes ``CurrentVersion`` checks and name reservation
race-free. With a store other nodes share, a request first re-reads the record of
the stream it names, and the store's own checks (unique names, versions compared
in a transaction) settle races between nodes. Request bodies are checked against
botocore's model before a handler runs (``openkvs.server.validate``), so handlers
only enforce what the model cannot say: service limits, versions, existence. JSON
``null`` means absent, hence the ``body.get(...) or default`` idiom.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import Any

from botocore import xform_name

from openkvs.server.config import Config
from openkvs.server.errors import (
    InvalidArgumentException,
    ResourceInUseException,
    ResourceNotFoundException,
    ServiceUnavailable,
    TagsPerResourceExceededLimitException,
    VersionMismatchException,
)
from openkvs.server.model import StreamInfo
from openkvs.server.nodes.ownership import Ownership, Solo
from openkvs.server.store.base import (
    SharedStore,
    Store,
    StoreError,
    StreamExists,
    StreamNotFound,
    VersionConflict,
)
from openkvs.server.validate import Validator, pattern_matcher

log = logging.getLogger("openkvs.control")

Body = dict[str, Any]
Handler = Callable[[Body], Awaitable[Body]]
# Set per request by the auth layer under access rules: the streams ListStreams may show.
VISIBLE_STREAMS: ContextVar[Callable[[str], bool] | None] = ContextVar("visible", default=None)

# AWS operation → whether it changes state (and so runs under the mutation lock).
# The HTTP path of each comes from the service model; the handler is its snake_case name.
OPERATIONS: dict[str, bool] = {
    "CreateStream": True,
    "DescribeStream": False,
    "ListStreams": False,
    "DeleteStream": True,
    "UpdateStream": True,
    "UpdateDataRetention": True,
    "GetDataEndpoint": False,
    "TagStream": True,
    "UntagStream": True,
    "ListTagsForStream": False,
    "TagResource": True,
    "UntagResource": True,
    "ListTagsForResource": False,
}

NOT_FOUND = "The requested stream is not found or not active."
MAX_RETENTION_HOURS = 87_600  # ten years (UpdateDataRetention's documented maximum)
MAX_TAGS = 50
MAX_LIST_RESULTS = 10_000
VERSION_LENGTH = 20
VERSION_ALPHABET = string.ascii_letters + string.digits
TOKEN_PREFIX = "after:"
# Shapes whose max is a service limit with its own error, checked on the resulting total.
TAG_LIMIT_SHAPES = ("ResourceTags", "TagList")


def new_version() -> str:
    """A fresh stream version: 20 alphanumerics like AWS's ``FhH7KJXkTQSLfXV123cU``."""
    return "".join(secrets.choice(VERSION_ALPHABET) for _ in range(VERSION_LENGTH))


def encode_token(last_name: str) -> str:
    """A ListStreams NextToken: opaque base64 that resumes after ``last_name``."""
    return base64.b64encode((TOKEN_PREFIX + last_name).encode()).decode()


def decode_token(token: str | None) -> str:
    """The stream name a NextToken resumes after ("" = from the start)."""
    if not token:
        return ""
    try:
        text = base64.b64decode(token, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        text = ""
    name = text.removeprefix(TOKEN_PREFIX)
    if not text.startswith(TOKEN_PREFIX) or not pattern_matcher(r"[a-zA-Z0-9_.-]+")(name):
        raise InvalidArgumentException("The NextToken is not valid; pass the one a response gave.")
    return name


STREAM_MEMBERS = ("StreamName", "StreamARN", "ResourceARN")


def arn_stream(arn: str | None) -> str | None:
    """The stream name in ``arn:aws:kinesisvideo:<region>:<account>:stream/<name>/<ms>``."""
    parts = arn.rsplit("/", 2) if isinstance(arn, str) else []
    return parts[1] if len(parts) == 3 else None


def named_streams(body: Body) -> set[str]:
    """Every stream a request body names, by any member (a name, or an ARN's name)."""
    named = set()
    for member in STREAM_MEMBERS:
        value = body.get(member)
        if isinstance(value, str):
            named.add(value if member == "StreamName" else arn_stream(value) or value)
    return named


class ControlPlane:
    """Stream CRUD, GetDataEndpoint and tags; the stream table the media layer resolves against."""

    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Callable[[], float] = time.time,
        ownership: Ownership | None = None,
    ) -> None:
        self.store, self.config, self.clock = store, config, clock
        self.ownership = ownership or Solo(config.base_url())
        self._shared: SharedStore | None = store if store.shared else None  # type: ignore[assignment]
        self._streams: dict[str, StreamInfo] = {}
        self._lock = asyncio.Lock()
        self._closers: list[Callable[[StreamInfo], Awaitable[None]]] = []
        self._last_creation_ms = 0
        self._validator = Validator("kinesisvideo", handler_limits=TAG_LIMIT_SHAPES)
        self._routes: dict[str, str] = {
            self._validator.operation(name).http["requestUri"].lstrip("/"): name
            for name in OPERATIONS
        }

    # ---- the API the server and the media layer use --------------------------------------

    def load(self, streams: list[StreamInfo]) -> None:
        """Adopt the streams the store recovered at startup."""
        for info in sorted(streams, key=lambda s: s.creation_ms):
            if info.name in self._streams:
                log.warning(
                    "two stored streams share a name; keeping the newer",
                    extra={"stream": info.name},
                )
            self._streams[info.name] = info
            self._last_creation_ms = max(self._last_creation_ms, info.creation_ms)

    def operation(self, op: str) -> Handler | None:
        """The handler for ``POST /<op>``, validating its body first; None if unknown."""
        name = self._routes.get(op)
        if name is None:
            return None
        handler: Handler = getattr(self, xform_name(name))
        mutates = OPERATIONS[name]

        async def run(body: Body) -> Body:
            self._validator.check(name, body)
            if len(named := named_streams(body)) > 1:
                raise InvalidArgumentException(
                    f"The request names more than one stream: {', '.join(sorted(named))}."
                )
            with store_errors(body.get("StreamName")):
                if not mutates:
                    await self.sync(*named)
                    return await handler(body)
                async with self._lock:
                    await self.sync(*named)
                    return await handler(body)

        return run

    async def lookup(self, name: str | None, arn: str | None) -> StreamInfo:
        """``resolve``, after re-reading the record from a shared store."""
        with store_errors(name):
            await self.sync(name if name is not None else arn_stream(arn))
        return self.resolve(name, arn)

    async def sync(self, name: str | None = None) -> None:
        """Take the named stream's record as a shared store has it now: another node may
        have created, changed or deleted it. A changed record changes in place, so the
        runtimes holding it see the change; a stream gone (or re-created) closes first."""
        if self._shared is None or not name:
            return
        fresh = await self._shared.find_stream(name)
        current = self._streams.get(name)
        if current is not None and (fresh is None or fresh.key != current.key):
            await self._close(current)
        if fresh is not None:
            assign(self._streams.setdefault(name, fresh), fresh)
            self._last_creation_ms = max(self._last_creation_ms, fresh.creation_ms)

    def refresh(self, records: list[StreamInfo]) -> None:
        """Apply stored records, in place, to the streams the table has under the same key."""
        for fresh in records:
            current = self._streams.get(fresh.name)
            if current is not None and current.key == fresh.key:
                assign(current, fresh)

    async def _close(self, info: StreamInfo) -> None:
        """Forget a stream another node deleted; its runtime closes (4008 to its producer)."""
        if self._streams.get(info.name) is info:
            del self._streams[info.name]
            info.status = "DELETING"
            for close in self._closers:
                await close(info)

    def resolve(self, name: str | None, arn: str | None) -> StreamInfo:
        """The stream a request names by StreamName or StreamARN (exactly one of them)."""
        if name is None and arn is None:
            raise InvalidArgumentException("Either StreamName or StreamARN must be specified.")
        if name is not None and arn is not None:
            raise InvalidArgumentException("Specify either StreamName or StreamARN, not both.")
        info = self._streams.get(name) if name is not None else self._by_arn(arn or "")
        if info is None:
            raise ResourceNotFoundException(NOT_FOUND)
        return info

    def get(self, name: str) -> StreamInfo | None:
        return self._streams.get(name)

    def all_streams(self) -> list[StreamInfo]:
        return list(self._streams.values())

    async def every_stream(self) -> list[StreamInfo]:
        """Every stream, including those other nodes created (from a shared store)."""
        if self._shared is None:
            return self.all_streams()
        return await self._shared.list_streams("", "", 1 << 62)

    def before_delete(self, close: Callable[[StreamInfo], Awaitable[None]]) -> None:
        """Await ``close(info)`` before a stream's data is deleted: its runtime ends ingest
        (4008) and reads first, so no append races the deletion."""
        self._closers.append(close)

    # ---- handlers, one per AWS operation ---------------------------------------------------

    async def create_stream(self, body: Body) -> Body:
        name = body["StreamName"]
        if name in self._streams:
            raise ResourceInUseException(f"The stream {name} already exists.")
        retention = body.get("DataRetentionInHours") or 0
        check_retention(retention)
        tags = body.get("Tags") or {}
        check_tag_count(len(tags))
        # Strictly increasing, so a re-created stream never reuses a store key or ARN.
        creation_ms = max(int(self.clock() * 1000), self._last_creation_ms + 1)
        storage = body.get("StreamStorageConfiguration") or {}
        info = StreamInfo(
            name=name,
            arn=f"arn:aws:kinesisvideo:{self.config.region}:{self.config.account_id}:stream/{name}/{creation_ms}",
            creation_ms=creation_ms,
            version=new_version(),
            device_name=body.get("DeviceName"),
            media_type=body.get("MediaType"),
            kms_key_id=body.get("KmsKeyId") or self._default_kms_key(),
            data_retention_hours=retention,
            tags=dict(tags),
            storage_tier=storage.get("DefaultStorageTier", "HOT"),
        )
        await self.store.save_stream(info, expected_version=None)
        self._streams[name] = info
        self._last_creation_ms = creation_ms
        log.info("stream created", extra={"stream": name, "retention_hours": retention})
        return {"StreamARN": info.arn}

    async def describe_stream(self, body: Body) -> Body:
        return {"StreamInfo": describe(self._target(body))}

    async def list_streams(self, body: Body) -> Body:
        limit = body.get("MaxResults") or MAX_LIST_RESULTS
        after = decode_token(body.get("NextToken"))
        prefix = (body.get("StreamNameCondition") or {}).get("ComparisonValue") or ""
        visible = VISIBLE_STREAMS.get() or (lambda _: True)
        if self._shared is not None:  # one page from SQL; hidden names may leave it short
            found = await self._shared.list_streams(after, prefix, limit + 1)
        else:
            found = sorted(
                (s for n, s in self._streams.items() if n > after and n.startswith(prefix)),
                key=lambda s: s.name,
            )
            found = [s for s in found if visible(s.name)]
        page = found[:limit]
        result: Body = {"StreamInfoList": [describe(s) for s in page if visible(s.name)]}
        if len(found) > limit:
            result["NextToken"] = encode_token(page[-1].name)
        return result

    async def delete_stream(self, body: Body) -> Body:
        info = self.resolve(None, body["StreamARN"])
        check_version(info, body.get("CurrentVersion"))
        del self._streams[info.name]  # new requests for it are refused from now on
        info.status = "DELETING"
        try:
            for close in self._closers:
                await close(info)
            await self.store.delete_stream(info.key)
        except BaseException:
            info.status = "ACTIVE"
            self._streams[info.name] = info
            raise
        log.info("stream deleted", extra={"stream": info.name})
        return {}

    async def update_stream(self, body: Body) -> Body:
        info = self._target(body)
        check_version(info, body["CurrentVersion"])
        changes = {
            field: body[member]
            for member, field in (("DeviceName", "device_name"), ("MediaType", "media_type"))
            if body.get(member) is not None
        }
        await self._save(info, version=new_version(), **changes)
        return {}

    async def update_data_retention(self, body: Body) -> Body:
        info = self._target(body)
        check_version(info, body["CurrentVersion"])
        change = body["DataRetentionChangeInHours"]
        sign = 1 if body["Operation"] == "INCREASE_DATA_RETENTION" else -1
        retention = info.data_retention_hours + sign * change
        check_retention(retention)
        await self._save(info, version=new_version(), data_retention_hours=retention)
        return {}

    async def get_data_endpoint(self, body: Body) -> Body:
        """PutMedia and GetMedia go to the stream's owner (its live edge is there); every
        node serves the archived-media APIs."""
        info = self._target(body)
        if body["APIName"] in ("PUT_MEDIA", "GET_MEDIA"):
            return {"DataEndpoint": await self.ownership.endpoint(info.key)}
        return {"DataEndpoint": self.config.base_url()}

    async def tag_stream(self, body: Body) -> Body:
        await self._tag(self._target(body), body["Tags"])
        return {}

    async def untag_stream(self, body: Body) -> Body:
        await self._untag(self._target(body), body["TagKeyList"])
        return {}

    async def list_tags_for_stream(self, body: Body) -> Body:
        return list_tags(self._target(body), body.get("NextToken"))

    async def tag_resource(self, body: Body) -> Body:
        tags = {tag["Key"]: tag["Value"] for tag in body["Tags"]}
        await self._tag(self.resolve(None, body["ResourceARN"]), tags)
        return {}

    async def untag_resource(self, body: Body) -> Body:
        await self._untag(self.resolve(None, body["ResourceARN"]), body["TagKeyList"])
        return {}

    async def list_tags_for_resource(self, body: Body) -> Body:
        return list_tags(self.resolve(None, body["ResourceARN"]), body.get("NextToken"))

    # ---- helpers -------------------------------------------------------------------------

    def _target(self, body: Body) -> StreamInfo:
        return self.resolve(body.get("StreamName"), body.get("StreamARN"))

    def _by_arn(self, arn: str) -> StreamInfo | None:
        name = arn_stream(arn)
        info = self._streams.get(name) if name is not None else None
        return info if info is not None and info.arn == arn else None

    def _default_kms_key(self) -> str:
        return f"arn:aws:kms:{self.config.region}:{self.config.account_id}:alias/aws/kinesisvideo"

    async def _save(self, info: StreamInfo, **changes: Any) -> None:
        """Persist a changed copy, then apply it to ``info`` in place.

        Saving a copy first leaves the table as the store has it if the write
        fails; updating in place lets the media layer, which holds this object,
        see the change at once (a retention change decides whether the next
        fragment is persisted).
        """
        updated = dataclasses.replace(info, **{"tags": dict(info.tags), **changes})
        await self.store.save_stream(updated, expected_version=info.version)
        assign(info, updated)

    async def _tag(self, info: StreamInfo, tags: dict[str, str]) -> None:
        merged = {**info.tags, **tags}
        check_tag_count(len(merged))
        await self._save(info, tags=merged)  # tags do not change the stream version

    async def _untag(self, info: StreamInfo, keys: list[str]) -> None:
        await self._save(info, tags={k: v for k, v in info.tags.items() if k not in keys})


@contextlib.contextmanager
def store_errors(name: str | None) -> Iterator[None]:
    """The store's errors as AWS's: races another node won, and a store that is away."""
    try:
        yield
    except StreamExists:
        raise ResourceInUseException(f"The stream {name} already exists.") from None
    except VersionConflict:
        raise VersionMismatchException(
            "The stream version is not the latest version; call DescribeStream for it."
        ) from None
    except StreamNotFound:
        raise ResourceNotFoundException(NOT_FOUND) from None
    except StoreError as exc:
        log.warning("store unavailable", extra={"error": str(exc)})
        raise ServiceUnavailable("The service's storage cannot be reached; retry.") from None


def assign(info: StreamInfo, source: StreamInfo) -> None:
    """Make ``info`` equal ``source`` in place (the object runtimes and sessions hold)."""
    if info is not source:
        for field in dataclasses.fields(StreamInfo):
            setattr(info, field.name, getattr(source, field.name))


def describe(info: StreamInfo) -> Body:
    """The AWS StreamInfo JSON: botocore's member names and order, absent members left out."""
    fields = {
        "DeviceName": info.device_name,
        "StreamName": info.name,
        "StreamARN": info.arn,
        "MediaType": info.media_type,
        "KmsKeyId": info.kms_key_id,
        "Version": info.version,
        "Status": info.status,
        "CreationTime": info.creation_ms / 1000,
        "DataRetentionInHours": info.data_retention_hours,
    }
    return {k: v for k, v in fields.items() if v is not None}


def list_tags(info: StreamInfo, token: str | None) -> Body:
    """All of a stream's tags: at most 50, so one page, and no token is ever handed out."""
    if token:
        raise InvalidArgumentException("The NextToken is not valid; pass the one a response gave.")
    return {"Tags": dict(info.tags)}


def check_version(info: StreamInfo, current: str | None) -> None:
    if current is not None and current != info.version:
        raise VersionMismatchException(
            f"The stream version {current} is not the latest version; call DescribeStream for it."
        )


def check_retention(hours: int) -> None:
    if not 0 <= hours <= MAX_RETENTION_HOURS:
        raise InvalidArgumentException(
            f"DataRetentionInHours must be between 0 and {MAX_RETENTION_HOURS}; it would be {hours}."
        )


def check_tag_count(count: int) -> None:
    if count > MAX_TAGS:
        raise TagsPerResourceExceededLimitException(
            f"A stream can have at most {MAX_TAGS} tags; this request would leave it with {count}."
        )
