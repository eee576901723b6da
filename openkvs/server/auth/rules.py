"""Optional per-stream access rules: which keys may read, write or administer which streams.

The file (``--access-rules``) maps an access key id (or ``"*"``, every key) to
stream-name prefixes per permission; ``""`` matches every stream::

    {"AKIDCAMERA": {"write": ["camera-1"]},
     "AKIDVIEWER": {"read": ["camera-", "lobby"]},
     "AKIDADMIN":  {"read": [""], "write": [""], "admin": [""]}}

``read`` is GetMedia and the archived-media operations; ``write`` is PutMedia; ``admin`` is create, delete, update
and tag. Any grant on a stream also lets the key see it (DescribeStream,
GetDataEndpoint, ListTags*, ListStreams): a producer must describe its stream
and ask for the PUT_MEDIA endpoint, an admin needs the current version.
A denial is the error the service model lists for the operation (401).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import botocore.session

from openkvs.server.auth.keys import AuthConfigError
from openkvs.server.errors import AccessDeniedException, AwsError, NotAuthorizedException

READ, WRITE, ADMIN = "read", "write", "admin"
SEE = "see"  # any grant on the stream
PERMISSIONS = (READ, WRITE, ADMIN)

# operation -> what it needs on the stream it names
NEEDS: dict[str, str] = {
    "GetMedia": READ,
    "ListFragments": READ,
    "GetMediaForFragmentList": READ,
    "GetClip": READ,
    "GetImages": READ,
    "GetHLSStreamingSessionURL": READ,
    "GetDASHStreamingSessionURL": READ,
    "PutMedia": WRITE,
    "DescribeStream": SEE,
    "GetDataEndpoint": SEE,
    "ListStreams": SEE,
    "ListTagsForStream": SEE,
    "ListTagsForResource": SEE,
    "CreateStream": ADMIN,
    "DeleteStream": ADMIN,
    "UpdateStream": ADMIN,
    "UpdateDataRetention": ADMIN,
    "TagStream": ADMIN,
    "UntagStream": ADMIN,
    "TagResource": ADMIN,
    "UntagResource": ADMIN,
}
MODELS = ("kinesisvideo", "kinesis-video-media", "kinesis-video-archived-media")


@dataclass(frozen=True)
class Operation:
    name: str
    denial: type[AwsError]


def operations() -> dict[str, Operation]:
    """HTTP path segment -> operation, with the denial error its botocore model lists."""
    session = botocore.session.get_session()
    table = {}
    for service in MODELS:
        model = session.get_service_model(service)
        for name in model.operation_names:
            op = model.operation_model(name)
            errors = {shape.name for shape in op.error_shapes}
            denial = (
                AccessDeniedException
                if "AccessDeniedException" in errors
                else NotAuthorizedException
            )
            table[op.http["requestUri"].lstrip("/")] = Operation(name, denial)
    # PutMedia is in no SDK model; its documentation lists NotAuthorizedException (spec §4)
    table["putMedia"] = Operation("PutMedia", NotAuthorizedException)
    return table


@dataclass
class AccessRules:
    """Prefix grants per access key; ``"*"`` grants apply to every key."""

    grants: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)

    def allows(self, access_key: str, need: str, stream: str) -> bool:
        needs = PERMISSIONS if need == SEE else (need,)
        for who in (access_key, "*"):
            grant = self.grants.get(who, {})
            if any(stream.startswith(p) for n in needs for p in grant.get(n, ())):
                return True
        return False

    def check(self, access_key: str, op: Operation, stream: str | None) -> None:
        """Raise the model's denial error unless ``access_key`` may run ``op`` on ``stream``.

        A request that names no stream passes only with a grant on every stream
        (prefix ``""``), so a malformed request cannot slip past its rule.
        ListStreams always runs: it lists only what :meth:`visible` lets through.
        """
        if op.name == "ListStreams" or self.allows(
            access_key, NEEDS.get(op.name, ADMIN), stream or ""
        ):
            return
        raise op.denial(
            f"User: {access_key} is not authorized to perform: kinesisvideo:{op.name} "
            f"on resource: {stream or '*'}"
        )

    def visible(self, access_key: str) -> Callable[[str], bool]:
        """The streams ListStreams shows this key: those it holds any grant on."""
        return lambda stream: self.allows(access_key, SEE, stream)


def load_rules(path: str) -> AccessRules:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise AuthConfigError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise AuthConfigError(f"{path} is not valid JSON: {exc}") from None
    return parse_rules(data, path)


def parse_rules(data: object, source: str = "access rules") -> AccessRules:
    if not isinstance(data, dict):
        raise AuthConfigError(f"{source}: expected an object of access key id -> grants")
    grants: dict[str, dict[str, tuple[str, ...]]] = {}
    for key_id, grant in data.items():
        if not isinstance(grant, dict) or not set(grant) <= set(PERMISSIONS):
            raise AuthConfigError(
                f"{source}: {key_id!r} must map to an object with read, write or admin lists"
            )
        for need, prefixes in grant.items():
            if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                raise AuthConfigError(f"{source}: {key_id}.{need} must be a list of prefixes")
        grants[key_id] = {need: tuple(prefixes) for need, prefixes in grant.items()}
    return AccessRules(grants)
