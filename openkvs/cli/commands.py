"""Client commands of the ``openkvs`` CLI: ``streams``, ``get`` and ``put``."""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError

from openkvs.cli import get, put, streams

NAMES = ("streams", "get", "put")


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    streams.add_parser(sub)
    get.add_parser(sub)
    put.add_parser(sub)


def run(args: argparse.Namespace) -> int:
    command = {"streams": streams.run, "get": get.run, "put": put.run}[args.command]
    try:
        return command(args)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"openkvs: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        if error.get("Code") == "ResourceNotFoundException":
            hint = ", or pass --create" if args.command == "put" else ""
            print(f"Create it with: openkvs streams create NAME{hint}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(
            f"openkvs: {exc}. Is the server running at {args.endpoint_url}? "
            "Start it with ./scripts/serve or pass --endpoint-url.",
            file=sys.stderr,
        )
        return 1
