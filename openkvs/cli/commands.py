"""Client commands of the ``openkvs`` CLI: ``streams``, ``get``, ``put`` and the archived-media
``fragments``, ``clip`` and ``play``."""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError, ClientError

from openkvs.cli import archive, get, put, streams

NAMES = ("streams", "get", "put", *archive.COMMANDS)


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    streams.add_parser(sub)
    get.add_parser(sub)
    put.add_parser(sub)
    archive.add_parsers(sub)


def run(args: argparse.Namespace) -> int:
    command = {"streams": streams.run, "get": get.run, "put": put.run, **archive.COMMANDS}[
        args.command
    ]
    try:
        return command(args)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(f"openkvs: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        print(_hint(args.command, error.get("Code", "")), file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(
            f"openkvs: {exc}. Is the server running at {args.endpoint_url}? "
            "Start it with ./scripts/serve or pass --endpoint-url.",
            file=sys.stderr,
        )
        return 1


def _hint(command: str, code: str) -> str:
    """What to do next after an AWS error."""
    if code == "NoDataRetentionException":
        return "Playback needs a stream that keeps data: openkvs streams create NAME --retention-hours 24"
    if code == "ResourceNotFoundException" and command in archive.COMMANDS:
        return "No such stream, or nothing stored in that range: see openkvs fragments NAME --start 1h"
    if code == "ResourceNotFoundException":
        hint = ", or pass --create" if command == "put" else ""
        return f"Create it with: openkvs streams create NAME{hint}"
    return "See the message above; openkvs COMMAND --help lists the options."
