"""KVS fragment numbers (spec §5): what both sides read and write."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

_TOP = 1 << 156
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, order=True, slots=True)
class FragmentNumber:
    """A KVS fragment number: ``(1<<156) | (seq<<92) | (server_ms<<28) | rand28``.

    The layout matches every number seen from AWS (spec §5): 47 decimal digits,
    increasing with ``seq``, so string and numeric order agree.
    """

    value: int

    @classmethod
    def make(cls, seq: int, server_ms: int, salt: int | None = None) -> FragmentNumber:
        if salt is None:
            salt = secrets.randbits(28)
        return cls(_TOP | (seq & _MASK64) << 92 | (server_ms & _MASK64) << 28 | (salt & 0xFFFFFFF))

    @classmethod
    def parse(cls, text: str) -> FragmentNumber:
        """Parse the decimal form; raise ValueError when it is not one of ours."""
        if not text.isdigit() or len(text) != 47:
            raise ValueError(f"not a fragment number: {text!r}")
        value = int(text)
        if value >> 156 != 1:
            raise ValueError(f"not a fragment number: {text!r}")
        return cls(value)

    @property
    def seq(self) -> int:
        return (self.value >> 92) & _MASK64

    @property
    def server_ms(self) -> int:
        return (self.value >> 28) & _MASK64

    def __str__(self) -> str:
        return str(self.value)
