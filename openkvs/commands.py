"""Client commands of the ``openkvs`` CLI: ``streams`` and ``get``, over botocore clients."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from openkvs.media import follow, iter_fragments, write_mkv

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
SELECTORS = ("EARLIEST", "NOW")


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


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    endpoint = os.environ.get("OPENKVS_ENDPOINT_URL", DEFAULT_ENDPOINT)
    streams = sub.add_parser("streams", help="list, create, describe or delete streams")
    streams.add_argument("action", choices=("list", "create", "describe", "delete"))
    streams.add_argument("name", nargs="?", help="stream name (not for list)")
    streams.add_argument(
        "--retention-hours",
        type=int,
        default=24,
        help="DataRetentionInHours for create (default 24)",
    )
    streams.add_argument(
        "--endpoint-url",
        default=endpoint,
        help=f"OpenKVS URL (env OPENKVS_ENDPOINT_URL; default {endpoint})",
    )
    get = sub.add_parser("get", help="read a stream with GetMedia into an MKV file")
    get.add_argument("name", help="stream name")
    get.add_argument("--start", default="EARLIEST", choices=SELECTORS)
    get.add_argument("--follow", action="store_true", help="keep reading the live edge")
    get.add_argument(
        "--raw",
        action="store_true",
        help="write the GetMedia chunks as received instead of one merged MKV",
    )
    get.add_argument("-o", "--output", required=True, help="file to write ('-' for stdout)")
    get.add_argument(
        "--endpoint-url",
        default=endpoint,
        help=f"OpenKVS URL (env OPENKVS_ENDPOINT_URL; default {endpoint})",
    )


def run(args: argparse.Namespace) -> int:
    try:
        return streams(args) if args.command == "streams" else get(args)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"openkvs: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        if error.get("Code") == "ResourceNotFoundException":
            print("Create it with: openkvs streams create NAME", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(
            f"openkvs: {exc}. Is the server running at {args.endpoint_url}? "
            "Start it with ./scripts/serve or pass --endpoint-url.",
            file=sys.stderr,
        )
        return 1


def streams(args: argparse.Namespace) -> int:
    client = make_client("kinesisvideo", args.endpoint_url)
    if args.action != "list" and not args.name:
        print(f"openkvs: 'streams {args.action}' needs a stream name.", file=sys.stderr)
        return 2
    if args.action == "list":
        for page in client.get_paginator("list_streams").paginate():
            for info in page["StreamInfoList"]:
                print(
                    f"{info['StreamName']}\t{info['Status']}\t"
                    f"{info.get('DataRetentionInHours', 0)}h\t{info['StreamARN']}"
                )
    elif args.action == "create":
        arn = client.create_stream(StreamName=args.name, DataRetentionInHours=args.retention_hours)[
            "StreamARN"
        ]
        print(arn)
    elif args.action == "describe":
        info = client.describe_stream(StreamName=args.name)["StreamInfo"]
        print(json.dumps(info, indent=2, default=str))
    else:
        arn = client.describe_stream(StreamName=args.name)["StreamInfo"]["StreamARN"]
        client.delete_stream(StreamARN=arn)
    return 0


def get(args: argparse.Namespace) -> int:
    media = make_client("kinesis-video-media", args.endpoint_url)
    selector = {"StartSelectorType": args.start}
    if args.follow:
        fragments = follow(media, args.name, selector)
    else:
        payload = media.get_media(StreamName=args.name, StartSelector=selector)["Payload"]
        fragments = iter_fragments(payload)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    count = 0

    def counted():  # type: ignore[no-untyped-def]
        nonlocal count
        for fragment in fragments:
            count += 1
            print(f"\rfragments: {count}", end="", file=sys.stderr, flush=True)
            yield fragment

    try:
        if args.raw:
            for fragment in counted():
                out.write(fragment.raw)
        else:
            write_mkv(counted(), out)
    except KeyboardInterrupt:
        pass
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        print(f"\rfragments: {count} written to {args.output}", file=sys.stderr)
    return 0
