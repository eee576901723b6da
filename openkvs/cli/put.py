"""``openkvs put``: stream an MKV file or pipe into a stream with PutMedia."""

from __future__ import annotations

import argparse
import sys
import time

from botocore.exceptions import ClientError

from openkvs.cli.common import add_endpoint, make_client
from openkvs.producer import Ack, Producer, ProducerError, Summary
from openkvs.wire import error_ids


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    put = sub.add_parser("put", help="stream an MKV file or pipe into a stream (PutMedia)")
    put.add_argument("name", help="stream name")
    put.add_argument("source", help="MKV file, or '-' for stdin (e.g. ffmpeg ... -f matroska -)")
    put.add_argument("--create", action="store_true", help="create the stream if it is missing")
    put.add_argument(
        "--retention-hours", type=int, default=24, help="retention for --create (default 24)"
    )
    put.add_argument(
        "--realtime", action="store_true", help="send at the pace of the media's timestamps"
    )
    put.add_argument(
        "--timecode-type",
        choices=("ABSOLUTE", "RELATIVE"),
        help="how to read Cluster timecodes (default: ABSOLUTE if they are wall-clock times)",
    )
    put.add_argument("--quiet", action="store_true", help="no progress line")
    add_endpoint(put)


def run(args: argparse.Namespace) -> int:
    control = make_client("kinesisvideo", args.endpoint_url)
    try:
        info = control.describe_stream(StreamName=args.name)["StreamInfo"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException" or not args.create:
            raise
        control.create_stream(StreamName=args.name, DataRetentionInHours=args.retention_hours)
        info = control.describe_stream(StreamName=args.name)["StreamInfo"]
    def endpoint() -> str:
        found = control.get_data_endpoint(StreamName=args.name, APIName="PUT_MEDIA")
        return str(found["DataEndpoint"])

    progress = _Progress(args.quiet)
    producer = Producer(
        endpoint(),
        args.name,
        timecode_type=args.timecode_type,
        realtime=args.realtime,
        ack_event="PERSISTED" if info.get("DataRetentionInHours") else "RECEIVED",
        on_ack=progress.on_ack,
        rediscover=endpoint,
    )
    progress.summary = producer.summary
    try:
        summary = producer.put(args.source)
    except KeyboardInterrupt:
        summary = producer.summary
        print("\nopenkvs: interrupted; fragments not acknowledged may be lost.", file=sys.stderr)
    except ProducerError as exc:
        progress.finish(exc.summary, args.name)
        print(f"openkvs: {exc}", file=sys.stderr)
        if exc.code == "ResourceNotFoundException":
            print("Create it with: openkvs streams create NAME, or pass --create", file=sys.stderr)
        elif exc.code == "InvalidInput":
            print("Send Matroska, e.g. ffmpeg ... -f matroska -", file=sys.stderr)
        elif exc.code is None:
            print(f"Check that the server at {args.endpoint_url} is up.", file=sys.stderr)
        return 1
    progress.finish(summary, args.name)
    if not summary.fragments_sent:
        print("openkvs: the input held no Cluster, so nothing was sent.", file=sys.stderr)
    return 0 if not summary.errors and summary.fragments_sent else 1


class _Progress:
    """A one-line progress report on stderr, redrawn at most 4 times a second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.started = time.monotonic()
        self.drawn = 0.0
        self.summary = Summary()

    def on_ack(self, ack: Ack) -> None:
        now = time.monotonic()
        if self.quiet or now - self.drawn < 0.25:
            return
        self.drawn = now
        print(f"\r{self.line(self.summary)}", end="", file=sys.stderr, flush=True)

    def line(self, summary: Summary) -> str:
        seconds = max(time.monotonic() - self.started, 1e-6)
        megabytes = summary.bytes_sent / 1e6
        return (
            f"fragments: {summary.fragments_sent} sent, {summary.fragments_acknowledged} "
            f"acknowledged, {summary.fragments_errored} refused; "
            f"{megabytes:.1f} MB in {seconds:.1f} s ({megabytes / seconds:.1f} MB/s)"
        )

    def finish(self, summary: Summary, name: str) -> None:
        print(f"\r{self.line(summary)}", file=sys.stderr)
        if summary.reconnects:
            print(
                f"reconnected {summary.reconnects} times, re-sent {summary.resent} fragments",
                file=sys.stderr,
            )
        for timecode, error_id in summary.errors:
            meaning = error_ids.meaning(error_id)
            print(
                f"openkvs: {name}: fragment at timecode {timecode} refused with "
                f"ErrorId {error_id} ({meaning}); fix the input and send it again.",
                file=sys.stderr,
            )
