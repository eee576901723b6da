"""SigV4 on every request: the pure verifier against AWS's test suite and botocore, then
a real server with credentials against boto3, the AWS CLI, raw HTTP and PutMedia
signed the way the C and Java producer SDKs sign it (spec §1, §10)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from openkvs.server.auth import (
    AuthConfigError,
    Received,
    Secret,
    load_keys,
    parse_keys,
    parse_rules,
    verify,
)
from openkvs.server.auth.sigv4 import EMPTY_SHA256
from openkvs.server.errors import (
    AwsError,
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from tests.conftest import ServerProcess, free_port
from tests.media import cluster, simple_block, synthetic_mkv
from tests.producer import PutMediaResult, put_media

# ---- the pure verifier -----------------------------------------------------------------

# AWS Signature Version 4 test suite (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html,
# as vendored in bazelbuild/bazel third_party/aws-sig-v4-test-suite): the .sreq files.
SUITE_SECRET = Secret("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_NOW = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC).timestamp()
SUITE_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpS"
    "PfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQD"
    "YwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+sc"
    "qKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)
_SCOPE = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
SUITE = {
    "get-vanilla-query-order-key-case": (
        "GET /?Param2=value2&Param1=value1 HTTP/1.1\nHost:example.amazonaws.com\n"
        "X-Amz-Date:20150830T123600Z\n",
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    "get-vanilla-query-unreserved": (
        "GET /?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
        "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz HTTP/1.1\n"
        "Host:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n",
        "host;x-amz-date",
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    "get-vanilla-utf8-query": (
        "GET /?\u1234=bar HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n",
        "host;x-amz-date",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    "get-header-value-trim": (
        'GET / HTTP/1.1\nHost:example.amazonaws.com\nMy-Header1: value1\nMy-Header2: "a   b   c"\n'
        "X-Amz-Date:20150830T123600Z\n",
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    "post-x-www-form-urlencoded-parameters": (
        "POST / HTTP/1.1\nContent-Type:application/x-www-form-urlencoded; charset=utf8\n"
        "Host:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n\nParam1=value1",
        "content-type;host;x-amz-date",
        "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
    ),
    "post-sts-header-before": (
        "POST / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n"
        f"X-Amz-Security-Token:{SUITE_TOKEN}\n",
        "host;x-amz-date;x-amz-security-token",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    ),
    "post-sts-header-after": (  # the token is sent but not signed, as producer-c does
        "POST / HTTP/1.1\nHost:example.amazonaws.com\nX-Amz-Date:20150830T123600Z\n"
        f"X-Amz-Security-Token:{SUITE_TOKEN}\n",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
}


def suite_request(case: str, tamper: bool = False) -> Received:
    raw, signed, signature = SUITE[case]
    head, _, body = raw.partition("\n\n")
    request_line, *lines = head.strip("\n").split("\n")
    method, target, _ = request_line.split(" ")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    headers.append(
        (
            "Authorization",
            f"AWS4-HMAC-SHA256 {_SCOPE}, SignedHeaders={signed}, Signature={signature}",
        )
    )
    if tamper:
        headers[0] = (headers[0][0], headers[0][1] + "x")
    payload = hashlib.sha256(body.encode()).hexdigest()
    return Received(method, target, [(k, v) for k, v in headers], payload)


def suite_keys(case: str) -> Callable[[str], Secret | None]:
    token = SUITE_TOKEN if case.startswith("post-sts") else None
    secret = Secret(SUITE_SECRET.access_key, SUITE_SECRET.secret_key, token)
    return {secret.access_key: secret}.get


@pytest.mark.parametrize("case", sorted(SUITE))
def test_the_aws_sigv4_test_suite_verifies(case: str) -> None:
    assert verify(suite_request(case), suite_keys(case), SUITE_NOW, "service").access_key == (
        "AKIDEXAMPLE"
    )
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verify(suite_request(case, tamper=True), suite_keys(case), SUITE_NOW, "service")


def botocore_signed(
    url: str = "http://127.0.0.1:8080/describeStream",
    body: bytes = b'{\n\t"StreamName": "x"\n}',
    headers: dict[str, str] | None = None,
    secret: str = "secret",
    token: str | None = None,
    presign_expires: int | None = None,
    region: str = "eu-north-1",
) -> Received:
    """A request signed by botocore itself, as the server would receive it."""
    request = AWSRequest("POST", url, data=body, headers=headers or {"Content-Type": "x"})
    credentials = Credentials("AKID", secret, token)
    if presign_expires is None:
        botocore.auth.SigV4Auth(credentials, "kinesisvideo", region).add_auth(request)
    else:
        botocore.auth.SigV4QueryAuth(credentials, "kinesisvideo", region, presign_expires).add_auth(
            request
        )
    prepared = request.prepare()
    target = prepared.url.split("://", 1)[1]
    host, _, rest = target.partition("/")
    sent = [
        ("Host", host),
        *((k, str(v, "ascii") if isinstance(v, bytes) else v) for k, v in prepared.headers.items()),
    ]
    payload = hashlib.sha256(prepared.body or b"").hexdigest()
    return Received("POST", "/" + rest, sent, payload)


KEYS = {"AKID": Secret("AKID", "secret")}.get


def test_botocore_signatures_verify_in_any_region_with_tab_indented_json() -> None:
    assert verify(botocore_signed(region="ap-south-2"), KEYS).access_key == "AKID"
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verify(botocore_signed(secret="wrong"), KEYS)
    with pytest.raises(UnrecognizedClientException, match="security token included"):
        verify(botocore_signed(), {}.get)


def test_clock_skew_is_five_minutes_either_way() -> None:
    request = botocore_signed()
    now = time.time()
    verify(request, KEYS, now + 290)
    with pytest.raises(InvalidSignatureException, match=r"Signature expired: \d{8}T\d{6}Z is now"):
        verify(request, KEYS, now + 310)
    with pytest.raises(InvalidSignatureException, match=r"\+ 5 min\.\)$"):
        verify(request, KEYS, now - 310)


def test_presigned_urls_live_until_they_expire() -> None:
    request = botocore_signed(presign_expires=60, body=b"")
    now = time.time()
    assert verify(request, KEYS, now + 55).access_key == "AKID"
    with pytest.raises(InvalidSignatureException, match=r"- 60 sec\.\)$"):
        verify(request, KEYS, now + 65)


def test_session_tokens_must_match_the_key() -> None:
    keys = {"AKID": Secret("AKID", "secret", "tok")}.get
    assert verify(botocore_signed(token="tok"), keys).access_key == "AKID"
    for token in ("other", None):
        with pytest.raises(UnrecognizedClientException):
            verify(botocore_signed(token=token), keys)


@pytest.mark.parametrize(
    ("authorization", "error", "message"),
    [
        (None, MissingAuthenticationTokenException, "Missing Authentication Token"),
        ("Bearer abc", IncompleteSignatureException, "requires 'Credential' parameter"),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-west-2/kinesisvideo/aws4_request",
            IncompleteSignatureException,
            "requires 'Signature' parameter",
        ),
        (
            "AWS4-HMAC-SHA256 Credential AKID, SignedHeaders=host, Signature=00",
            IncompleteSignatureException,
            "missing equal-sign",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/x/kinesisvideo, SignedHeaders=host, Signature=00",
            IncompleteSignatureException,
            "exactly 5 slash-delimited",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261130/us-west-2/s3/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            InvalidSignatureException,
            "correct service: 'kinesisvideo'",
        ),
    ],
)
def test_malformed_authorization_gets_the_aws_error(
    authorization: str | None, error: type[AwsError], message: str
) -> None:
    headers = [("Host", "h"), ("X-Amz-Date", "20261130T000000Z")]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    with pytest.raises(error, match=message) as raised:
        verify(Received("POST", "/listStreams", headers, EMPTY_SHA256), KEYS)
    assert raised.value.status == 403 and raised.value.message_key == "message"


def test_credentials_files_json_ini_and_access_rules_parse() -> None:
    keys = parse_keys('{"A": "s", "B": {"secret_access_key": "t", "session_token": "k"}}')
    assert keys["A"] == Secret("A", "s") and keys["B"] == Secret("B", "t", "k")
    ini = "[default]\naws_access_key_id = C\naws_secret_access_key = u\naws_session_token = z\n"
    assert parse_keys(ini)["C"] == Secret("C", "u", "z")
    env = {"OPENKVS_ACCESS_KEY_ID": "E", "OPENKVS_SECRET_ACCESS_KEY": "v"}
    assert load_keys(None, env) == {"E": Secret("E", "v")}
    with pytest.raises(AuthConfigError, match="both"):
        load_keys(None, {"OPENKVS_ACCESS_KEY_ID": "E"})
    rules = parse_rules({"A": {"read": ["cam-"]}, "*": {"read": ["public"]}})
    assert rules.allows("A", "read", "cam-1") and rules.allows("B", "read", "public-1")
    assert not rules.allows("A", "write", "cam-1") and not rules.allows("A", "read", "lobby")


# ---- a real server -----------------------------------------------------------------------

TOKEN_KEY = ("ASIATEMP", "tempsecret", "the-session-token")
ADMIN, CAMERA, VIEWER = ("AKIDEXAMPLE", "secret"), ("AKIDCAMERA", "camsecret"), ("AKIDVIEW", "v")


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.json"
    keys: dict[str, Any] = {k: s for k, s in (ADMIN, CAMERA, VIEWER)}
    keys[TOKEN_KEY[0]] = {"secret_access_key": TOKEN_KEY[1], "session_token": TOKEN_KEY[2]}
    path.write_text(json.dumps(keys))
    return path


@pytest.fixture
def secured(make_server, credentials: Path) -> ServerProcess:  # type: ignore[no-untyped-def]
    return make_server("--credentials", str(credentials), "--getmedia-idle-timeout-s", "0.3")


def client(
    server: ServerProcess,
    key: tuple[str, str] = ADMIN,
    service: str = "kinesisvideo",
    token: str | None = None,
) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="eu-west-3",
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        aws_session_token=token,
        config=BotoConfig(retries={"max_attempts": 1}, read_timeout=10),
    )


def refused(call: Callable[[], object]) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    response: Any = raised.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def raw_post(server: ServerProcess, path: str, headers: dict[str, str], body: bytes = b"{}"):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(server.url + path, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_signed_clients_work_and_others_get_the_aws_errors(secured: ServerProcess) -> None:
    admin = client(secured)
    admin.create_stream(StreamName="cam", DataRetentionInHours=1)
    assert [s["StreamName"] for s in admin.list_streams()["StreamInfoList"]] == ["cam"]
    media = client(secured, service="kinesis-video-media")
    got = media.get_media(StreamName="cam", StartSelector={"StartSelectorType": "EARLIEST"})
    assert got["ContentType"] == "video/webm"
    got["Payload"].read()

    status, code, message = refused(client(secured, (ADMIN[0], "wrong")).list_streams)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match")
    assert refused(client(secured, ("AKIDNOBODY", "x")).list_streams) == (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )

    status, headers, body = raw_post(secured, "/listStreams", {"Content-Type": "application/json"})
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    status, headers, body = raw_post(
        secured, "/listStreams", {"Authorization": "AWS4-HMAC-SHA256 x"}
    )
    assert (status, headers["x-amzn-ErrorType"]) == (403, "IncompleteSignatureException")


def test_a_body_changed_after_signing_is_refused(secured: ServerProcess) -> None:
    admin = client(secured)

    def tamper(request: AWSRequest, **_: object) -> None:
        request.body = request.body.replace(b'"cam"', b'"cat"')

    admin.meta.events.register("before-send", tamper)
    status, code, _ = refused(lambda: admin.create_stream(StreamName="cam"))
    assert (status, code) == (403, "InvalidSignatureException")
    assert client(secured).list_streams()["StreamInfoList"] == []


def frozen_clock(monkeypatch: pytest.MonkeyPatch, shift_s: float) -> None:
    """Sign as if botocore's clock were ``shift_s`` off."""
    real = botocore.auth.get_current_datetime

    def shifted(remove_tzinfo: bool = True) -> datetime.datetime:
        return real(remove_tzinfo) + datetime.timedelta(seconds=shift_s)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", shifted)


