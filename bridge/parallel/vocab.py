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

The bridge pads only when asked or when it must (Megatron-Bridge's ``should_pad_vocab``, default
False): :func:`vocab_padding` decides, from the HF vocabulary, the TP size and that flag, how many
rows MCore allocates and why, and returns a :class:`VocabPadding` record. The record is what a saved
checkpoint keeps (``layout.json``'s ``vocab_padding``; a ``torch_dist`` writer can store the same
:meth:`VocabPadding.to_json`), so that export strips exactly the rows that were added.
:func:`pad_vocab` / :func:`unpad_vocab` are the row transforms (one the inverse of the other), and
:func:`mask_padded_logits` / :func:`strip_padded_logits` keep padded ids out of logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bridge._logging import get_logger
from bridge.errors import ParallelLayoutError
from bridge.parallel._common import check_size, require_same_shapes

__all__ = [
    "DEFAULT_DIVISIBLE_BY",
    "PADDING_REASONS",
    "VocabPadding",
    "effective_divisible_by",
    "mask_padded_logits",
    "merge_vocab",
    "pad_vocab",
    "padded_vocab_size",
    "split_vocab",
    "strip_padded_logits",
    "unpad_vocab",
    "vocab_padding",
    "vocab_padding_for",
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


def effective_divisible_by(*, should_pad: bool, divisible_by: int = DEFAULT_DIVISIBLE_BY) -> int:
    """The multiple the vocabulary is padded to per TP rank: ``divisible_by`` when padding is asked for, else 1
    (then only a TP size that does not divide the vocabulary adds rows, as few as it needs)."""
    return divisible_by if should_pad else 1


#: Why a vocabulary has padding rows: ``none`` (it has none), ``requested`` (``should_pad_vocab``: a multiple
#: of ``make_vocab_size_divisible_by`` x TP, as Megatron-LM pads) or ``tensor_parallel`` (TP does not divide
#: the vocabulary: the smallest multiple of TP).
PADDING_REASONS = ("none", "requested", "tensor_parallel")
_RECORD_KEYS = ("vocab_size", "padded_vocab_size", "tp", "divisible_by", "reason")


@dataclass(frozen=True)
class VocabPadding:
    """The vocabulary padding of one model at one TP size: the record a saved checkpoint keeps.

    Attributes:
        vocab_size: the real (HF) vocabulary; export keeps rows ``[0, vocab_size)``.
        padded_size: the rows MCore allocates (``padded_vocab_size(vocab_size, tp=tp, divisible_by=...)``).
        tp: the tensor-parallel size the padding is for.
        divisible_by: the per-rank multiple used (1 unless padding was asked for).
    """

    vocab_size: int
    padded_size: int
    tp: int = 1
    divisible_by: int = 1

    def __post_init__(self) -> None:
        expected = padded_vocab_size(self.vocab_size, tp=self.tp, divisible_by=self.divisible_by)
        if self.padded_size != expected:
            raise ParallelLayoutError(
                f"vocab padding record says {self.vocab_size} rows padded to {self.padded_size}, but TP={self.tp} "
                f"with divisible_by={self.divisible_by} pads to {expected}; the record is inconsistent."
            )

    @property
    def padding(self) -> int:
        """How many rows were added."""
        return self.padded_size - self.vocab_size

    @property
    def reason(self) -> str:
        """One of :data:`PADDING_REASONS`."""
        if not self.padding:
            return "none"
        return "tensor_parallel" if self.divisible_by == 1 else "requested"

    def describe(self) -> str:
        """Why (and how much) the vocabulary is padded, in words (for logs)."""
        v, p, tp = self.vocab_size, self.padded_size, self.tp
        if self.reason == "none":
            return f"vocabulary of {v} is not padded (TP={tp})"
        if self.reason == "requested":
            why = f"should_pad_vocab=True: a multiple of make_vocab_size_divisible_by={self.divisible_by} x TP={tp}"
        else:
            why = f"TP={tp} does not divide {v}, and every TP rank holds an equal slice of {p // tp} rows"
        return (f"vocabulary padded from {v} to {p} rows ({why}); forward_logits and exports strip the "
                f"{self.padding} padding row(s) and sampling masks them")

    def at_tp(self, tp: int) -> "VocabPadding":
        """The same vocabulary and multiple at another TP size (a resharded checkpoint)."""
        return vocab_padding_for(self.vocab_size, tp=tp, divisible_by=self.divisible_by)

    def to_json(self) -> dict[str, Any]:
        """``{"vocab_size", "padded_vocab_size", "tp", "divisible_by", "reason"}``."""
        return {"vocab_size": self.vocab_size, "padded_vocab_size": self.padded_size, "tp": self.tp,
                "divisible_by": self.divisible_by, "reason": self.reason}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "vocab padding record") -> "VocabPadding":
        """Inverse of :meth:`to_json`, validated (``source`` names the file in errors)."""
        if not isinstance(data, Mapping):
            raise ParallelLayoutError(f"{source}: expected a JSON object {list(_RECORD_KEYS)}, found {data!r}")
        missing = [k for k in _RECORD_KEYS if k not in data]
        bad = [k for k in _RECORD_KEYS[:4] if k in data and (not isinstance(data[k], int) or isinstance(data[k], bool))]
        if missing or bad:
            raise ParallelLayoutError(
                f"{source}: malformed vocab padding record {dict(data)}: missing {missing}, not integers {bad}"
            )
        record = cls(data["vocab_size"], data["padded_vocab_size"], data["tp"], data["divisible_by"])
        if data["reason"] != record.reason:
            raise ParallelLayoutError(
                f"{source}: vocab padding record gives reason {data['reason']!r} but its sizes mean {record.reason!r}"
            )
        return record


