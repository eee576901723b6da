"""Fragment bytes in an S3-compatible object store (AWS S3, Ceph RGW, Garage, SeaweedFS).

One object per fragment, its key the stream's key and the seq zero-padded, so a
listing sorts in ingestion order. botocore's S3 client is synchronous: each call
runs in a worker thread, so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from openkvs.server.store.base import StoreError

MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
DELETE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class S3Target:
    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    region: str = "us-east-1"


def object_key(stream_key: str, seq: int) -> str:
    return f"{stream_key}/{seq:020d}"


class Objects:
    def __init__(self, target: S3Target) -> None:
        self.bucket = target.bucket
        keys = {}  # none given: botocore's own chain (environment, profiles, instance roles)
        if target.access_key:
            keys = {
                "aws_access_key_id": target.access_key,
                "aws_secret_access_key": target.secret_key,
            }
        self.client: Any = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=target.endpoint_url,
            region_name=target.region,
            **keys,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=32,
            ),
        )

    async def create_bucket(self) -> None:
        try:
            await asyncio.to_thread(self.client.create_bucket, Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise StoreError(f"cannot create bucket {self.bucket}: {exc}") from None

    async def check(self) -> None:
        await self._call(self.client.head_bucket, Bucket=self.bucket)

    async def put(self, key: str, parts: Sequence[bytes]) -> None:
        body = b"".join(parts)
        await self._call(self.client.put_object, Bucket=self.bucket, Key=key, Body=body)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes; None if it does not exist."""
        try:
            response = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=key
            )
            return await asyncio.to_thread(response["Body"].read)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                return None
            raise StoreError(f"cannot read object {key}: {exc}") from None
        except BotoCoreError as exc:
            raise StoreError(f"cannot read object {key}: {exc}") from None

    async def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
            await self._call(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )

    async def delete_prefix(self, prefix: str, after: str = "") -> int:
        """Delete the objects under ``prefix`` whose keys sort after ``after``; how many."""
        paginator = self.client.get_paginator("list_objects_v2")

        def keys() -> list[str]:
            return [
                item["Key"]
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, StartAfter=after)
                for item in page.get("Contents", [])
            ]

        found = await self._call(keys)
        await self.delete(found)
        return len(found)

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        """``method`` in a worker thread; its failure a StoreError."""
        try:
            return await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise StoreError(f"object store: {exc}") from None
