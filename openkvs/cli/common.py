"""What the client commands share: the endpoint flag and botocore clients."""

from __future__ import annotations

import argparse
import os
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig

from openkvs.credentials import resolve

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


def make_client(service: str, endpoint: str) -> Any:
    """A botocore client; development credentials when none are configured."""
    session = botocore.session.get_session()
    credentials, development, region = resolve(session)
    keys: dict[str, str] = {}
    if development:
        keys = {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
        }
    return session.create_client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        config=BotoConfig(read_timeout=90),
        **keys,
    )


def add_endpoint(parser: argparse.ArgumentParser) -> None:
    endpoint = os.environ.get("OPENKVS_ENDPOINT_URL", DEFAULT_ENDPOINT)
    parser.add_argument(
        "--endpoint-url",
        default=endpoint,
        help=f"OpenKVS URL (env OPENKVS_ENDPOINT_URL; default {endpoint})",
    )