def vocab_padding_for(vocab_size: int, *, tp: int, divisible_by: int) -> VocabPadding:
    """The :class:`VocabPadding` of ``vocab_size`` at ``tp`` with a per-rank multiple ``divisible_by``."""
    return VocabPadding(vocab_size, padded_vocab_size(vocab_size, tp=tp, divisible_by=divisible_by), tp, divisible_by)


def vocab_padding(vocab_size: int, *, tp: int, should_pad: bool = False,
                  divisible_by: int = DEFAULT_DIVISIBLE_BY) -> VocabPadding:
    """How the bridge pads a vocabulary (Megatron-Bridge's policy).

    * ``should_pad`` (``should_pad_vocab=True``): to a multiple of ``divisible_by * tp``, as MCore and
      Megatron-LM do;
    * otherwise not at all, unless ``tp`` does not divide the vocabulary: then to the smallest multiple of ``tp``.

    >>> vocab_padding(200, tp=2).padded_size, vocab_padding(201, tp=2).padded_size
    (200, 202)
    >>> vocab_padding(200, tp=1, should_pad=True).reason
    'requested'
    """
    return vocab_padding_for(vocab_size, tp=tp,
                             divisible_by=effective_divisible_by(should_pad=should_pad, divisible_by=divisible_by))


def pad_vocab(tensor: torch.Tensor, padded_size: int, *, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """``tensor`` with zero rows appended on dim 0 up to ``padded_size`` (itself when none are needed)."""
    if tensor.dim() < 1:
        raise ParallelLayoutError(f"Cannot pad scalar {name!r} as a vocabulary.")
    rows = tensor.shape[0]
    if padded_size < rows:
        raise ParallelLayoutError(f"Cannot pad {name!r} of {rows} rows to {padded_size}: it already has more rows.")
    if padded_size == rows:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((padded_size - rows, *tensor.shape[1:]))], dim=0)


def unpad_vocab(tensor: torch.Tensor, vocab_size: int, *, name: str = _DEFAULT_NAME) -> torch.Tensor:
    """Inverse of :func:`pad_vocab`: the first ``vocab_size`` rows of dim 0 (a view)."""
    if tensor.dim() < 1 or tensor.shape[0] < vocab_size:
        raise ParallelLayoutError(
            f"{name!r} of shape {tuple(tensor.shape)} holds fewer than vocab_size={vocab_size} rows: it was not "
            "padded from this vocabulary."
        )
    return tensor[:vocab_size]


def _check_logits(logits: torch.Tensor, vocab_size: int) -> None:
    if logits.dim() < 1 or logits.shape[-1] < vocab_size:
        raise ParallelLayoutError(
            f"logits of shape {tuple(logits.shape)} are narrower than the vocabulary ({vocab_size}); pass the "
            "vocab_size the model was built for."
        )


def strip_padded_logits(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Logits over the real vocabulary only: the last dim cut to ``vocab_size`` (a view)."""
    _check_logits(logits, vocab_size)
    return logits[..., :vocab_size]


def mask_padded_logits(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Logits whose padded ids (last dim, from ``vocab_size`` on) are ``-inf``, so that no sampling picks them;
    ``logits`` itself when there are none."""
    _check_logits(logits, vocab_size)
    if logits.shape[-1] == vocab_size:
        return logits
    masked = logits.clone()
    masked[..., vocab_size:] = float("-inf")
    return masked


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
    padded = pad_vocab(tensor, shard_rows * tp, name=name)
    return [piece.contiguous() for piece in torch.chunk(padded, tp, dim=0)]


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
    return unpad_vocab(merged, vocab_size, name=name)
