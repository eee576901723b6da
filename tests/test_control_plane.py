"""The control plane end to end: real boto3, the AWS CLI and raw HTTP against a real server.

One server serves the whole module (each test uses its own stream names), so the
file stays fast; only the restart test starts servers of its own.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib.util
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from openkvs.server.config import Config
from openkvs.server.control.plane import ControlPlane
from openkvs.server.errors import (
    InvalidArgumentException,
    ResourceInUseException,
    ResourceNotFoundException,
    ServiceUnavailable,
    VersionMismatchException,
)
from openkvs.server.model import StreamInfo
from openkvs.server.store.base import StoreError
from openkvs.server.store.memory import MemoryStore
from tests.conftest import ServerProcess

# The store the module's server uses: None = the default on-disk store (once it exists),
# ":memory:" = MemoryStore. Set it to ":memory:" by hand to rule the disk out.
STORE: str | None = (
    None if importlib.util.find_spec("openkvs.server.store.embedded") else ":memory:"
)

ARN = re.compile(
    r"arn:aws:kinesisvideo:us-west-2:123456789012:stream/(?P<name>[\w.-]+)/(?P<ms>\d+)"
)
DEFAULT_KMS = "arn:aws:kms:us-west-2:123456789012:alias/aws/kinesisvideo"
API_NAMES = [
    "PUT_MEDIA",
    "GET_MEDIA",
    "LIST_FRAGMENTS",
    "GET_MEDIA_FOR_FRAGMENT_LIST",
    "GET_HLS_STREAMING_SESSION_URL",
    "GET_DASH_STREAMING_SESSION_URL",
    "GET_CLIP",
    "GET_IMAGES",
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = Path(STORE) if STORE else tmp_path_factory.mktemp("control") / "data"
    server = ServerProcess(data_dir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def kvs(srv: ServerProcess) -> Any:
    return srv.client()


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A stream name unique to this test (the server is shared by the module)."""
    base = re.sub(r"[^a-zA-Z0-9_.-]", "-", request.node.name)[:40]
    return f"{base}-{secrets.token_hex(3)}"


def expect(kvs: Any, code: str, status: int, call: Callable[..., Any], **params: Any) -> str:
    """Call; assert boto3 raises ``kvs.exceptions.<code>`` with ``status`` and a request id."""
    with pytest.raises(getattr(kvs.exceptions, code)) as caught:
        call(**params)
    meta = caught.value.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == status
    assert meta["HTTPHeaders"]["x-amzn-requestid"] == meta["RequestId"]
    message: str = caught.value.response["Error"]["Message"]
    assert message
    return message


