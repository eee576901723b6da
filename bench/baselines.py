"""Baseline servers, each doing the least a server could do for its figure (run as children).

    python -m bench.baselines sender --file CHUNKS --port P   # GetMedia: push stored bytes
    python -m bench.baselines relay --port P                 # fan-out: forward to readers
    python -m bench.baselines json --file BODY --port P      # control plane: fixed answer

``sender`` answers any request with the chunks in ``--file`` (each 8-byte length + bytes),
one write and drain per chunk. ``relay`` takes length-prefixed fragments from a
``PRODUCE`` connection, acks each with one byte once it is whole, then writes it to every
other connection. ``json`` is a trivial aiohttp app returning the body in ``--file``.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: video/webm\r\nTransfer-Encoding: chunked\r\n\r\n"
PRODUCE = b"PRODUCE\n"
LENGTH = 8


def write_framed(path: Path, chunks: list[bytes]) -> None:
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(len(chunk).to_bytes(LENGTH, "big") + chunk)


def read_framed(path: Path) -> list[bytes]:
    data, chunks, at = path.read_bytes(), [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + LENGTH], "big")
        chunks.append(data[at + LENGTH : at + LENGTH + size])
        at += LENGTH + size
    return chunks


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))


async def sender(port: int, path: Path) -> None:
    chunks = read_framed(path)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(RESPONSE_HEAD)
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    await server.serve_forever()


async def relay(port: int) -> None:
    readers: set[asyncio.StreamWriter] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.readline()
            if first != PRODUCE:
                writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
                readers.add(writer)
                await reader.read()  # until the reader hangs up
                return
            while True:
                size = int.from_bytes(await reader.readexactly(LENGTH), "big")
                fragment = await reader.readexactly(size)
                writer.write(b"R")
                for other in readers:
                    other.write(fragment)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            readers.discard(writer)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    await server.serve_forever()


def json_app(body: bytes) -> object:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=body, content_type="application/x-amz-json-1.1")

    app = web.Application()
    app.router.add_post("/{op}", answer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["sender", "relay", "json"])
    parser.add_argument("--file", type=Path)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.kind == "sender":
        asyncio.run(sender(args.port, args.file))
    elif args.kind == "relay":
        asyncio.run(relay(args.port))
    else:
        from aiohttp import web

        web.run_app(json_app(args.file.read_bytes()), host="127.0.0.1", port=args.port, print=None)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
