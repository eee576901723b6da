"""What the client commands share: the endpoint flag and botocore clients."""

from __future__ import annotations

import argparse
import os
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"


def make_client(service: str, endpoint: str) -> Any:
    """A botocore client; development credentials when none are configured."""
    session = botocore.session.get_session()
    keys: dict[str, str] = {}
    if session.get_credentials() is None:
        keys = {"aws_access_key_id": "openkvs", "aws_secret_access_key": "openkvs"}
    region = session.get_config_variable("region") or "us-west-2"
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