def post(srv: ServerProcess, op: str, body: bytes | dict[str, Any]) -> tuple[int, Any, Any]:
    """A SigV4-signed raw request, bypassing botocore's client-side validation."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest(
        "POST", f"{srv.url}/{op}", data=data, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "kinesisvideo", "us-west-2").add_auth(request)
    raw = urllib.request.Request(
        request.url, data=data, headers=dict(request.headers), method="POST"
    )
    try:
        with urllib.request.urlopen(raw, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def create(kvs: Any, name: str, **params: Any) -> str:
    arn: str = kvs.create_stream(StreamName=name, **params)["StreamARN"]
    return arn


def describe(kvs: Any, name: str) -> dict[str, Any]:
    info: dict[str, Any] = kvs.describe_stream(StreamName=name)["StreamInfo"]
    return info


# ---- streams ------------------------------------------------------------------------------


def test_create_and_describe(kvs: Any, name: str) -> None:
    before = time.time()
    arn = create(
        kvs,
        name,
        DeviceName="camera-1",
        MediaType="video/h264,audio/aac",
        DataRetentionInHours=24,
        Tags={"team": "video"},
    )
    match = ARN.fullmatch(arn)
    assert match and match["name"] == name
    info = describe(kvs, name)
    assert info == kvs.describe_stream(StreamARN=arn)["StreamInfo"]
    assert info["StreamARN"] == arn
    assert info["DeviceName"] == "camera-1"
    assert info["MediaType"] == "video/h264,audio/aac"
    assert info["KmsKeyId"] == DEFAULT_KMS
    assert info["Status"] == "ACTIVE"
    assert info["DataRetentionInHours"] == 24
    assert re.fullmatch(r"[a-zA-Z0-9]{20}", info["Version"])
    created = info["CreationTime"].timestamp()
    assert before - 1 <= created <= time.time() + 1
    assert int(match["ms"]) == round(created * 1000)


def test_create_defaults_and_raw_json(srv: ServerProcess, kvs: Any, name: str) -> None:
    """Absent optional members are left out; CreationTime is epoch seconds; retention defaults to 0."""
    create(kvs, name, KmsKeyId="arn:aws:kms:us-west-2:123456789012:key/abc")
    status, _, body = post(srv, "describeStream", {"StreamName": name})
    assert status == 200
    info = body["StreamInfo"]
    assert "DeviceName" not in info and "MediaType" not in info
    assert info["KmsKeyId"] == "arn:aws:kms:us-west-2:123456789012:key/abc"
    assert info["DataRetentionInHours"] == 0
    assert isinstance(info["CreationTime"], float)
    assert list(info) == [
        "StreamName",
        "StreamARN",
        "KmsKeyId",
        "Version",
        "Status",
        "CreationTime",
        "DataRetentionInHours",
    ]


def test_create_existing_name_is_in_use(kvs: Any, name: str) -> None:
    create(kvs, name)
    expect(kvs, "ResourceInUseException", 400, kvs.create_stream, StreamName=name)


def test_describe_unknown_stream(srv: ServerProcess, kvs: Any, name: str) -> None:
    message = expect(kvs, "ResourceNotFoundException", 404, kvs.describe_stream, StreamName=name)
    assert message == "The requested stream is not found or not active."
    arn = f"arn:aws:kinesisvideo:us-west-2:123456789012:stream/{name}/1"
    expect(kvs, "ResourceNotFoundException", 404, kvs.describe_stream, StreamARN=arn)
    # Both identifiers are optional in the model, so botocore sends neither or both.
    expect(kvs, "InvalidArgumentException", 400, kvs.describe_stream)
    create(kvs, name)
    expect(
        kvs, "InvalidArgumentException", 400, kvs.describe_stream, StreamName=name, StreamARN=arn
    )


def test_client_error_carries_request_id(kvs: Any, name: str) -> None:
    """Errors reach boto3 as typed exceptions with a code, a message and a request id."""
    with pytest.raises(ClientError) as caught:
        kvs.describe_stream(StreamName=name)
    error = caught.value.response
    assert error["Error"]["Code"] == "ResourceNotFoundException"
    assert (
        error["ResponseMetadata"]["HTTPHeaders"]["x-amz-requestid"]
        == error["ResponseMetadata"]["RequestId"]
    )


def test_list_streams_pages_in_name_order(kvs: Any, name: str) -> None:
    names = [f"{name}-{i}" for i in (3, 0, 6, 1, 5, 2, 4)]
    for each in names:
        create(kvs, each)
    create(kvs, f"other-{name}")  # same letters, but not the prefix
    condition = {"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": name}
    pages = list(
        kvs.get_paginator("list_streams").paginate(
            StreamNameCondition=condition, PaginationConfig={"PageSize": 3}
        )
    )
    assert [len(p["StreamInfoList"]) for p in pages] == [3, 3, 1]
    listed = [s["StreamName"] for p in pages for s in p["StreamInfoList"]]
    assert listed == sorted(names)
    assert pages[0]["StreamInfoList"][0] == describe(kvs, sorted(names)[0])
    assert "NextToken" not in pages[-1]
    token = pages[0]["NextToken"]
    assert re.fullmatch(r"[a-zA-Z0-9+/=]+", token)
    # A token resumes after the last name returned, and MaxResults caps the page.
    page = kvs.list_streams(MaxResults=2, NextToken=token, StreamNameCondition=condition)
    assert [s["StreamName"] for s in page["StreamInfoList"]] == sorted(names)[3:5]
    everything = [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]]
    assert everything == sorted(everything) and set(names) <= set(everything)


def test_list_streams_bad_token(kvs: Any) -> None:
    bogus = base64.b64encode(b"not one of ours").decode()
    expect(kvs, "InvalidArgumentException", 400, kvs.list_streams, NextToken=bogus)
    expect(kvs, "InvalidArgumentException", 400, kvs.list_streams, NextToken="!!")


def test_update_stream(kvs: Any, name: str) -> None:
    create(kvs, name, DeviceName="old", MediaType="video/h264")
    version = describe(kvs, name)["Version"]
    kvs.update_stream(StreamName=name, CurrentVersion=version, MediaType="video/h265")
    info = describe(kvs, name)
    assert (info["DeviceName"], info["MediaType"]) == ("old", "video/h265")
    assert info["Version"] != version
    expect(
        kvs,
        "VersionMismatchException",
        400,
        kvs.update_stream,
        StreamName=name,
        CurrentVersion=version,
        DeviceName="new",
    )
    kvs.update_stream(StreamARN=info["StreamARN"], CurrentVersion=info["Version"], DeviceName="new")
    assert describe(kvs, name)["DeviceName"] == "new"
    expect(
        kvs,
        "ResourceNotFoundException",
        404,
        kvs.update_stream,
        StreamName=name + "x",
        CurrentVersion="v1",
    )


def test_update_data_retention(kvs: Any, name: str) -> None:
    create(kvs, name)
    version = describe(kvs, name)["Version"]

    def change(operation: str, hours: int, current: str | None = None) -> None:
        kvs.update_data_retention(
            StreamName=name,
            CurrentVersion=current or describe(kvs, name)["Version"],
            Operation=f"{operation}_DATA_RETENTION",
            DataRetentionChangeInHours=hours,
        )

    change("INCREASE", 48)
    assert describe(kvs, name)["DataRetentionInHours"] == 48
    assert describe(kvs, name)["Version"] != version
    change("DECREASE", 47)
    assert describe(kvs, name)["DataRetentionInHours"] == 1
    expect(kvs, "InvalidArgumentException", 400, change, operation="DECREASE", hours=2)
    expect(kvs, "InvalidArgumentException", 400, change, operation="INCREASE", hours=87_600)
    change("INCREASE", 87_599)
    assert describe(kvs, name)["DataRetentionInHours"] == 87_600
    expect(
        kvs, "VersionMismatchException", 400, change, operation="DECREASE", hours=1, current=version
    )


def test_get_data_endpoint(srv: ServerProcess, kvs: Any, name: str) -> None:
    arn = create(kvs, name)
    for api in API_NAMES:
        assert kvs.get_data_endpoint(StreamName=name, APIName=api)["DataEndpoint"] == srv.url
    assert kvs.get_data_endpoint(StreamARN=arn, APIName="GET_MEDIA")["DataEndpoint"] == srv.url
    expect(
        kvs,
        "ResourceNotFoundException",
        404,
        kvs.get_data_endpoint,
        StreamName=name + "x",
        APIName="PUT_MEDIA",
    )


def test_delete_stream(kvs: Any, name: str) -> None:
    arn = create(kvs, name)
    stale = "A" * 20
    expect(
        kvs, "VersionMismatchException", 400, kvs.delete_stream, StreamARN=arn, CurrentVersion=stale
    )
    kvs.delete_stream(StreamARN=arn, CurrentVersion=describe(kvs, name)["Version"])
    expect(kvs, "ResourceNotFoundException", 404, kvs.describe_stream, StreamName=name)
    expect(kvs, "ResourceNotFoundException", 404, kvs.delete_stream, StreamARN=arn)
    # A re-created stream is a different resource: the old ARN stays unknown.
    new_arn = create(kvs, name)
    assert new_arn != arn
    expect(kvs, "ResourceNotFoundException", 404, kvs.describe_stream, StreamARN=arn)
    kvs.delete_stream(StreamARN=new_arn)
    assert name not in [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]]


# ---- tags ---------------------------------------------------------------------------------


def test_tags_by_stream(kvs: Any, name: str) -> None:
    arn = create(kvs, name, Tags={"a": "1"})
    version = describe(kvs, name)["Version"]
    kvs.tag_stream(StreamName=name, Tags={"b": "2", "a": "one"})
    kvs.tag_stream(StreamARN=arn, Tags={"c": ""})
    assert kvs.list_tags_for_stream(StreamName=name)["Tags"] == {"a": "one", "b": "2", "c": ""}
    kvs.untag_stream(StreamARN=arn, TagKeyList=["a", "missing"])
    assert kvs.list_tags_for_stream(StreamARN=arn)["Tags"] == {"b": "2", "c": ""}
    assert describe(kvs, name)["Version"] == version  # tags are not stream metadata
    too_many = {f"k{i}": "v" for i in range(49)}  # 2 + 49 > 50
    expect(
        kvs,
        "TagsPerResourceExceededLimitException",
        400,
        kvs.tag_stream,
        StreamName=name,
        Tags=too_many,
    )
    assert len(kvs.list_tags_for_stream(StreamName=name)["Tags"]) == 2
    expect(
        kvs,
        "ResourceNotFoundException",
        404,
        kvs.tag_stream,
        StreamName=name + "x",
        Tags={"a": "b"},
    )
    expect(
        kvs,
        "InvalidResourceFormatException",
        400,
        kvs.untag_stream,
        StreamARN="arn:nope",
        TagKeyList=["a"],
    )


def test_tags_by_resource(kvs: Any, name: str) -> None:
    arn = create(kvs, name)
    assert kvs.list_tags_for_resource(ResourceARN=arn)["Tags"] == {}
    kvs.tag_resource(
        ResourceARN=arn, Tags=[{"Key": "env", "Value": "prod"}, {"Key": "x", "Value": "y"}]
    )
    assert kvs.list_tags_for_resource(ResourceARN=arn)["Tags"] == {"env": "prod", "x": "y"}
    kvs.untag_resource(ResourceARN=arn, TagKeyList=["x"])
    assert kvs.list_tags_for_stream(StreamName=name)["Tags"] == {"env": "prod"}
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    expect(
        kvs,
        "TagsPerResourceExceededLimitException",
        400,
        kvs.tag_resource,
        ResourceARN=arn,
        Tags=tags,
    )
    unknown = arn.rsplit("/", 1)[0] + "/1"
    expect(kvs, "ResourceNotFoundException", 404, kvs.list_tags_for_resource, ResourceARN=unknown)
    expect(
        kvs,
        "InvalidArgumentException",
        400,
        kvs.tag_resource,
        ResourceARN="arn:nope",
        Tags=tags[:1],
    )


def test_create_with_too_many_tags(kvs: Any, name: str) -> None:
    tags = {f"k{i}": "v" for i in range(51)}
    expect(
        kvs,
        "TagsPerResourceExceededLimitException",
        400,
        kvs.create_stream,
        StreamName=name,
        Tags=tags,
    )
    expect(kvs, "ResourceNotFoundException", 404, kvs.describe_stream, StreamName=name)


# ---- server-side validation (raw HTTP: botocore would refuse to send these) ---------------

VALID_ARN = "arn:aws:kinesisvideo:us-west-2:123456789012:stream/s/1"
INVALID = [
    (
        "createStream",
        {},
        "InvalidArgumentException",
        "'streamName' failed to satisfy constraint: Member must not be null",
    ),
    (
        "createStream",
        {"StreamName": "bad name"},
        "InvalidArgumentException",
        "regular expression pattern",
    ),
    (
        "createStream",
        {"StreamName": "x" * 257},
        "InvalidArgumentException",
        "length less than or equal to 256",
    ),
    (
        "createStream",
        {"StreamName": ""},
        "InvalidArgumentException",
        "length greater than or equal to 1",
    ),
    ("createStream", {"StreamName": 7}, "InvalidArgumentException", "Member must be a string"),
    (
        "createStream",
        {"StreamName": "s", "DataRetentionInHours": "24"},
        "InvalidArgumentException",
        "Member must be an integer",
    ),
    (
        "createStream",
        {"StreamName": "s", "DataRetentionInHours": 2.5},
        "InvalidArgumentException",
        "Member must be an integer",
    ),
    (
        "createStream",
        {"StreamName": "s", "DataRetentionInHours": -1},
        "InvalidArgumentException",
        "greater than or equal to 0",
    ),
    (
        "createStream",
        {"StreamName": "s", "DataRetentionInHours": 87_601},
        "InvalidArgumentException",
        "87600",
    ),
    (
        "createStream",
        {"StreamName": "s", "MediaType": "h264"},
        "InvalidArgumentException",
        "'mediaType'",
    ),
    (
        "createStream",
        {"StreamName": "s", "DeviceName": "x" * 129},
        "InvalidArgumentException",
        "'deviceName'",
    ),
    (
        "createStream",
        {"StreamName": "s", "Tags": {"bad!": "v"}},
        "InvalidArgumentException",
        "'tags.key'",
    ),
    (
        "createStream",
        {"StreamName": "s", "Tags": {"k": "v" * 257}},
        "InvalidArgumentException",
        "'tags.k'",
    ),
    (
        "createStream",
        {"StreamName": "s", "Tags": ["k"]},
        "InvalidArgumentException",
        "Member must be an object",
    ),
    (
        "createStream",
        {"StreamName": "s", "StreamStorageConfiguration": {"DefaultStorageTier": "COLD"}},
        "InvalidArgumentException",
        "enum value set: [HOT, WARM]",
    ),
    (
        "createStream",
        {"StreamName": "s", "Tags": {f"k{i}": "v" for i in range(51)}},
        "TagsPerResourceExceededLimitException",
        "50",
    ),
    ("listStreams", {"MaxResults": 0}, "InvalidArgumentException", "greater than or equal to 1"),
    (
        "listStreams",
        {"MaxResults": 10_001},
        "InvalidArgumentException",
        "less than or equal to 10000",
    ),
    ("listStreams", {"MaxResults": "10"}, "InvalidArgumentException", "Member must be an integer"),
    ("listStreams", {"NextToken": "not base64!"}, "InvalidArgumentException", "'nextToken'"),
    ("listStreams", {"NextToken": "Zm9v"}, "InvalidArgumentException", "NextToken"),
    (
        "listStreams",
        {"StreamNameCondition": {"ComparisonOperator": "ENDS_WITH"}},
        "InvalidArgumentException",
        "[BEGINS_WITH]",
    ),
    (
        "listStreams",
        {"StreamNameCondition": "s"},
        "InvalidArgumentException",
        "Member must be an object",
    ),
    (
        "describeStream",
        {"StreamARN": "arn:aws:s3:::bucket"},
        "InvalidArgumentException",
        "'streamARN'",
    ),
    (
        "describeStream",
        {"StreamName": "s", "StreamARN": VALID_ARN},
        "InvalidArgumentException",
        "not both",
    ),
    ("deleteStream", {}, "InvalidArgumentException", "'streamARN'"),
    (
        "deleteStream",
        {"StreamARN": VALID_ARN, "CurrentVersion": "a-b"},
        "InvalidArgumentException",
        "'currentVersion'",
    ),
    ("updateStream", {"StreamName": "s"}, "InvalidArgumentException", "'currentVersion'"),
    (
        "updateDataRetention",
        {
            "StreamName": "s",
            "CurrentVersion": "v",
            "Operation": "GROW",
            "DataRetentionChangeInHours": 1,
        },
        "InvalidArgumentException",
        "INCREASE_DATA_RETENTION",
    ),
    (
        "updateDataRetention",
        {
            "StreamName": "s",
            "CurrentVersion": "v",
            "Operation": "INCREASE_DATA_RETENTION",
            "DataRetentionChangeInHours": 0,
        },
        "InvalidArgumentException",
        "'dataRetentionChangeInHours'",
    ),
    (
        "getDataEndpoint",
        {"StreamName": "s", "APIName": "PUT"},
        "InvalidArgumentException",
        "PUT_MEDIA",
    ),
    ("getDataEndpoint", {"StreamName": "s"}, "InvalidArgumentException", "'aPIName'"),
    ("tagStream", {"StreamName": "s", "Tags": {}}, "InvalidArgumentException", "'tags'"),
    (
        "tagStream",
        {"StreamARN": "arn:bad", "Tags": {"a": "b"}},
        "InvalidResourceFormatException",
        "'streamARN'",
    ),
    (
        "untagStream",
        {"StreamName": "s", "TagKeyList": []},
        "InvalidArgumentException",
        "'tagKeyList'",
    ),
    (
        "untagStream",
        {"StreamName": "s", "TagKeyList": [""]},
        "InvalidArgumentException",
        "'tagKeyList.1.member'",
    ),
    (
        "TagResource",
        {"ResourceARN": VALID_ARN, "Tags": {"a": "b"}},
        "InvalidArgumentException",
        "Member must be a list",
    ),
    (
        "TagResource",
        {"ResourceARN": VALID_ARN, "Tags": [{"Key": "a"}]},
        "InvalidArgumentException",
        "'tags.1.member.value'",
    ),
    ("UntagResource", {"TagKeyList": ["a"]}, "InvalidArgumentException", "'resourceARN'"),
    (
        "ListTagsForResource",
        {"ResourceARN": "arn:bad"},
        "InvalidArgumentException",
        "'resourceARN'",
    ),
]


@pytest.mark.parametrize(
    ("op", "body", "code", "needle"), INVALID, ids=[f"{c[0]}-{i}" for i, c in enumerate(INVALID)]
)
def test_server_side_validation(
    srv: ServerProcess, op: str, body: dict[str, Any], code: str, needle: str
) -> None:
    status, headers, payload = post(srv, op, body)
    assert (status, headers["x-amzn-ErrorType"]) == (400, code)
    assert headers["x-amzn-RequestId"]
    assert list(payload) == ["Message"] and needle in payload["Message"], payload


def test_validation_lists_every_violation(srv: ServerProcess) -> None:
    status, _, payload = post(
        srv, "createStream", {"StreamName": "a b", "DataRetentionInHours": -1}
    )
    assert status == 400
    assert payload["Message"].startswith(
        "2 validation errors detected: Value 'a b' at 'streamName'"
    )


def test_null_members_count_as_absent(srv: ServerProcess, kvs: Any, name: str) -> None:
    body = {"StreamName": name, "DeviceName": None, "Tags": None, "DataRetentionInHours": None}
    assert post(srv, "createStream", body)[0] == 200
    assert "DeviceName" not in describe(kvs, name)
    condition = {"ComparisonOperator": None, "ComparisonValue": None}
    body = {"MaxResults": None, "NextToken": None, "StreamNameCondition": condition}
    status, _, listed = post(srv, "listStreams", body)
    assert status == 200 and name in [s["StreamName"] for s in listed["StreamInfoList"]]


@pytest.mark.parametrize(
    ("op", "body", "status", "code"),
    [
        ("describeStreams", b"{}", 404, "UnknownOperationException"),
        ("DescribeStream", b"{}", 404, "UnknownOperationException"),
        ("describeStream", b"{not json", 400, "SerializationException"),
        ("describeStream", b"[1, 2]", 400, "SerializationException"),
    ],
)
def test_unknown_operation_and_bad_json(
    srv: ServerProcess, op: str, body: bytes, status: int, code: str
) -> None:
    got, headers, payload = post(srv, op, body)
    assert (got, headers["x-amzn-ErrorType"], headers["x-amz-ErrorType"]) == (status, code, code)
    assert headers["x-amzn-RequestId"] == headers["x-amz-RequestId"]
    assert "Message" in payload


# ---- the AWS CLI --------------------------------------------------------------------------


def aws(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_DEFAULT_REGION="us-west-2",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    cli = Path(sys.executable).with_name("aws")
    cmd = [str(cli), "kinesisvideo", *args, "--endpoint-url", srv.url, "--output", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli(srv: ServerProcess, kvs: Any, name: str) -> None:
    created = aws(srv, "create-stream", "--stream-name", name, "--data-retention-in-hours", "2")
    assert created.returncode == 0, created.stderr
    arn = json.loads(created.stdout)["StreamARN"]
    described = aws(srv, "describe-stream", "--stream-name", name)
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)["StreamInfo"]
    assert (info["StreamARN"], info["DataRetentionInHours"], info["Status"]) == (arn, 2, "ACTIVE")
    missing = aws(srv, "describe-stream", "--stream-name", name + "-missing")
    assert missing.returncode != 0
    assert "ResourceNotFoundException" in missing.stderr


# ---- durability ---------------------------------------------------------------------------


@pytest.mark.skipif(STORE is not None, reason="the embedded on-disk store is not there yet")
def test_streams_survive_restart(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    kvs = server.client()
    arn = create(kvs, "durable", DataRetentionInHours=5, Tags={"k": "v"}, MediaType="video/h264")
    create(kvs, "doomed")
    version = describe(kvs, "durable")["Version"]
    kvs.update_data_retention(
        StreamName="durable",
        CurrentVersion=version,
        Operation="INCREASE_DATA_RETENTION",
        DataRetentionChangeInHours=1,
    )
    kvs.delete_stream(StreamARN=describe(kvs, "doomed")["StreamARN"])
    before = describe(kvs, "durable")
    server.stop()
    server.start()
    kvs = server.client()
    assert describe(kvs, "durable") == before
    assert before["StreamARN"] == arn and before["DataRetentionInHours"] == 6
    assert kvs.list_tags_for_stream(StreamARN=arn)["Tags"] == {"k": "v"}
    assert [s["StreamName"] for s in kvs.list_streams()["StreamInfoList"]] == ["durable"]
    # The name of a stream created before the restart is still taken; a deleted one is free.
    expect(kvs, "ResourceInUseException", 400, kvs.create_stream, StreamName="durable")
    assert ARN.fullmatch(create(kvs, "doomed"))


# ---- in process: the lock, listeners, failed writes, the clock -----------------------------


class YieldingStore(MemoryStore):
    """A memory store whose writes yield to the loop like a real fsync, and can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    async def save_stream(self, info: StreamInfo, expected_version: str | None) -> None:
        await asyncio.sleep(0.001)
        if self.fail:
            raise StoreError("disk full")
        await super().save_stream(info, expected_version)


