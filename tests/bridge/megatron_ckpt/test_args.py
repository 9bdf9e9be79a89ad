"""Megatron-LM's ``args`` from a provider and back: the pair agrees on every provider (property test), any
architecture difference is named, and a checkpoint's dtype and vocabulary padding come back."""

from __future__ import annotations

import argparse

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import CheckpointError
from bridge.megatron_ckpt.args import check_args_against, megatron_args, provider_settings_from_args
from bridge.providers import GPTModelProvider


@st.composite
def providers(draw: st.DrawFn, *, max_layers: int = 8) -> GPTModelProvider:
    groups = draw(st.integers(1, 4))
    heads = groups * draw(st.integers(1, 4))
    return GPTModelProvider(
        num_layers=draw(st.integers(1, max_layers)), hidden_size=heads * draw(st.sampled_from([8, 16])),
        ffn_hidden_size=draw(st.sampled_from([32, 64, 96])), num_attention_heads=heads, num_query_groups=groups,
        vocab_size=draw(st.integers(16, 300)), params_dtype=draw(st.sampled_from([torch.float32, torch.bfloat16])),
        should_pad_vocab=draw(st.booleans()), tensor_model_parallel_size=draw(st.sampled_from([1, 2])),
        share_embeddings_and_output_weights=draw(st.booleans()),
    )


@settings(max_examples=40, deadline=None)
@given(provider=providers())
def test_args_of_a_provider_agree_with_it_and_give_back_its_dtype_and_padded_vocab(provider) -> None:
    args = megatron_args(provider)
    assert isinstance(args, argparse.Namespace)
    check_args_against(args, provider, source="common.pt")  # no difference to report
    settings_back = provider_settings_from_args(args, source="common.pt")
    assert settings_back["params_dtype"] == provider.params_dtype
    reloaded = GPTModelProvider(vocab_size=provider.vocab_size, **{k: v for k, v in settings_back.items()
                                                                   if k != "params_dtype"})
    assert reloaded.padded_vocab_size == args.padded_vocab_size  # loaded at TP=1: the same rows
    assert args.untie_embeddings_and_output_weights is not provider.share_embeddings_and_output_weights


@settings(max_examples=20, deadline=None)
@given(provider=providers(), extra=st.integers(1, 4))
def test_an_architecture_difference_is_named_with_both_values(provider, extra: int) -> None:
    args = megatron_args(provider)
    args.num_layers += extra
    with pytest.raises(CheckpointError, match=rf"num_layers: checkpoint {args.num_layers}, HF config "
                                              rf"{provider.num_layers}"):
        check_args_against(args, provider, source="common.pt")


def test_args_that_are_not_a_namespace_are_refused() -> None:
    with pytest.raises(CheckpointError, match="'args' is a int, expected the argparse.Namespace"):
        check_args_against(3, GPTModelProvider(), source="x/common.pt")
