"""The package layout is the architecture: imports flow one way, pure cores do no I/O.

``openkvs.wire`` is the wire format both sides speak; ``openkvs.server`` is the
service; ``client``, ``aio``, ``media`` and ``producer`` are the client toolkit;
``cli`` sits on top of everything. Inside the server each layer imports only
the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "openkvs"
TOOLKIT = ("openkvs.client", "openkvs.aio", "openkvs.media", "openkvs.producer")
SHARED = ("openkvs.clock", "openkvs.logs")
# Inside the server, lowest first: a module may import its own layer and those before it.
SERVER_LAYERS = [
    ("openkvs.server.model", "openkvs.server.errors", "openkvs.server.config",
     "openkvs.server.metrics"),
    ("openkvs.server.http", "openkvs.server.validate"),
    ("openkvs.server.store",),
    ("openkvs.server.nodes",),
    ("openkvs.server.runtime",),
    ("openkvs.server.control",),
    ("openkvs.server.ingest", "openkvs.server.serve", "openkvs.server.archive",
     "openkvs.server.observe"),
    ("openkvs.server.auth",),
    ("openkvs.server.console",),
    ("openkvs.server.app",),
]
# Sans-I/O cores: bytes (and now_ms) in, events or bytes out.
PURE = (
    "openkvs.wire",
    "openkvs.server.ingest.session",
    "openkvs.server.serve.reader",
    "openkvs.server.archive.timeline",
    "openkvs.server.archive.m3u8",
    "openkvs.server.archive.mpd",
    "openkvs.server.archive.transport_stream",
)
IO_MODULES = {"asyncio", "aiohttp", "socket", "threading", "selectors", "urllib3", "os", "io"}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def layer(name: str) -> int | None:
    for i, packages in enumerate(SERVER_LAYERS):
        if within(name, packages):
            return i
    return None


def allowed(module: str, target: str) -> bool:
    """May ``module`` import ``target`` (both openkvs modules)?"""
    if target == "openkvs" or within(module, ("openkvs.cli",)) or module == "openkvs.__main__":
        return True
    if within(target, ("openkvs.wire",)):
        return True
    if within(module, ("openkvs.wire",)):
        return False
    if within(target, SHARED):
        return True
    if within(module, ("openkvs.server",)):
        mine, theirs = layer(module), layer(target)
        return theirs is not None and mine is not None and theirs <= mine
    if within(module, TOOLKIT):
        return within(target, (*TOOLKIT, "openkvs.credentials"))
    return False


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_one_way(module: str) -> None:
    if module == "openkvs" or within(module, SHARED + ("openkvs.credentials",)):
        assert not any(n.startswith("openkvs.") for n in imports(MODULES[module]) - {"openkvs"})
        return
    if within(module, ("openkvs.server",)) and module != "openkvs.server":
        assert layer(module) is not None, f"{module} is in no server layer"
    wrong = sorted(
        n
        for n in imports(MODULES[module])
        if n.startswith("openkvs.") and n in MODULES and not allowed(module, n)
    )
    assert not wrong, f"{module} must not import {wrong}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, PURE)))
def test_pure_cores_do_no_io(module: str) -> None:
    io = sorted(n for n in imports(MODULES[module]) if n.split(".")[0] in IO_MODULES)
    assert not io, f"{module} is sans-I/O but imports {io}"
