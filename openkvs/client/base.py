"""The client surface both transports share: ``meta``, ``exceptions``, presigning, no pagers/waiters."""

from __future__ import annotations

from typing import Any, NoReturn

from botocore.config import Config
from botocore.exceptions import OperationNotPageableError

from openkvs.client.core import ClientCore, ClientSettings


class ClientMeta:
    """botocore's ``client.meta`` without the event system (nothing here emits events)."""

    def __init__(self, settings: ClientSettings, method_to_api_mapping: dict[str, str]) -> None:
        self.region_name: str = settings.region_name
        self.endpoint_url: str = settings.endpoint_url
        self.service_model: Any = settings.service_model
        self.config: Config = settings.config
        self.partition: str = settings.partition
        self.method_to_api_mapping = dict(method_to_api_mapping)


class BaseClient:
    """Everything but the operations: those need I/O, so each transport defines them."""

    def __init__(self, settings: ClientSettings) -> None:
        self._core = ClientCore(settings)
        self.meta = ClientMeta(settings, self._core.operations)
        self.exceptions: Any = self._core.exceptions
        self.waiter_names: list[str] = []

    def can_paginate(self, operation_name: str) -> bool:
        """kinesis-video-media has no paginators; an unknown name is a KeyError, as in botocore."""
        self._core.operations[operation_name]
        return False

    def get_paginator(self, operation_name: str) -> NoReturn:
        self.can_paginate(operation_name)
        raise OperationNotPageableError(operation_name=operation_name)

    def get_waiter(self, waiter_name: str) -> NoReturn:
        raise ValueError(f"Waiter does not exist: {waiter_name}")

    def generate_presigned_url(
        self,
        ClientMethod: str,
        Params: dict[str, Any] | None = None,
        ExpiresIn: int = 3600,
        HttpMethod: str | None = None,
    ) -> str:
        """A SigV4 query-signed URL, byte for byte what botocore returns."""
        return self._core.presign(ClientMethod, Params, ExpiresIn, HttpMethod)
