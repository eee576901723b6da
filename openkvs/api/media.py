"""PutMedia and GetMedia (placeholder until the media layer lands)."""

from __future__ import annotations

from aiohttp import web

from openkvs.api.control import ControlPlane
from openkvs.config import Config
from openkvs.errors import InternalFailure
from openkvs.store.base import Store


class MediaService:
    def __init__(self, store: Store, control: ControlPlane, config: Config) -> None:
        self.store, self.control, self.config = store, control, config

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def put_media(self, request: web.Request) -> web.StreamResponse:
        raise InternalFailure("PutMedia is not implemented yet.")

    async def get_media(self, request: web.Request) -> web.StreamResponse:
        raise InternalFailure("GetMedia is not implemented yet.")