def plane(store: MemoryStore | None = None, clock: Callable[[], float] = time.time) -> ControlPlane:
    control = ControlPlane(store or YieldingStore(), Config(), clock)
    control.load([])
    return control


async def call(control: ControlPlane, op: str, **body: Any) -> dict[str, Any]:
    handler = control.operation(op)
    assert handler is not None
    return await handler(body)


async def test_concurrent_mutations_are_serialized() -> None:
    """Of racing creates one wins; of racing updates on one version exactly one wins."""
    control = plane()
    results = await asyncio.gather(
        *(call(control, "createStream", StreamName="race") for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, ResourceInUseException) for r in results if not isinstance(r, dict))
    version = control.resolve("race", None).version
    results = await asyncio.gather(
        *(
            call(
                control,
                "updateStream",
                StreamName="race",
                CurrentVersion=version,
                DeviceName=f"d{i}",
            )
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, VersionMismatchException) for r in results if not isinstance(r, dict))


async def test_failed_write_changes_nothing() -> None:
    store = YieldingStore()
    control = plane(store)
    await call(control, "createStream", StreamName="s", Tags={"a": "1"})
    info = control.resolve("s", None)
    before = dataclasses.replace(info)
    store.fail = True
    attempts: list[tuple[str, dict[str, Any]]] = [
        (
            "updateDataRetention",
            {
                "CurrentVersion": info.version,
                "Operation": "INCREASE_DATA_RETENTION",
                "DataRetentionChangeInHours": 1,
            },
        ),
        ("tagStream", {"Tags": {"b": "2"}}),
        ("createStream", {"StreamName": "t"}),
    ]
    for op, body in attempts:
        with pytest.raises(ServiceUnavailable):  # a 503, which clients retry
            await call(control, op, **{"StreamName": "s", **body})
    assert info == before and control.get("t") is None
    assert await store.open() == [before]


