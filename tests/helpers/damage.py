"""Byte damage for fuzzing file readers: flip, truncate or insert bytes, as Hypothesis strategies.

A :class:`Damage` is a pure description; :meth:`Damage.apply` returns the damaged bytes. Strategies are
plural nouns with keyword-only bounds, as everywhere in the test suite.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from hypothesis import strategies as st

__all__ = ["Damage", "damages", "data_region_start", "flips", "inserts", "truncations"]

Kind = Literal["flip", "truncate", "insert"]


@dataclass(frozen=True)
class Damage:
    """``flip``: XOR byte ``position`` with ``payload[0]`` (non-zero); ``truncate``: keep ``position`` bytes;
    ``insert``: put ``payload`` before byte ``position``."""

    kind: Kind
    position: int
    payload: bytes = b""

    def apply(self, data: bytes) -> bytes:
        if self.kind == "flip":
            assert 0 <= self.position < len(data) and len(self.payload) == 1 and self.payload[0]
            return data[: self.position] + bytes([data[self.position] ^ self.payload[0]]) + data[self.position + 1 :]
        if self.kind == "truncate":
            assert 0 <= self.position < len(data)
            return data[: self.position]
        assert 0 <= self.position <= len(data) and self.payload
        return data[: self.position] + self.payload + data[self.position :]


def data_region_start(data: bytes) -> int:
    """Offset of the data region of an intact safetensors file (``8 + header length``)."""
    (size,) = struct.unpack("<Q", data[:8])
    return 8 + size


def flips(*, size: int, start: int = 0) -> st.SearchStrategy[Damage]:
    """Single-byte flips at positions ``start <= p < size``."""
    return st.builds(
        Damage,
        kind=st.just("flip"),
        position=st.integers(min_value=start, max_value=size - 1),
        payload=st.integers(min_value=1, max_value=255).map(lambda b: bytes([b])),
    )


def truncations(*, size: int) -> st.SearchStrategy[Damage]:
    """Cuts keeping ``0 <= n < size`` bytes."""
    return st.builds(Damage, kind=st.just("truncate"), position=st.integers(min_value=0, max_value=size - 1))


def inserts(*, size: int, max_len: int = 16) -> st.SearchStrategy[Damage]:
    """Insertions of 1..``max_len`` bytes anywhere, biased towards JSON-meaningful bytes."""
    meaningful = st.sampled_from([b"{", b"}", b"[", b"]", b",", b":", b'"', b"0", b"9", b" ", b"\x00", b"\xff"])
    payloads = st.one_of(st.binary(min_size=1, max_size=max_len), meaningful)
    return st.builds(
        Damage, kind=st.just("insert"), position=st.integers(min_value=0, max_value=size), payload=payloads
    )


def damages(*, size: int, max_insert: int = 16) -> st.SearchStrategy[Damage]:
    """Any single damage to a file of ``size`` bytes."""
    return st.one_of(flips(size=size), truncations(size=size), inserts(size=size, max_len=max_insert))
