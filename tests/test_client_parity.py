"""openkvs.client and openkvs.aio against botocore as the oracle.

Both clients talk to a tiny canned HTTP server on 127.0.0.1 that records each
request; with the same inputs, credentials and a frozen SigV4 clock, our
requests, results and exceptions must equal botocore's.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.auth
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import openkvs.aio
import openkvs.client
from tests.conftest import free_port

SERVICE = "kinesis-video-media"
REGION = "us-west-2"
KEY, SECRET, TOKEN = (
    "AKIDEXAMPLE",
    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "FQoGZXIvYXdzEXAMPLE",
)
FROZEN = datetime.datetime(2024, 5, 6, 7, 8, 9)
DATE = "Mon, 06 May 2024 07:08:10 GMT"
NO_RETRIES = {"max_attempts": 0}
KINDS = ["sync", "aio"]
ARN = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/cam/1700000000000"
FRAGMENT = "91343852333181432392682062607743920146264201234"

SELECTORS: list[dict[str, Any]] = [
    {"StreamName": "cam", "StartSelector": {"StartSelectorType": "NOW"}},
    {"StreamName": "cam", "StartSelector": {"StartSelectorType": "EARLIEST"}},
    {"StreamARN": ARN, "StartSelector": {"StartSelectorType": "EARLIEST"}},
    {
        "StreamName": "cam",
        "StartSelector": {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": FRAGMENT},
    },
    {
        "StreamName": "cam",
        "StartSelector": {
            "StartSelectorType": "SERVER_TIMESTAMP",
            "StartTimestamp": datetime.datetime(2024, 1, 2, 3, 4, 5, 678901),
        },
    },
    {
        "StreamName": "cam",
        "StartSelector": {
            "StartSelectorType": "SERVER_TIMESTAMP",
            "StartTimestamp": datetime.datetime(
                2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
            ),
        },
    },
    {
        "StreamName": "cam",
        "StartSelector": {"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": 1700000000},
    },
    {
        "StreamName": "cam",
        "StartSelector": {
            "StartSelectorType": "PRODUCER_TIMESTAMP",
            "StartTimestamp": 1700000000.25,
        },
    },
    {
        "StreamName": "cam",
        "StartSelector": {
            "StartSelectorType": "PRODUCER_TIMESTAMP",
            "StartTimestamp": "2024-01-02T03:04:05.5Z",
        },
    },
    {
        "StreamName": "cam",
        "StartSelector": {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": FRAGMENT},
    },
]


def selector_id(params: dict[str, Any]) -> str:
    selector = params["StartSelector"]
    parts = [selector["StartSelectorType"], "arn" if "StreamARN" in params else "name"]
    stamp = selector.get("StartTimestamp")
    if stamp is not None:
        parts.append(type(stamp).__name__ + ("-aware" if getattr(stamp, "tzinfo", None) else ""))
    return "-".join(parts)


@dataclass
class Captured:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next(v for k, v in self.headers if k.lower() == name)

    def signed(self) -> dict[str, str]:
        """The headers named in SignedHeaders, plus Authorization itself."""
        names = self.header("authorization").split("SignedHeaders=")[1].split(",")[0].split(";")
        return {name: self.header(name) for name in [*names, "authorization"]}


@dataclass
class Canned:
    """Replies in order from ``replies`` (the last one repeats); records every request."""

    url: str
    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[Captured] = field(default_factory=list)

    def reply(self, *replies: tuple[int, dict[str, str], bytes]) -> None:
        self.replies, self.requests = list(replies), []

    def take(self) -> list[Captured]:
        taken, self.requests = self.requests, []
        return taken


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # one write per response: no Nagle / delayed-ACK stalls
    disable_nagle_algorithm = True
    canned: Canned

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.canned.requests.append(Captured("POST", self.path, list(self.headers.items()), body))
        index = min(len(self.canned.requests), len(self.canned.replies)) - 1
        status, headers, payload = self.canned.replies[index]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def date_time_string(self, timestamp: float | None = None) -> str:
        return DATE

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canned() -> Iterator[Canned]:
    port = free_port()
    state = Canned(f"http://127.0.0.1:{port}")
    handler = type("Handler", (_Handler,), {"canned": state})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ambient AWS configuration, and one SigV4 clock for everyone."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KINESIS_VIDEO_MEDIA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: FROZEN)


def ok(payload: bytes = b"\x1a\x45\xdf\xa3media") -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "video/webm", "x-amzn-RequestId": "req-ok"}, payload


def error(status: int, code: str | None, body: bytes) -> tuple[int, dict[str, str], bytes]:
    headers = {"x-amzn-RequestId": f"req-{status}", "x-amz-RequestId": f"req-{status}"}
    if code is not None:
        headers |= {"x-amzn-ErrorType": code, "x-amz-ErrorType": code}
    return status, headers | {"Content-Type": "application/json"}, body


def client_args(canned: Canned, token: str | None = None, **config: Any) -> dict[str, Any]:
    return {
        "region_name": REGION,
        "endpoint_url": canned.url,
        "aws_access_key_id": KEY,
        "aws_secret_access_key": SECRET,
        "aws_session_token": token,
        "config": Config(**({"retries": NO_RETRIES} | config)),
    }


@functools.cache
def shared_session() -> botocore.session.Session:
    """One botocore session (its loaded models) for every client, as boto3's default session.

    It reads the environment at each lookup, so ``isolated`` still applies.
    """
    return botocore.session.get_session()


def make(kind: str, **kwargs: Any) -> Any:
    if kind == "botocore":
        return shared_session().create_client(SERVICE, **kwargs)
    module = openkvs.aio if kind == "aio" else openkvs.client
    return module.Session(botocore_session=shared_session()).create_client(SERVICE, **kwargs)


def get_media(kind: str, params: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """One GetMedia through one client kind, the payload read whole."""
    if kind == "aio":

        async def run() -> dict[str, Any]:
            async with make("aio", **kwargs) as client:
                response = await client.get_media(**params)
                async with response["Payload"] as payload:
                    return response | {"Payload": await payload.read()}

        return asyncio.run(run())
    response = make(kind, **kwargs).get_media(**params)
    return response | {"Payload": response["Payload"].read()}


def outcome(kind: str, params: dict[str, Any], **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", get_media(kind, params, **kwargs)
    except ClientError as exc:
        return type(exc).__name__, (exc.response, str(exc), exc.operation_name)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize("params", SELECTORS, ids=selector_id)
def test_get_media_sends_what_botocore_sends(canned, kind, token, params) -> None:
    canned.reply(ok())
    expected = get_media("botocore", params, **client_args(canned, token))
    [theirs] = canned.take()
    got = get_media(kind, params, **client_args(canned, token))
    [ours] = canned.take()
    assert (ours.method, ours.path, ours.body) == (theirs.method, theirs.path, theirs.body)
    assert ours.signed() == theirs.signed()
    assert ("x-amz-security-token" in ours.signed()) == (token is not None)
    assert sorted(k.lower() for k, _ in ours.headers) == sorted(
        k.lower() for k, _ in theirs.headers
    )
    assert ours.header("amz-sdk-request") == theirs.header("amz-sdk-request")
    assert ours.header("user-agent").startswith("openkvs/")
    assert got == expected
    assert got["ContentType"] == "video/webm" and got["Payload"] == b"\x1a\x45\xdf\xa3media"


ERRORS = [
    error(
        404,
        "ResourceNotFoundException",
        b'{"Message":"The requested stream is not found or not active."}',
    ),
    error(401, "NotAuthorizedException", b'{"Message":"not authorized"}'),
    error(400, "InvalidEndpointException", b'{"Message":"wrong endpoint"}'),
    error(400, "ClientLimitExceededException", b'{"Message":"slow down"}'),
    error(400, "ConnectionLimitExceededException", b'{"Message":"too many connections"}'),
    error(400, "InvalidArgumentException", b'{"Message":"bad selector"}'),
    error(400, "SomethingUnmodeledException", b'{"Message":"who knows"}'),
    error(
        403, "InvalidSignatureException:http://internal.amazon.com/coral/", b'{"message":"bad sig"}'
    ),
    error(400, None, b'{"__type":"com.amazon#InvalidArgumentException","Message":"typed"}'),
    error(500, None, b""),
    error(503, None, b"<html>gateway</html>"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reply", ERRORS, ids=lambda r: f"{r[0]}-{r[1].get('x-amzn-ErrorType')}")
def test_errors_match_botocore(canned, kind, reply) -> None:
    canned.reply(reply)
    params = SELECTORS[0]
    expected = outcome("botocore", params, **client_args(canned))
    got = outcome(kind, params, **client_args(canned))
    assert got == expected
    assert got[0] != "ok"
    assert len(canned.take()) == 2


def test_modeled_errors_are_the_clients_exception_classes(canned) -> None:
    canned.reply(ERRORS[0])
    client = make("sync", **client_args(canned))
    with pytest.raises(client.exceptions.ResourceNotFoundException) as caught:
        client.get_media(**SELECTORS[0])
    assert caught.value.response["Message"] == "The requested stream is not found or not active."
    assert caught.value.response["ResponseMetadata"]["RequestId"] == "req-404"
    canned.reply(ERRORS[6])
    with pytest.raises(ClientError) as plain:
        client.get_media(**SELECTORS[0])
    assert type(plain.value) is ClientError


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff delays, recorded instead of slept (botocore and we both call time.sleep)."""
    delays: list[float] = []
    real_async_sleep = asyncio.sleep

    async def no_async_wait(delay: float) -> None:
        delays.append(delay)
        await real_async_sleep(0)

    monkeypatch.setattr(time, "sleep", delays.append)
    monkeypatch.setattr(openkvs.aio.async_client.asyncio, "sleep", no_async_wait)
    return delays


