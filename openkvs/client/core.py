"""What the sync and asyncio clients share, with no I/O: settings, validation, each call's attempts.

A transport asks a ``Call`` for the next signed request, sends it, and hands
back what happened; the ``Call`` decides (like botocore) whether to retry and
how long to wait, and turns the outcome into the result dict or exception.
"""

from __future__ import annotations

import datetime
import email.utils
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore
from botocore.config import Config
from botocore.errorfactory import ClientExceptionsFactory
from botocore.exceptions import ParamValidationError, UnknownClientMethodError
from botocore.validate import ParamValidator

from openkvs.client import errors, request
from openkvs.client.retry import Decision, RetryPolicy

_VALIDATOR = ParamValidator()


@dataclass(frozen=True)
class ClientSettings:
    """Everything a session resolved for one client."""

    service_model: Any
    region_name: str
    endpoint_url: str
    partition: str
    credentials: Any
    config: Config
    verify: bool | str
    user_agent: str
    retry: RetryPolicy


class ClientCore:
    """Per-client state both transports use: operations, exceptions, signing inputs."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        model = settings.service_model
        self.operations = {botocore.xform_name(name): name for name in model.operation_names}
        self.exceptions = ClientExceptionsFactory().create_client_exceptions(model)
        self.signed = settings.config.signature_version is not botocore.UNSIGNED

    def operation(self, method: str) -> Any:
        return self.settings.service_model.operation_model(self.operations[method])

    def validate(self, params: dict[str, Any], operation_model: Any) -> None:
        if self.settings.config.parameter_validation is False:
            return
        report = _VALIDATOR.validate(params, operation_model.input_shape)
        if report.has_errors():
            raise ParamValidationError(report=report.generate_report())

    def credentials(self) -> Any:
        """A frozen snapshot, so one request never mixes two refreshes of the keys."""
        creds = self.settings.credentials
        return creds.get_frozen_credentials() if creds is not None else None

    def start(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        if args:
            raise TypeError(f"{method}() only accepts keyword arguments.")
        operation_model = self.operation(method)
        self.validate(kwargs, operation_model)
        return Call(self, operation_model, kwargs)

    def presign(
        self, method: str, params: dict[str, Any] | None, expires_in: int, http_method: str | None
    ) -> str:
        if method not in self.operations:
            raise UnknownClientMethodError(method_name=method)
        operation_model = self.operation(method)
        params = params or {}
        self.validate(params, operation_model)
        aws = request.unsigned_request(operation_model, params, self.settings.endpoint_url)
        if http_method is not None:
            aws.method = http_method
        if not self.signed:
            return str(aws.url)
        return request.presign(aws, self.credentials(), self.settings.region_name, expires_in)


class Call:
    """One API call: up to ``max_attempts`` signed attempts, then a result or an exception."""

    def __init__(self, core: ClientCore, operation_model: Any, params: dict[str, Any]) -> None:
        self._core = core
        self._operation = operation_model
        self._params = params
        self._policy = core.settings.retry
        self._invocation_id = str(uuid.uuid4())
        self._max_known = not self._policy.legacy
        self._ttl: str | None = None
        self.attempt = 0

    def next_request(self) -> request.HttpRequest:
        """The next attempt, signed afresh (a retry gets a new X-Amz-Date, as in botocore)."""
        self.attempt += 1
        settings = self._core.settings
        aws = request.unsigned_request(self._operation, self._params, settings.endpoint_url)
        if self._core.signed:
            request.sign(aws, self._core.credentials(), settings.region_name)
        return request.finish(
            aws,
            {
                "User-Agent": settings.user_agent,
                "amz-sdk-invocation-id": self._invocation_id,
                "amz-sdk-request": self._sdk_request(),
            },
        )

    def _sdk_request(self) -> str:
        parts = [f"ttl={self._ttl}"] if self._ttl else []
        parts.append(f"attempt={self.attempt}")
        if self._max_known:
            parts.append(f"max={self._policy.max_attempts}")
        return "; ".join(parts)

    def retry_after_exception(self, error: Exception) -> float:
        """Seconds to wait before retrying after a transport error, or re-raise it."""
        decision = self._decide(error=error)
        if decision.delay is None:
            raise error
        return decision.delay

    def retry_after_error(self, status: int, headers: Any, body: bytes) -> float:
        """Seconds to wait before retrying an error response, or raise its ClientError."""
        parsed = errors.parse_error(self._operation, status, headers, body)
        decision = self._decide(status=status, code=errors.error_code(parsed), headers=headers)
        if decision.delay is None:
            self._annotate(parsed, decision)
            errors.raise_error(self._core.exceptions, parsed, self._operation.name)
        self._ttl = _ttl(headers, self._core.settings.config.read_timeout)
        return decision.delay

    def result(self, status: int, headers: Any, payload: Any) -> dict:
        """The result dict of a successful response, with ``payload`` as the streaming member."""
        parsed = errors.parse_success(self._operation, status, headers, payload)
        self._annotate(parsed, self._decide(status=status))
        return parsed

    def _decide(self, **outcome: Any) -> Decision:
        self._max_known = True
        return self._policy.decide(self.attempt, **outcome)

    def _annotate(self, parsed: dict, decision: Decision) -> None:
        metadata = parsed.setdefault("ResponseMetadata", {})
        if decision.max_attempts_reached:
            metadata["MaxAttemptsReached"] = True
        metadata["RetryAttempts"] = self.attempt - 1


def _ttl(headers: Mapping[str, str], read_timeout: float) -> str | None:
    """botocore's amz-sdk-request ``ttl``: when the retry will time out, on the server's clock."""
    date = headers.get("Date")
    try:
        moment = email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return (moment + datetime.timedelta(seconds=read_timeout)).strftime("%Y%m%dT%H%M%SZ")
