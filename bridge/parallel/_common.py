"""Small checks shared by the sharding kinds: divisibility messages, bit-exact equality, shard shapes.

Every check raises :class:`~bridge.errors.ParallelLayoutError` with the parameter's name, the
values found, and the values that would work.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bridge.errors import ParallelLayoutError

__all__ = [
    "as_bits",
    "bitwise_equal",
    "check_rank",
    "check_size",
    "divisors",
    "require_divisible",
    "require_same_shapes",
]

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def divisors(n: int) -> tuple[int, ...]:
    """The positive divisors of ``n`` in increasing order (``()`` for ``n <= 0``)."""
    return tuple(d for d in range(1, n + 1) if n % d == 0) if n > 0 else ()


def as_bits(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` reinterpreted as integers of the same width (so NaNs compare by bit pattern)."""
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        return tensor.view(_INT_OF_SIZE[tensor.element_size()])
    return tensor


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` have the same dtype, shape and bit pattern (NaN-safe)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(as_bits(a), as_bits(b))


def check_size(value: int, what: str) -> None:
    """Reject a parallel size (``tp``, ``pp``, ``ep``) below 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ParallelLayoutError(f"{what} must be a positive integer, got {value!r}.")


def check_rank(rank: int, size: int, what: str) -> None:
    """Reject a rank outside ``range(size)``."""
    if not isinstance(rank, int) or not 0 <= rank < size:
        raise ParallelLayoutError(f"{what} rank must be in 0..{size - 1}, got {rank!r}.")


def require_divisible(
    size: int, parts: int, *, name: str, what: str, knob: str = "tp", hint: str = ""
) -> None:
    """Raise unless ``size`` splits into ``parts`` equal pieces.

    Args:
        size: the extent to split (a dimension, a number of groups, of layers...).
        parts: the number of pieces (the parallel size).
        name: parameter name, for the message.
        what: what ``size`` counts, e.g. ``"dim 0"`` or ``"num_query_groups"``.
        knob: the name of the parallel size, e.g. ``"tp"`` or ``"ep"``.
        hint: an extra sentence appended to the message.
    """
    if parts < 1 or size % parts != 0:
        fits = ", ".join(str(d) for d in divisors(size)) or "none"
        raise ParallelLayoutError(
            f"Cannot split {name!r} for {knob}={parts}: {what} is {size}, which is not a multiple "
            f"of {parts}. Use a {knob} that divides {size} ({fits}).{(' ' + hint) if hint else ''}"
        )


def require_same_shapes(shards: Sequence[torch.Tensor], *, name: str, kind: str) -> None:
    """Raise unless there is at least one shard and every shard has the first one's shape and dtype."""
    if len(shards) == 0:
        raise ParallelLayoutError(f"Cannot merge {name!r} (kind {kind!r}): no shards were given.")
    first = shards[0]
    for rank, shard in enumerate(shards):
        if shard.shape != first.shape or shard.dtype != first.dtype:
            raise ParallelLayoutError(
                f"Cannot merge {name!r} (kind {kind!r}): shard 0 is {tuple(first.shape)} "
                f"{first.dtype} but shard {rank} is {tuple(shard.shape)} {shard.dtype}; every TP "
                "rank must hold an equally shaped shard of the same dtype. Check that the shards "
                "come from one checkpoint and are given in rank order."
            )