RETRY_CASES = {
    "standard-503-then-ok": ({}, [error(503, None, b""), error(503, None, b""), ok()]),
    "standard-throttled": ({}, [error(400, "ThrottlingException", b'{"Message":"slow"}')]),
    "standard-not-retried": ({}, [ERRORS[3], ok()]),
    "legacy-500": ({"mode": "legacy"}, [error(500, None, b"")]),
    "legacy-two-retries": ({"mode": "legacy", "max_attempts": 2}, [error(502, None, b"")]),
    "total-2-then-ok": ({"total_max_attempts": 2}, [error(504, None, b""), ok()]),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", RETRY_CASES, ids=str)
def test_retries_match_botocore(canned, slept, kind, case) -> None:
    retries, replies = RETRY_CASES[case]
    canned.reply(*replies)
    expected = outcome("botocore", SELECTORS[0], **client_args(canned, retries=retries))
    theirs = canned.take()
    their_delays = list(slept)
    got = outcome(kind, SELECTORS[0], **client_args(canned, retries=retries))
    ours = canned.take()
    assert got == expected
    assert [r.header("amz-sdk-request") for r in ours] == [
        r.header("amz-sdk-request") for r in theirs
    ]
    assert [r.signed() for r in ours] == [r.signed() for r in theirs]
    assert len(slept) - len(their_delays) == len(their_delays) == len(theirs) - 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("retries", [0, 2])
def test_connection_errors_match_botocore(slept, kind, retries) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    args = {
        "region_name": REGION,
        "endpoint_url": closed,
        "aws_access_key_id": KEY,
        "aws_secret_access_key": SECRET,
        "config": Config(retries={"max_attempts": retries}),
    }
    expected = outcome("botocore", SELECTORS[0], **args)
    assert expected == (
        "EndpointConnectionError",
        f'Could not connect to the endpoint URL: "{closed}/getMedia"',
    )
    assert len(slept) == retries
    assert outcome(kind, SELECTORS[0], **args) == expected
    assert len(slept) == 2 * retries


PRESIGN_PARAMS: list[dict[str, Any]] = [
    SELECTORS[0],
    SELECTORS[2],
    SELECTORS[3],
    SELECTORS[4],
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("token", [None, TOKEN], ids=["keys", "session-token"])
@pytest.mark.parametrize("params", PRESIGN_PARAMS, ids=selector_id)
@pytest.mark.parametrize("expires, method", [(3600, None), (60, "GET"), (604800, "POST")])
def test_presigned_urls_are_botocores(canned, kind, token, params, expires, method) -> None:
    args = client_args(canned, token)
    expected = make("botocore", **args).generate_presigned_url("get_media", params, expires, method)
    got = make(kind, **args).generate_presigned_url(
        ClientMethod="get_media", Params=params, ExpiresIn=expires, HttpMethod=method
    )
    assert got == expected
    assert "X-Amz-Signature=" in got and f"X-Amz-Expires={expires}" in got


def test_presigned_url_on_the_default_endpoint(monkeypatch) -> None:
    for region in ("us-west-2", "cn-north-1", "us-gov-west-1"):
        args = {"region_name": region, "aws_access_key_id": KEY, "aws_secret_access_key": SECRET}
        theirs = make("botocore", **args).generate_presigned_url("get_media", SELECTORS[1])
        assert make("sync", **args).generate_presigned_url("get_media", SELECTORS[1]) == theirs


def raised(call: Any) -> tuple[str, str]:
    try:
        result = call()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return "no error", ""


NOW = {"StartSelectorType": "NOW"}
INVALID: dict[str, dict[str, Any]] = {
    "no-selector": {"StreamName": "cam"},
    "no-selector-type": {"StreamName": "cam", "StartSelector": {}},
    "name-not-a-string": {"StreamName": 7, "StartSelector": NOW},
    "name-too-short": {"StreamName": "", "StartSelector": NOW},
    "unknown-parameter": {"StreamName": "cam", "StartSelector": NOW, "Extra": 1},
    "not-a-timestamp": {
        "StreamName": "cam",
        "StartSelector": {"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": "soon"},
    },
    "selector-not-a-dict": {"StreamName": "cam", "StartSelector": [("StartSelectorType", "NOW")]},
    "unknown-selector-member": {"StreamName": "cam", "StartSelector": NOW | {"Bogus": True}},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", INVALID)
def test_parameter_validation_matches_botocore(canned, kind, case) -> None:
    params = INVALID[case]
    canned.reply(ok())
    theirs = make("botocore", **client_args(canned))
    ours = make(kind, **client_args(canned))
    expected = raised(lambda: theirs.get_media(**params))
    assert expected[0] == "ParamValidationError"
    assert raised(lambda: ours.get_media(**params)) == expected
    presign = raised(lambda: theirs.generate_presigned_url("get_media", params))
    assert raised(lambda: ours.generate_presigned_url("get_media", params)) == presign
    assert canned.take() == []


@pytest.mark.parametrize("kind", KINDS)
def test_client_surface_matches_botocore(canned, kind) -> None:
    theirs = make("botocore", **client_args(canned))
    ours = make(kind, **client_args(canned))
    checks = [
        lambda c: c.get_paginator("get_media"),
        lambda c: c.get_paginator("list_fragments"),
        lambda c: c.get_waiter("stream_exists"),
        lambda c: c.generate_presigned_url("put_media", {}),
        lambda c: c.get_media({"StreamName": "cam"}),
    ]
    for check in checks:
        expected = raised(lambda check=check: check(theirs))
        assert expected[0] != "no error"
        assert raised(lambda check=check: check(ours)) == expected
    assert ours.can_paginate("get_media") is theirs.can_paginate("get_media") is False
    assert raised(lambda: ours.can_paginate("x")) == raised(lambda: theirs.can_paginate("x"))
    assert ours.waiter_names == theirs.waiter_names == []
    assert sorted(n for n in dir(ours.exceptions) if not n.startswith("_")) == sorted(
        n for n in dir(theirs.exceptions) if not n.startswith("_")
    )
    for name in ("region_name", "endpoint_url", "partition", "method_to_api_mapping"):
        assert getattr(ours.meta, name) == getattr(theirs.meta, name), name
    assert ours.meta.service_model.service_name == theirs.meta.service_model.service_name
    assert ours.meta.config.retries == theirs.meta.config.retries
    assert ours.meta.config.region_name == theirs.meta.config.region_name == REGION


def _shown(value: Any) -> str:
    """A parameter id that is the same in every process (pytest-xdist compares them)."""
    if isinstance(value, Config):
        return "Config(" + ",".join(f"{k}={v}" for k, v in value._user_provided_options.items()) + ")"
    return str(value)


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"region_name": "eu-central-1"},
        {"region_name": "cn-north-1"},
        {"region_name": "not a region"},
        {"region_name": REGION, "endpoint_url": "not a url"},
        {"endpoint_url": "http://127.0.0.1:9"},
        {"region_name": REGION, "aws_access_key_id": KEY},
        {"region_name": REGION, "config": Config(retries={"mode": "legacy"})},
        {"region_name": REGION, "config": Config(region_name="ap-south-1")},
    ],
    ids=lambda args: ",".join(f"{k}={_shown(v)}" for k, v in args.items()) or "defaults",
)
def test_client_creation_matches_botocore(args) -> None:
    def created(kind: str) -> tuple[str, Any]:
        try:
            client = make(kind, **args)
        except Exception as exc:
            return type(exc).__name__, str(exc)
        meta = client.meta
        return "ok", (meta.region_name, meta.endpoint_url, meta.config.retries)

    assert created("sync") == created("botocore")


