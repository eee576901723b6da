"""Input validation driven by botocore's service model.

AWS publishes every constraint of its API (required members, types, lengths,
ranges, patterns, enums) in the service model botocore ships, so the model *is*
the validation table: no per-operation hand checks that could drift from it.
botocore itself only checks a subset client-side (no max, pattern or enum), so
the server must check the rest, the way AWS does, for raw HTTP and other SDKs.

Messages follow AWS's wording: ``1 validation error detected: Value 'a b' at
'streamName' failed to satisfy constraint: Member must satisfy regular
expression pattern: [a-zA-Z0-9_.-]+``.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import botocore.loaders
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from openkvs.server.errors import AwsError, InvalidArgumentException, InvalidResourceFormatException

Matcher = Callable[[str], bool]

# JSON types accepted for each model type; bool is an int subclass, so it is excluded by hand.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "blob": (str,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "boolean": (bool,),
    "timestamp": (int, float, str),
    "structure": (dict,),
    "list": (list,),
    "map": (dict,),
}
_TYPE_NAMES = {
    "string": "a string",
    "blob": "a base64 string",
    "integer": "an integer",
    "long": "an integer",
    "float": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "timestamp": "a timestamp",
    "structure": "an object",
    "list": "a list",
    "map": "an object",
}
# A class of Unicode categories, as in TagKey's ``^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$``.
_CLASS_PATTERN = re.compile(r"\^?\(?\[((?:\\p\{\w+\}|\\.|[^\]\\])+)\]([*+])\)?\$?")
_CLASS_TOKEN = re.compile(r"\\p\{(\w+)\}|\\(.)|(.)")


@functools.cache
def service_model(service: str) -> ServiceModel:
    """The service model botocore ships (loaded once; about 0.1 s)."""
    loader = botocore.loaders.Loader()
    return ServiceModel(loader.load_service_model(service, "service-2"), service)


@functools.cache
def pattern_matcher(pattern: str) -> Matcher:
    """A full-match test for a model pattern (Java regex syntax).

    AWS anchors patterns to the whole value (a name with a space is rejected even
    though ``[a-zA-Z0-9_.-]+`` matches part of it), and Java's ``\\w``/``\\d`` are
    ASCII, hence ``re.ASCII``. Python's ``re`` lacks Java's
    ``\\p{L}`` categories, which the model uses only as a single character class
    repeated (tag keys and values); those become a per-character category test.
    """
    if "\\p{" not in pattern:
        compiled = re.compile(pattern, re.ASCII)
        return lambda value: compiled.fullmatch(value) is not None
    whole = _CLASS_PATTERN.fullmatch(pattern)
    if whole is None:
        raise ValueError(f"unsupported Unicode pattern in the service model: {pattern}")
    categories, literals = set(), set()
    for category, escaped, plain in _CLASS_TOKEN.findall(whole.group(1)):
        if plain == "-":  # a range such as a-z: not used alongside \p{} in the model
            raise ValueError(f"unsupported Unicode pattern in the service model: {pattern}")
        if category:
            categories.add(category)
        else:
            literals.add(escaped or plain)

    def allowed(char: str) -> bool:
        category = unicodedata.category(char)
        return char in literals or category in categories or category[0] in categories

    nonempty = whole.group(2) == "+"
    return lambda value: (bool(value) or not nonempty) and all(map(allowed, value))


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed constraint, phrased as AWS phrases it."""

    path: str
    value: Any
    constraint: str
    shape: str

    def __str__(self) -> str:
        return f"Value {_render(self.value)} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def has_json_type(kind: str, value: Any) -> bool:
    """Whether a decoded JSON value has the model type ``kind`` (true/false are not integers)."""
    wanted = _JSON_TYPES.get(kind, (object,))
    return isinstance(value, wanted) and (bool in wanted or not isinstance(value, bool))


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 256 else f"'{value[:256]}...'"
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 256 else text[:256] + "..."


def _member_path(parent: str, member: str) -> str:
    name = member[:1].lower() + member[1:]
    return f"{parent}.{name}" if parent else name


