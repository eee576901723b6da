"""``openkvs get``: read a stream with GetMedia into one playable MKV (or raw chunks)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator

from openkvs.cli.common import add_endpoint, make_client
from openkvs.media import MediaFragment, follow, iter_fragments, write_mkv

SELECTORS = ("EARLIEST", "NOW")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    add_endpoint(get)


def run(args: argparse.Namespace) -> int:
    media = make_client("kinesis-video-media", args.endpoint_url)
    selector = {"StartSelectorType": args.start}
    if args.follow:
        fragments = follow(media, args.name, selector)
    else:
        payload = media.get_media(StreamName=args.name, StartSelector=selector)["Payload"]
        fragments = iter_fragments(payload)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    progress = _Progress()
    try:
        if args.raw:
            for fragment in progress.count(fragments):
                out.write(fragment.raw)
                out.flush()
        else:
            write_mkv(progress.count(fragments), out)
    except KeyboardInterrupt:
        pass
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        print(f"\rfragments: {progress.fragments} written to {args.output}", file=sys.stderr)
    return 0


class _Progress:
    def __init__(self) -> None:
        self.fragments = 0

    def count(self, fragments: Iterable[MediaFragment]) -> Iterator[MediaFragment]:
        for fragment in fragments:
            self.fragments += 1
            print(f"\rfragments: {self.fragments}", end="", file=sys.stderr, flush=True)
            yield fragment
