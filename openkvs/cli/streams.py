"""``openkvs streams list|create|describe|delete``."""

from __future__ import annotations

import argparse
import json
import sys

from openkvs.cli.common import add_endpoint, make_client


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    streams = sub.add_parser("streams", help="list, create, describe or delete streams")
    streams.add_argument("action", choices=("list", "create", "describe", "delete"))
    streams.add_argument("name", nargs="?", help="stream name (not for list)")
    streams.add_argument(
        "--retention-hours",
        type=int,
        default=24,
        help="DataRetentionInHours for create (default 24)",
    )
    add_endpoint(streams)


def run(args: argparse.Namespace) -> int:
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