def test_credentials_and_region_resolve_like_botocore(canned, monkeypatch, tmp_path) -> None:
    (tmp_path / "credentials").write_text(
        f"[kvs]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n"
    )
    (tmp_path / "config").write_text("[profile kvs]\nregion = eu-west-1\n")
    canned.reply(ok())
    config = Config(retries=NO_RETRIES)
    theirs = botocore.session.Session(profile="kvs").create_client(
        SERVICE, endpoint_url=canned.url, config=config
    )
    theirs.get_media(**SELECTORS[0])
    ours = openkvs.client.Session(profile_name="kvs").create_client(
        SERVICE, endpoint_url=canned.url, config=config
    )
    assert ours.meta.region_name == "eu-west-1"
    ours.get_media(**SELECTORS[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-northeast-1")
    botocore.session.get_session().create_client(
        SERVICE, endpoint_url=canned.url, config=config
    ).get_media(**SELECTORS[0])
    openkvs.client.client(SERVICE, endpoint_url=canned.url, config=config).get_media(**SELECTORS[0])
    profile_theirs, profile_ours, env_theirs, env_ours = canned.take()
    assert profile_ours.signed() == profile_theirs.signed()
    assert "AKIDPROFILE/20240506/eu-west-1/" in profile_ours.header("authorization")
    assert env_ours.signed() == env_theirs.signed()
    assert "AKIDENV/20240506/ap-northeast-1/" in env_ours.header("authorization")


def test_configured_endpoint_urls_are_honoured_like_botocore(monkeypatch) -> None:
    args = {"region_name": REGION, "aws_access_key_id": KEY, "aws_secret_access_key": SECRET}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9001")
    assert make("sync", **args).meta.endpoint_url == "http://127.0.0.1:9001"
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS_VIDEO_MEDIA", "http://127.0.0.1:9002")
    for config in (Config(), Config(ignore_configured_endpoint_urls=True)):
        expected = make("botocore", config=config, **args).meta.endpoint_url
        assert make("sync", config=config, **args).meta.endpoint_url == expected
