"""``openkvs fragments``, ``openkvs clip`` and ``openkvs play``: the archived-media API
(ListFragments, GetClip, HLS and DASH session URLs) from a shell."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from openkvs.cli.common import add_endpoint, make_client

SERVICE = "kinesis-video-archived-media"
AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CHUNK = 1 << 20


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    fragments = sub.add_parser("fragments", help="list a stream's stored fragments (ListFragments)")
    _range_arguments(fragments, default_start="1h")
    clip = sub.add_parser("clip", help="download a time range as one MP4 (GetClip)")
    _range_arguments(clip, default_start="1m")
    clip.add_argument("-o", "--output", required=True, help="MP4 file to write ('-' for stdout)")
    play = sub.add_parser("play", help="print an HLS (or DASH) URL for ffplay, VLC or a browser")
    play.add_argument("name", help="stream name")
    play.add_argument("--dash", action="store_true", help="a DASH manifest instead of HLS")
    play.add_argument("--mode", default="LIVE", choices=("LIVE", "LIVE_REPLAY", "ON_DEMAND"))
    play.add_argument("--start", help="LIVE_REPLAY and ON_DEMAND: from (see fragments --help)")
    play.add_argument("--end", help="ON_DEMAND: until (default now)")
    play.add_argument("--expires", type=int, default=3600, help="session seconds (300-43200)")
    play.add_argument(
        "--low-latency", action="store_true", help="LIVE HLS as low-latency HLS (parts)"
    )
    add_endpoint(play)


def _range_arguments(parser: argparse.ArgumentParser, default_start: str) -> None:
    parser.add_argument("name", help="stream name")
    parser.add_argument(
        "--start",
        default=default_start,
        help=f"ISO-8601 time, epoch seconds, or an age such as 90s, 5m, 2h (default {default_start})",
    )
    parser.add_argument("--end", help="the same forms (default now)")
    parser.add_argument(
        "--producer", action="store_true", help="select by producer, not server, timestamps"
    )
    add_endpoint(parser)


def parse_time(text: str, now: float) -> float:
    """Epoch seconds from ISO-8601, epoch seconds, or an age ('5m' is five minutes ago)."""
    if ago := AGO.fullmatch(text.strip()):
        return now - float(ago.group(1)) * UNIT_S[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(
            f"openkvs: cannot read the time {text!r}: give ISO-8601 (2026-12-04T10:00:00Z), "
            "epoch seconds, or an age such as 90s, 5m or 2h"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _selector(args: argparse.Namespace) -> dict[str, Any]:
    now = time.time()
    start = parse_time(args.start, now)
    end = parse_time(args.end, now) if args.end else now
    kind = "PRODUCER_TIMESTAMP" if args.producer else "SERVER_TIMESTAMP"
    return {
        "FragmentSelectorType": kind,
        "TimestampRange": {"StartTimestamp": start, "EndTimestamp": end},
    }


def run_fragments(args: argparse.Namespace) -> int:
    archived = make_client(SERVICE, args.endpoint_url)
    pages = archived.get_paginator("list_fragments").paginate(
        StreamName=args.name, FragmentSelector=_selector(args)
    )
    count = 0
    print("fragment number\tproducer time\tserver time\tms\tbytes")
    for page in pages:
        for f in sorted(page["Fragments"], key=lambda f: f["FragmentNumber"]):
            count += 1
            print(
                f"{f['FragmentNumber']}\t{f['ProducerTimestamp'].isoformat()}\t"
                f"{f['ServerTimestamp'].isoformat()}\t{f['FragmentLengthInMilliseconds']}\t"
                f"{f['FragmentSizeInBytes']}"
            )
    print(f"{count} fragments", file=sys.stderr)
    return 0


def run_clip(args: argparse.Namespace) -> int:
    archived = make_client(SERVICE, args.endpoint_url)
    selector = _selector(args)
    response = archived.get_clip(StreamName=args.name, ClipFragmentSelector=selector)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    written = 0
    try:
        for piece in response["Payload"].iter_chunks(CHUNK):
            out.write(piece)
            written += len(piece)
            print(f"\r{written / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"\r{written / 1e6:.1f} MB written to {args.output}", file=sys.stderr)
    print(
        "A clip holds at most 200 fragments or 100 MB: for a longer range, ask again with "
        "--start at the end of this one.",
        file=sys.stderr,
    )
    return 0


def run_play(args: argparse.Namespace) -> int:
    archived = make_client(SERVICE, args.endpoint_url)
    kind = "DASH" if args.dash else "HLS"
    request: dict[str, Any] = {
        "StreamName": args.name, "PlaybackMode": args.mode, "Expires": args.expires
    }
    if args.mode != "LIVE":
        if not args.start:
            raise SystemExit(f"openkvs: --mode {args.mode} needs --start (and maybe --end)")
        args.producer = False
        selector = _selector(args)
        if args.mode == "LIVE_REPLAY" and not args.end:
            del selector["TimestampRange"]["EndTimestamp"]
        request[f"{kind}FragmentSelector"] = selector
    if kind == "HLS":
        url = archived.get_hls_streaming_session_url(**request)["HLSStreamingSessionURL"]
        if args.low_latency:
            url += "&LowLatency=1"
    else:
        url = archived.get_dash_streaming_session_url(**request)["DASHStreamingSessionURL"]
    print(url)
    print(f"Play it with: ffplay '{url}'  (or VLC, or hls.js/dash.js)", file=sys.stderr)
    return 0


COMMANDS = {"fragments": run_fragments, "clip": run_clip, "play": run_play}
