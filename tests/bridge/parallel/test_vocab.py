"""Vocabulary padding (MCore's rule) and the vocab split/merge pair."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import ParallelLayoutError
from bridge.parallel._common import as_bits, bitwise_equal
from bridge.parallel.vocab import (
    VocabPadding,
    mask_padded_logits,
    merge_vocab,
    pad_vocab,
    padded_vocab_size,
    split_vocab,
    strip_padded_logits,
    unpad_vocab,
    vocab_padding,
)
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


# -- the padding policy (Megatron-Bridge's should_pad_vocab) and its record -----------------------


@settings(max_examples=300, deadline=None)
@given(vocab=st.integers(1, 10**6), tp=TPS, divisible_by=DIVISIBLE, should_pad=st.booleans())
def test_vocab_padding_pads_only_when_asked_or_when_tp_requires_it(
    vocab: int, tp: int, divisible_by: int, should_pad: bool
) -> None:
    record = vocab_padding(vocab, tp=tp, should_pad=should_pad, divisible_by=divisible_by)
    assert record.vocab_size == vocab and record.tp == tp
    assert record.padded_size % tp == 0 and record.padded_size >= vocab
    if should_pad:  # MCore / Megatron-LM's rule
        assert record.padded_size == padded_vocab_size(vocab, tp=tp, divisible_by=divisible_by)
    elif vocab % tp == 0:  # HF's vocabulary, untouched
        assert record.padded_size == vocab and record.reason == "none"
    else:  # the smallest size every TP rank can hold an equal slice of
        assert record.padded_size == vocab + (-vocab) % tp and record.reason == "tensor_parallel"
    assert (record.reason == "none") == (record.padding == 0)


@settings(max_examples=200, deadline=None)
@given(vocab=st.integers(1, 10**6), tp=TPS, divisible_by=DIVISIBLE, should_pad=st.booleans(), other_tp=TPS)
def test_vocab_padding_record_round_trips_through_json_and_other_tp_sizes(
    vocab: int, tp: int, divisible_by: int, should_pad: bool, other_tp: int
) -> None:
    record = vocab_padding(vocab, tp=tp, should_pad=should_pad, divisible_by=divisible_by)
    assert VocabPadding.from_json(record.to_json()) == record
    assert record.at_tp(other_tp).at_tp(tp) == record
    assert record.at_tp(other_tp) == vocab_padding(vocab, tp=other_tp, should_pad=should_pad,
                                                   divisible_by=divisible_by)


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ({"vocab_size": 200, "padded_vocab_size": 256, "tp": 1, "divisible_by": 1, "reason": "requested"},
         "inconsistent"),
        ({"vocab_size": 201, "padded_vocab_size": 202, "tp": 2, "divisible_by": 1, "reason": "none"},
         "reason 'none'"),
        ({"vocab_size": 200, "padded_vocab_size": 200, "tp": 1}, r"missing \['divisible_by', 'reason'\]"),
        ({"vocab_size": "200", "padded_vocab_size": 200, "tp": 1, "divisible_by": 1, "reason": "none"},
         r"not integers \['vocab_size'\]"),
        ([200, 256], "expected a JSON object"),
    ],
    ids=["wrong-size", "wrong-reason", "missing-keys", "string-size", "not-an-object"],
)
def test_vocab_padding_record_rejects_damaged_json_naming_the_source(case: object, pattern: str) -> None:
    with pytest.raises(ParallelLayoutError, match=pattern) as info:
        VocabPadding.from_json(case, source="/ckpt/layout.json")  # type: ignore[arg-type]
    assert "/ckpt/layout.json" in str(info.value) or "inconsistent" in str(info.value)


def test_vocab_padding_describes_why_it_pads() -> None:
    assert "TP=2 does not divide 201" in vocab_padding(201, tp=2).describe()
    assert "should_pad_vocab=True" in vocab_padding(200, tp=1, should_pad=True).describe()
    assert "not padded" in vocab_padding(200, tp=2).describe()


@FAST
@given(case=vocab_cases(), extra=st.integers(0, 9))
def test_pad_then_unpad_is_the_identity_and_pads_with_zero_rows(
    case: tuple[torch.Tensor, int, int], extra: int
) -> None:
    full = case[0]
    vocab = full.shape[0]
    padded = pad_vocab(full, vocab + extra)
    assert padded.shape[0] == vocab + extra and not as_bits(padded[vocab:]).ne(0).any()
    assert bitwise_equal(unpad_vocab(padded, vocab), full)
    assert bitwise_equal(pad_vocab(unpad_vocab(padded, vocab), vocab + extra), padded)  # zero padding: inverse both ways


def test_pad_and_unpad_reject_sizes_that_do_not_fit() -> None:
    with pytest.raises(ParallelLayoutError, match="already has more rows"):
        pad_vocab(torch.ones(5, 2), 4)
    with pytest.raises(ParallelLayoutError, match="fewer than vocab_size=6"):
        unpad_vocab(torch.ones(5, 2), 6)


@FAST
@given(vocab=st.integers(1, 30), extra=st.integers(0, 5), seed=st.integers(0, 2**16))
def test_masked_logits_never_let_a_padded_id_win_and_strip_back_to_the_real_vocabulary(
    vocab: int, extra: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, vocab + extra, generator=g) - 10.0
    logits[..., vocab:] = 100.0  # padding rows that are not zero (e.g. trained), the worst case
    masked = mask_padded_logits(logits, vocab)
    assert bool((masked.argmax(-1) < vocab).all())
    assert torch.isneginf(masked[..., vocab:]).all()
    assert torch.equal(strip_padded_logits(masked, vocab), strip_padded_logits(logits, vocab))
    assert logits[..., vocab:].eq(100.0).all()  # the input is not modified
    with pytest.raises(ParallelLayoutError, match="narrower than the vocabulary"):
        strip_padded_logits(logits, vocab + extra + 1)
