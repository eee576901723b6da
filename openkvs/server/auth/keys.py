"""Where access keys come from: a credentials file and/or the environment.

Two file formats, told apart by the first character, so a deployment can reuse
what it already has:

* JSON: ``{"AKID": "secret", "AKID2": {"secret_access_key": "...", "session_token": "..."}}``
* INI, like ``~/.aws/credentials``: every section with ``aws_access_key_id`` and
  ``aws_secret_access_key`` (and optionally ``aws_session_token``) adds one key.

``OPENKVS_ACCESS_KEY_ID`` / ``OPENKVS_SECRET_ACCESS_KEY`` (/ ``OPENKVS_SESSION_TOKEN``)
add one more, for containers that take secrets as environment variables.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Mapping
from pathlib import Path

from openkvs.server.auth.sigv4 import Secret

ENV_KEY_ID = "OPENKVS_ACCESS_KEY_ID"
ENV_SECRET = "OPENKVS_SECRET_ACCESS_KEY"
ENV_TOKEN = "OPENKVS_SESSION_TOKEN"


class AuthConfigError(ValueError):
    """A credentials, access-rules or TLS setting the server cannot start with."""


def load_keys(path: str | None, environ: Mapping[str, str]) -> dict[str, Secret]:
    """Every configured key by access key id; empty means development mode."""
    keys = parse_keys(_read(path), path) if path else {}
    key_id, secret = environ.get(ENV_KEY_ID), environ.get(ENV_SECRET)
    if bool(key_id) != bool(secret):
        raise AuthConfigError(f"set both {ENV_KEY_ID} and {ENV_SECRET}, or neither")
    if key_id and secret:
        keys[key_id] = Secret(key_id, secret, environ.get(ENV_TOKEN) or None)
    return keys


def parse_keys(text: str, source: str = "credentials") -> dict[str, Secret]:
    if text.lstrip().startswith("{"):
        return _parse_json(text, source)
    return _parse_ini(text, source)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise AuthConfigError(f"cannot read {path}: {exc.strerror}") from None


def _parse_json(text: str, source: str) -> dict[str, Secret]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AuthConfigError(f"{source} is not valid JSON: {exc}") from None
    keys = {}
    for key_id, value in data.items():
        if isinstance(value, str):
            keys[key_id] = Secret(key_id, value)
        elif isinstance(value, dict) and isinstance(value.get("secret_access_key"), str):
            keys[key_id] = Secret(key_id, value["secret_access_key"], value.get("session_token"))
        else:
            raise AuthConfigError(
                f"{source}: {key_id!r} must map to a secret string or to "
                '{"secret_access_key": ..., "session_token": ...}'
            )
    return keys


def _parse_ini(text: str, source: str) -> dict[str, Secret]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source)
    except configparser.Error as exc:
        raise AuthConfigError(
            f"{source} is neither JSON nor an AWS credentials file: {exc}"
        ) from None
    keys = {}
    for name in parser.sections():
        section = parser[name]
        key_id, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
        if not key_id or not secret:
            raise AuthConfigError(
                f"{source}: [{name}] needs aws_access_key_id and aws_secret_access_key"
            )
        keys[key_id] = Secret(key_id, secret, section.get("aws_session_token") or None)
    return keys