class Validator:
    """Checks request bodies against one service's model before a handler runs.

    ``handler_limits`` names shapes whose ``max`` is a service limit with its own
    error (50 tags → TagsPerResourceExceededLimitException), so the handler checks
    it against the resulting total rather than the validator rejecting the request.
    """

    def __init__(self, service: str, handler_limits: Iterable[str] = ()) -> None:
        self.model = service_model(service)
        self.handler_limits = frozenset(handler_limits)

    def operation(self, name: str) -> OperationModel:
        return self.model.operation_model(name)

    def check(self, operation: str, body: dict[str, Any]) -> None:
        """Raise InvalidArgumentException listing every violation, as AWS does.

        A malformed ARN is InvalidResourceFormatException where the operation's
        model lists that error (TagStream, UntagStream, ListTagsForStream).
        """
        op = self.operation(operation)
        if op.input_shape is None:
            return
        violations = list(self._structure(op.input_shape, body, ""))
        if not violations:
            return
        count = len(violations)
        message = f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(
            map(str, violations)
        )
        error: type[AwsError] = InvalidArgumentException
        modelled = {shape.name for shape in op.error_shapes}
        if "InvalidResourceFormatException" in modelled and any(
            v.shape == "ResourceARN" for v in violations
        ):
            error = InvalidResourceFormatException
        raise error(message)

    def _structure(
        self, shape: StructureShape, value: dict[str, Any], path: str
    ) -> Iterable[Violation]:
        for name in shape.required_members:
            if value.get(name) is None:
                yield Violation(
                    _member_path(path, name),
                    None,
                    "Member must not be null",
                    shape.members[name].name,
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:  # JSON null means absent, as on AWS
                yield from self._value(member, value[name], _member_path(path, name))

    def _value(self, shape: Shape, value: Any, path: str) -> Iterable[Violation]:
        kind = shape.type_name
        if not has_json_type(kind, value):
            yield Violation(
                path, value, f"Member must be {_TYPE_NAMES.get(kind, kind)}", shape.name
            )
            return
        meta = shape.metadata
        if kind == "string":
            yield from self._string(shape, value, path)
        elif kind in ("integer", "long", "float", "double"):
            if "min" in meta and value < meta["min"]:
                yield Violation(
                    path,
                    value,
                    f"Member must have value greater than or equal to {meta['min']}",
                    shape.name,
                )
            if "max" in meta and value > meta["max"]:
                yield Violation(
                    path,
                    value,
                    f"Member must have value less than or equal to {meta['max']}",
                    shape.name,
                )
        elif isinstance(shape, StructureShape):
            yield from self._structure(shape, value, path)
        elif isinstance(shape, ListShape | MapShape):
            yield from self._collection(shape, value, path)

    def _length(
        self, shape: Shape, value: Any, path: str, check_max: bool = True
    ) -> Violation | None:
        meta = shape.metadata
        if "min" in meta and len(value) < meta["min"]:
            message = f"Member must have length greater than or equal to {meta['min']}"
        elif check_max and "max" in meta and len(value) > meta["max"]:
            message = f"Member must have length less than or equal to {meta['max']}"
        else:
            return None
        return Violation(path, value, message, shape.name)

    def _string(self, shape: Shape, value: str, path: str) -> Iterable[Violation]:
        meta = shape.metadata
        if (violation := self._length(shape, value, path)) is not None:
            yield violation
        elif "pattern" in meta and not pattern_matcher(meta["pattern"])(value):
            yield Violation(
                path,
                value,
                f"Member must satisfy regular expression pattern: {meta['pattern']}",
                shape.name,
            )
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            yield Violation(
                path, value, f"Member must satisfy enum value set: [{', '.join(enum)}]", shape.name
            )

    def _collection(
        self, shape: ListShape | MapShape, value: list[Any] | dict[str, Any], path: str
    ) -> Iterable[Violation]:
        check_max = shape.name not in self.handler_limits
        if (violation := self._length(shape, value, path, check_max)) is not None:
            yield violation
        if isinstance(shape, ListShape):
            for i, item in enumerate(value):
                yield from self._value(shape.member, item, f"{path}.{i + 1}.member")
        else:
            assert isinstance(value, dict)
            for key, item in value.items():
                yield from self._value(shape.key, key, f"{path}.key")
                yield from self._value(shape.value, item, f"{path}.{key}")


def parse_timestamp(value: Any, name: str = "StartTimestamp") -> int:
    """A timestamp member as epoch ms: botocore sends epoch seconds; accept ISO-8601 too."""
    if isinstance(value, bool):
        raise InvalidArgumentException(f"{name} must be a timestamp.")
    if isinstance(value, int | float | str):
        try:
            return int(round(float(value) * 1000))
        except (ValueError, OverflowError):  # not a number, NaN, or out of range (1e308)
            pass
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except (ValueError, OverflowError):
            pass
    raise InvalidArgumentException(f"{name} must be a timestamp.")
