"""Vocabulary padding and the ``vocab`` sharding kind (word embedding and output layer).

MCore's ``VocabParallelEmbedding`` and the output ``ColumnParallelLinear`` need a vocabulary size
that every TP rank can hold an equal slice of. Megatron pads it (``_vocab_size_with_padding``):

    padded = ceil(vocab / (divisible_by * tp)) * divisible_by * tp

where ``divisible_by`` is ``make_vocab_size_divisible_by`` (Megatron's default: 128). The full
tensor handled by the bridge has the *original* vocabulary size on dim 0; :func:`split_vocab`
appends ``padded - vocab`` rows of **zeros** and splits dim 0 in ``tp`` equal shards;
:func:`merge_vocab` concatenates the shards and drops the padding rows. Split then merge is
bit-exact; merge then split gives back shards whose padding rows are zeros (the ones
:func:`split_vocab` writes). A trained checkpoint may hold non-zero padding rows: they never
correspond to a token, so merging drops them on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bridge._logging import get_logger
from bridge.errors import ParallelLayoutError
from bridge.parallel._common import check_size, require_same_shapes

__all__ = [
    "DEFAULT_DIVISIBLE_BY",
    "merge_vocab",
    "padded_vocab_size",
    "split_vocab",
    "vocab_shard_shape",
]

log = get_logger("parallel.vocab")

#: Megatron's default ``make_vocab_size_divisible_by``.
DEFAULT_DIVISIBLE_BY = 128
_DEFAULT_NAME = "<tensor>"


def padded_vocab_size(vocab: int, *, tp: int, divisible_by: int = DEFAULT_DIVISIBLE_BY) -> int:
    """The vocabulary size MCore allocates: ``vocab`` rounded up to a multiple of ``divisible_by * tp``.

    >>> padded_vocab_size(32000, tp=1, divisible_by=128)
    32000
    >>> padded_vocab_size(32001, tp=2, divisible_by=128)
    32256
    """
    check_size(tp, "tp")
    if not isinstance(vocab, int) or vocab < 1:
        raise ParallelLayoutError(f"vocab size must be a positive integer, got {vocab!r}.")
    if not isinstance(divisible_by, int) or divisible_by < 1:
        raise ParallelLayoutError(
            f"make_vocab_size_divisible_by must be a positive integer, got {divisible_by!r}."
        )
    multiple = divisible_by * tp
    return -(-vocab // multiple) * multiple


def vocab_shard_shape(
    shape: Sequence[int],
    *,
    tp: int,
    divisible_by: int = DEFAULT_DIVISIBLE_BY,
    vocab_size: int | None = None,
    name: str = _DEFAULT_NAME,
) -> tuple[int, ...]:
    """The shape of each :func:`split_vocab` shard: ``padded_vocab_size(...) / tp`` rows."""
    if len(shape) < 1:
        raise ParallelLayoutError(f"Cannot shard scalar {name!r} as kind 'vocab'.")
    rows = shape[0]
    if vocab_size is not None and vocab_size != rows:
        raise ParallelLayoutError(
            f"Vocab tensor {name!r} has {rows} rows but vocab_size={vocab_size} was given; the "
            "full tensor must have the original (unpadded) vocabulary on dim 0. Strip padding "
            "first or fix vocab_size."
        )
    return (padded_vocab_size(rows, tp=tp, divisible_by=divisible_by) // tp, *shape[1:])


def split_vocab(
    tensor: torch.Tensor,
    *,
    tp: int,
    divisible_by: int = DEFAULT_DIVISIBLE_BY,
    vocab_size: int | None = None,
    name: str = _DEFAULT_NAME,
) -> list[torch.Tensor]:
    """Pad dim 0 with zero rows to :func:`padded_vocab_size`, then split it in ``tp`` shards.

    Args:
        tensor: ``[vocab, ...]`` with the original (unpadded) vocabulary.
        tp: tensor-parallel size.
        divisible_by: ``make_vocab_size_divisible_by``.
        vocab_size: if given, must equal ``tensor.shape[0]`` (a guard against padded input).
        name: parameter name for error messages.
    """
    shard_rows = vocab_shard_shape(
        tensor.shape, tp=tp, divisible_by=divisible_by, vocab_size=vocab_size, name=name
    )[0]
    rows = tensor.shape[0]
    if shard_rows * tp > rows:
        pad = tensor.new_zeros((shard_rows * tp - rows, *tensor.shape[1:]))
        tensor = torch.cat([tensor, pad], dim=0)
    return [piece.contiguous() for piece in torch.chunk(tensor, tp, dim=0)]


def merge_vocab(
    shards: Sequence[torch.Tensor],
    *,
    vocab_size: int,
    divisible_by: int = DEFAULT_DIVISIBLE_BY,
    name: str = _DEFAULT_NAME,
) -> torch.Tensor:
    """Inverse of :func:`split_vocab`: concatenate along dim 0 and drop rows past ``vocab_size``.

    Raises:
        ParallelLayoutError: if the shards' total rows are not ``padded_vocab_size(vocab_size,
            tp=len(shards), divisible_by=divisible_by)``.
    """
    require_same_shapes(shards, name=name, kind="vocab")
    if shards[0].dim() < 1:
        raise ParallelLayoutError(f"Cannot merge scalar shards of {name!r} as kind 'vocab'.")
    tp = len(shards)
    expected = padded_vocab_size(vocab_size, tp=tp, divisible_by=divisible_by)
    rows = shards[0].shape[0] * tp
    if rows != expected:
        raise ParallelLayoutError(
            f"Vocab shards of {name!r} hold {rows} rows in total ({tp} x {shards[0].shape[0]}) but "
            f"vocab_size={vocab_size} padded for tp={tp}, make_vocab_size_divisible_by="
            f"{divisible_by} gives {expected}. Pass the vocab_size and divisible_by the "
            "checkpoint was saved with."
        )
    merged = shards[0] if tp == 1 else torch.cat(list(shards), dim=0)  # TP = 1: no copy
    if expected > vocab_size:
        log.debug("%s: dropping %d vocab padding rows", name, expected - vocab_size)
    return merged[:vocab_size]
