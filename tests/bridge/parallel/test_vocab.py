"""Vocabulary padding (MCore's rule) and the vocab split/merge pair."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import as_bits, bitwise_equal
from bridge.parallel.vocab import merge_vocab, padded_vocab_size, split_vocab
from tests.strategies import dtypes, random_bits

TPS = st.sampled_from((1, 2, 4, 8, 3))
DIVISIBLE = st.sampled_from((1, 8, 128, 3))
FAST = settings(max_examples=60, deadline=None)


@settings(max_examples=200, deadline=None)
@given(vocab=st.integers(1, 10**6), tp=TPS, divisible_by=DIVISIBLE)
def test_padded_vocab_size_is_the_least_multiple_of_divisible_by_times_tp(
    vocab: int, tp: int, divisible_by: int
) -> None:
    padded = padded_vocab_size(vocab, tp=tp, divisible_by=divisible_by)
    multiple = divisible_by * tp
    assert padded % multiple == 0
    assert vocab <= padded < vocab + multiple


@pytest.mark.parametrize(
    ("vocab", "tp", "divisible_by", "padded"),
    [
        (32000, 1, 128, 32000),
        (32000, 8, 128, 32768),
        (50257, 1, 128, 50304),
        (50257, 2, 128, 50432),
        (151936, 4, 128, 152064),
    ],
)
def test_padded_vocab_size_matches_known_model_sizes(
    vocab: int, tp: int, divisible_by: int, padded: int
) -> None:
    assert padded_vocab_size(vocab, tp=tp, divisible_by=divisible_by) == padded


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"vocab": 0, "tp": 1}, "vocab size"),
        ({"vocab": 5, "tp": 0}, "tp"),
        ({"vocab": 5, "tp": 1, "divisible_by": 0}, "make_vocab_size_divisible_by"),
    ],
)
def test_padded_vocab_size_rejects_non_positive_inputs(
    kwargs: dict[str, int], pattern: str
) -> None:
    vocab = kwargs.pop("vocab")
    with pytest.raises(ParallelLayoutError, match=pattern):
        padded_vocab_size(vocab, **kwargs)


@st.composite
def vocab_cases(draw: st.DrawFn) -> tuple[torch.Tensor, int, int]:
    vocab = draw(st.integers(1, 40))
    shape = (vocab,) if draw(st.booleans()) else (vocab, draw(st.integers(1, 4)))
    return (
        random_bits(shape, draw(dtypes()), draw(st.integers(0, 2**16))),
        draw(TPS),
        draw(DIVISIBLE),
    )


@FAST
@given(case=vocab_cases())
def test_vocab_split_pads_with_zero_rows_and_merge_strips_them(
    case: tuple[torch.Tensor, int, int],
) -> None:
    full, tp, divisible_by = case
    vocab = full.shape[0]
    shards = split_vocab(full, tp=tp, divisible_by=divisible_by)
    padded = padded_vocab_size(vocab, tp=tp, divisible_by=divisible_by)
    assert len(shards) == tp and all(s.shape[0] == padded // tp for s in shards)
    stacked = torch.cat(shards)
    assert bitwise_equal(stacked[:vocab], full)
    assert not as_bits(stacked[vocab:]).ne(0).any()  # +0.0 exactly, not -0.0
    assert bitwise_equal(merge_vocab(shards, vocab_size=vocab, divisible_by=divisible_by), full)


@FAST
@given(case=vocab_cases())
def test_vocab_merge_then_split_returns_zero_padded_shards(
    case: tuple[torch.Tensor, int, int],
) -> None:
    full, tp, divisible_by = case
    vocab = full.shape[0]
    padded = padded_vocab_size(vocab, tp=tp, divisible_by=divisible_by)
    rows = torch.cat([full, torch.zeros((padded - vocab, *full.shape[1:]), dtype=full.dtype)])
    shards = list(torch.chunk(rows, tp))
    again = split_vocab(
        merge_vocab(shards, vocab_size=vocab, divisible_by=divisible_by),
        tp=tp,
        divisible_by=divisible_by,
    )
    assert all(bitwise_equal(a, b) for a, b in zip(again, shards, strict=True))


def test_vocab_merge_rejects_shards_of_another_padding_and_says_what_it_expected() -> None:
    shards = split_vocab(torch.ones(100, 2), tp=2, divisible_by=8)  # 112 rows
    with pytest.raises(ParallelLayoutError, match=r"112 rows.*gives 256"):
        merge_vocab(
            shards, vocab_size=100, divisible_by=128, name="embedding.word_embeddings.weight"
        )


def test_vocab_split_rejects_an_already_padded_tensor() -> None:
    with pytest.raises(ParallelLayoutError, match="unpadded"):
        split_vocab(torch.ones(128, 2), tp=1, vocab_size=100)
