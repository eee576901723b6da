"""The ``openkvs`` command: ``serve`` runs the server; ``streams``, ``get`` and ``put`` are clients."""

from openkvs.cli.main import main

__all__ = ["main"]