def test_requests_signed_six_minutes_off_are_expired(
    secured: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen_clock(monkeypatch, -360)
    status, code, message = refused(client(secured).list_streams)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("Signature expired: ") and message.endswith(" - 5 min.)")
    frozen_clock(monkeypatch, +720)  # on top of -360: six minutes ahead
    status, code, message = refused(client(secured).list_streams)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("Signature not yet current: ")


def test_a_presigned_get_media_url_works_until_it_expires(
    secured: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    client(secured).create_stream(StreamName="cam", DataRetentionInHours=1)
    media = client(secured, service="kinesis-video-media")
    params = {"StreamName": "cam", "StartSelector": {"StartSelectorType": "EARLIEST"}}

    def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
        return raw_post(
            secured, url.split(secured.url, 1)[1], {"Content-Type": "application/json"}, b""
        )

    fresh = media.generate_presigned_url("get_media", Params=params, ExpiresIn=60)
    status, headers, _ = fetch(fresh)
    assert (status, headers["Content-Type"]) == (200, "video/webm")
    frozen_clock(monkeypatch, -61)
    stale = media.generate_presigned_url("get_media", Params=params, ExpiresIn=60)
    status, headers, body = fetch(stale)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert json.loads(body)["message"].startswith("Signature expired: ")


def test_session_token_keys_need_their_token(secured: ServerProcess) -> None:
    key, secret, token = TOKEN_KEY
    assert client(secured, (key, secret), token=token).list_streams()["StreamInfoList"] == []
    for wrong in ("not-the-token", None):
        status, code, _ = refused(client(secured, (key, secret), token=wrong).list_streams)
        assert (status, code) == (403, "UnrecognizedClientException")


def test_the_aws_cli_is_accepted(secured: ServerProcess) -> None:
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ADMIN[0], AWS_SECRET_ACCESS_KEY=ADMIN[1])
    env.pop("AWS_SESSION_TOKEN", None)
    cmd = [aws, "kinesisvideo", "create-stream", "--stream-name", "cli", "--region", "sa-east-1"]
    done = subprocess.run([*cmd, "--endpoint-url", secured.url], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["StreamARN"].split("/")[1] == "cli"


# ---- PutMedia as the producer SDKs sign it (spec §1, §10) --------------------------------

PRODUCER_C_UNSIGNED = {"content-type", "content-length", "authorization", "x-amz-security-token"}


def producer_sdk_headers(
    url: str, stream: str, key: tuple[str, str], token: str | None = None, java: bool = False
) -> dict[str, str]:
    """Headers signed by hand the way producer-c does (every header but four, Host without its
    port, empty-payload hash) or the Java SDK does (``x-amz-content-sha256: UNSIGNED-PAYLOAD``)."""
    host = url.split("://", 1)[1].split(":")[0]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = {
        "Host": host,
        "x-amzn-stream-name": stream,
        "x-amzn-fragment-timecode-type": "RELATIVE",
        "x-amzn-fragment-acknowledgment-required": "1",
        "x-amzn-producer-start-timestamp": "1700000000.000",
        "Transfer-Encoding": "chunked",
        "Connection": "keep-alive",
        "Content-Type": "application/json",
        "User-Agent": "AWS-SDK-KVS-CPP-CLIENT/3.4.1   GCC/11  Linux",  # spaces collapse
        "X-Amz-Date": stamp,
    }
    payload = EMPTY_SHA256
    if java:
        payload = headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    signed = sorted(k.lower() for k in headers if k.lower() not in PRODUCER_C_UNSIGNED)
    values = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    canonical = "\n".join(
        [
            "POST",
            "/putMedia",
            "",
            *(f"{k}:{values[k]}" for k in signed),
            "",
            ";".join(signed),
            payload,
        ]
    )
    scope = f"{stamp[:8]}/us-east-1/kinesisvideo/aws4_request"
    to_sign = (
        f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    signing = ("AWS4" + key[1]).encode()
    for part in scope.split("/"):
        signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key[0]}/{scope}, SignedHeaders={';'.join(signed)}, "
        f"Signature={signature}"
    )
    if token is not None:
        headers["x-amz-security-token"] = token
    return headers


def one_fragment() -> bytes:
    return synthetic_mkv([cluster(0, [simple_block(1, 0), simple_block(1, 500)])])


def sdk_put(server: ServerProcess, stream: str, headers: dict[str, str]) -> PutMediaResult:
    return asyncio.run(
        put_media(
            server.url, stream, one_fragment(), timecode_type="RELATIVE", extra_headers=headers
        )
    )


def test_put_media_signed_like_the_c_and_java_producer_sdks_is_accepted(
    secured: ServerProcess,
) -> None:
    client(secured).create_stream(StreamName="cam", DataRetentionInHours=1)
    key, secret, token = TOKEN_KEY
    for java in (False, True):
        headers = producer_sdk_headers(secured.url, "cam", (key, secret), token, java=java)
        result = sdk_put(secured, "cam", headers)
        assert result.status == 200, result.body
        assert result.events("PERSISTED"), result.acks
    wrong = producer_sdk_headers(secured.url, "cam", (key, "not-the-secret"), token)
    result = sdk_put(secured, "cam", wrong)
    assert (
        result.status == 403 and result.headers["x-amzn-errortype"] == "InvalidSignatureException"
    )


def test_the_python_producer_signs_acceptably(secured: ServerProcess) -> None:
    from openkvs.producer import Producer

    client(secured).create_stream(StreamName="py", DataRetentionInHours=1)
    summary = Producer(
        secured.url,
        "py",
        region_name="me-south-1",
        aws_access_key_id=ADMIN[0],
        aws_secret_access_key=ADMIN[1],
        timecode_type="RELATIVE",
        max_retries=0,
    ).put(one_fragment())
    assert (summary.fragments_acknowledged, summary.errors) == (1, [])


# ---- safe defaults -----------------------------------------------------------------------


def serve_command(tmp_path: Path, *flags: str) -> list[str]:
    data = str(tmp_path / "data")
    return [sys.executable, "-m", "openkvs", "serve", "--data-dir", data, *flags]


def test_development_mode_accepts_anything(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server()
    status, _, body = raw_post(server, "/listStreams", {"Authorization": "nonsense"})
    assert (status, json.loads(body)) == (200, {"StreamInfoList": []})
    assert client(server, ("any", "thing")).list_streams()["StreamInfoList"] == []


def test_a_public_address_needs_credentials_or_insecure(tmp_path: Path) -> None:
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKVS_")}
    done = subprocess.run(
        serve_command(tmp_path, "--host", "0.0.0.0", "--port", port),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--credentials" in done.stderr and "--insecure" in done.stderr

    proc = subprocess.Popen(
        serve_command(tmp_path, "--host", "0.0.0.0", "--port", port, "--insecure"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["level"] == "warning" and "authentication is OFF" in first["msg"]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("--insecure did not start listening")
    finally:
        proc.terminate()
        proc.wait(10)


# ---- access rules ------------------------------------------------------------------------


def test_access_rules_allow_and_deny_per_prefix(
    make_server,
    credentials: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                ADMIN[0]: {"read": [""], "write": [""], "admin": [""]},
                CAMERA[0]: {"write": ["cam-1"]},
                VIEWER[0]: {"read": ["cam-"]},
            }
        )
    )
    server = make_server(
        "--credentials",
        str(credentials),
        "--access-rules",
        str(rules),
        "--getmedia-idle-timeout-s",
        "0.3",
    )
    admin, camera, viewer = client(server), client(server, CAMERA), client(server, VIEWER)
    for name in ("cam-1", "cam-2", "lobby"):
        admin.create_stream(StreamName=name, DataRetentionInHours=1)

    # a producer may describe its stream and find the endpoint, and write only there
    assert camera.describe_stream(StreamName="cam-1")["StreamInfo"]["StreamName"] == "cam-1"
    assert camera.get_data_endpoint(StreamName="cam-1", APIName="PUT_MEDIA")["DataEndpoint"]
    assert sdk_put(server, "cam-1", producer_sdk_headers(server.url, "cam-1", CAMERA)).status == 200
    denied = sdk_put(server, "cam-2", producer_sdk_headers(server.url, "cam-2", CAMERA))
    assert denied.status == 401 and denied.headers["x-amzn-errortype"] == "NotAuthorizedException"
    assert refused(lambda: camera.create_stream(StreamName="cam-9"))[:2] == (
        401,
        "NotAuthorizedException",
    )
    assert [s["StreamName"] for s in camera.list_streams()["StreamInfoList"]] == ["cam-1"]

    # a viewer reads cam-* only, and tags nothing
    media = client(server, VIEWER, "kinesis-video-media")
    media.get_media(StreamName="cam-2", StartSelector={"StartSelectorType": "EARLIEST"})
    status, code, message = refused(
        lambda: media.get_media(StreamName="lobby", StartSelector={"StartSelectorType": "NOW"})
    )
    assert (status, code) == (401, "NotAuthorizedException") and "kinesisvideo:GetMedia" in message
    arn = admin.describe_stream(StreamName="cam-2")["StreamInfo"]["StreamARN"]
    assert refused(lambda: viewer.tag_resource(ResourceARN=arn, Tags=[{"Key": "k", "Value": "v"}]))[
        :2
    ] == (401, "AccessDeniedException")
    assert [s["StreamName"] for s in viewer.list_streams()["StreamInfoList"]] == ["cam-1", "cam-2"]
    assert len(admin.list_streams()["StreamInfoList"]) == 3