async def test_updates_reach_holders_and_deletion_notifies() -> None:
    """The media layer holds StreamInfo objects: updates apply in place; deletion closes
    the stream's runtime before the store deletes its data."""
    control = plane()
    deleted: list[tuple[StreamInfo, bool]] = []

    async def close(info: StreamInfo) -> None:
        deleted.append((info, any(s.key == info.key for s in await control.store.open())))

    control.before_delete(close)
    arn = (await call(control, "createStream", StreamName="s"))["StreamARN"]
    held = control.resolve(None, arn)
    await call(
        control,
        "updateDataRetention",
        StreamARN=arn,
        CurrentVersion=held.version,
        Operation="INCREASE_DATA_RETENTION",
        DataRetentionChangeInHours=3,
    )
    assert held.data_retention_hours == 3 and control.all_streams() == [held]
    await call(control, "deleteStream", StreamARN=arn)
    assert deleted == [(held, True)] and held.status == "DELETING"
    assert control.get("s") is None and control.all_streams() == []
    with pytest.raises(ResourceNotFoundException):
        control.resolve("s", None)


async def test_recreated_streams_get_distinct_keys_even_within_a_millisecond() -> None:
    control = plane(clock=lambda: 1_700_000_000.0)
    first = (await call(control, "createStream", StreamName="s"))["StreamARN"]
    await call(control, "deleteStream", StreamARN=first)
    second = (await call(control, "createStream", StreamName="s"))["StreamARN"]
    assert first.endswith("/s/1700000000000") and second.endswith("/s/1700000000001")
    reloaded = plane()
    reloaded.load([control.resolve("s", None)])
    later = plane(clock=lambda: 1_600_000_000.0)
    later.load(reloaded.all_streams())
    await call(later, "deleteStream", StreamARN=second)
    assert (await call(later, "createStream", StreamName="s"))["StreamARN"].endswith(
        "/1700000000002"
    )


async def test_unicode_tags_follow_the_model() -> None:
    """Tag patterns use Java's \\p{L}\\p{Z}\\p{N}; other patterns' \\w is ASCII as in Java."""
    control = plane()
    tags = {"ключ 1": "значение", "名前": "値\u00a0٣", "a_.:/=+-@": ""}
    await call(control, "createStream", StreamName="s", Tags=tags)
    assert (await call(control, "listTagsForStream", StreamName="s"))["Tags"] == tags
    with pytest.raises(InvalidArgumentException, match="'tags.key'"):
        await call(control, "tagStream", StreamName="s", Tags={"tab\tkey": "v"})
    with pytest.raises(InvalidArgumentException, match="'mediaType'"):
        await call(
            control, "updateStream", StreamName="s", CurrentVersion="v", MediaType="vidéo/h264"
        )
    assert control.operation("putMedia") is None
