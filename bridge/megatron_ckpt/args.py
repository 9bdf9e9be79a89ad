"""The ``args`` that Megatron-LM keeps in ``common.pt``, both ways: from a provider, and back to one.

Megatron-LM's ``load_checkpoint`` reads ``state_dict["args"]`` (an ``argparse.Namespace``) for the
writer's parallel layout and, with ``--use-checkpoint-args``, for the model's architecture
(``load_args_from_checkpoint`` in ``megatron/training/checkpointing.py``); Megatron-Bridge's
checkpoints lacked it (``KeyError: 'args'``). :func:`megatron_args` writes the fields those
functions read, under Megatron-LM's names, from a provider. :func:`check_args_against` and
:func:`provider_settings_from_args` go the other way for a checkpoint Megatron-LM wrote itself:
the HF config the user names gives the family, and ``args`` must agree with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import torch

from bridge.errors import CheckpointError

__all__ = ["ARCHITECTURE_ARGS", "args_dict", "check_args_against", "megatron_args", "provider_settings_from_args"]

_NORMALIZATION = {"RMSNorm": "RMSNorm", "LayerNorm": "LayerNorm"}
_ACTIVATION_FLAGS = {"silu": "swiglu", "relu": "squared_relu"}


def _provider_value(provider: Any, name: str, default: Any = None) -> Any:
    try:
        return getattr(provider, name)
    except AttributeError:
        return default


def _hybrid_layer_pattern(provider: Any) -> str | None:
    """The HybridModel pattern Megatron-LM's ``--hybrid-layer-pattern`` takes (no ``|``: the stages are the
    run's), or None for a GPTModel provider; Megatron-LM tells the two checkpoint layouts apart by it."""
    resolved = getattr(provider, "resolved_model_class", None)
    if getattr(provider, "model_class", None) == "gpt":  # asked for: no need to import MCore (offline convert)
        return None
    if resolved is None or resolved() != "hybrid":
        return None
    from bridge.hybrid_model import stage_pattern

    return stage_pattern(provider).replace("|", "")


def _gpt_blocks(values: Mapping[str, Any]) -> Any:
    """``num_layers`` in GPT blocks: a hybrid run's args count its pattern's layers (``*`` is one per block)."""
    pattern = values.get("hybrid_layer_pattern") or values.get("hybrid_override_pattern")
    return pattern.split("/")[0].count("*") if pattern else values.get("num_layers")


def megatron_args(provider: Any, *, iteration: int = 0, world_size: int = 1) -> argparse.Namespace:
    """Megatron-LM's ``args`` for a checkpoint written from ``provider`` (plain values only).

    Optimizer and RNG state are never written (``no_save_optim``, ``no_save_rng``), so Megatron-LM
    loads such a checkpoint with ``--finetune`` (or ``--no-load-optim --no-load-rng``).
    """
    tp, pp = provider.tensor_model_parallel_size, provider.pipeline_model_parallel_size
    padding = provider.vocab_padding
    experts = provider.num_moe_experts
    gated = bool(provider.gated_linear_unit)
    dtype = provider.params_dtype
    pattern = _hybrid_layer_pattern(provider)
    ns = argparse.Namespace(
        # architecture (load_args_from_checkpoint's list); a HybridModel run's layers are its pattern's
        num_layers=len(pattern) if pattern else provider.num_layers,
        hybrid_layer_pattern=pattern,
        hidden_size=provider.hidden_size,
        ffn_hidden_size=provider.ffn_hidden_size,
        num_attention_heads=provider.num_attention_heads,
        group_query_attention=provider.query_groups != provider.num_attention_heads,
        num_query_groups=provider.query_groups,
        kv_channels=provider.head_dim,
        seq_length=provider.seq_length,
        max_position_embeddings=provider.seq_length,
        position_embedding_type=provider.position_embedding_type,
        add_position_embedding=provider.position_embedding_type == "learned_absolute",
        use_rotary_position_embeddings=provider.position_embedding_type == "rope",
        rotary_base=int(provider.rotary_base) if float(provider.rotary_base).is_integer() else provider.rotary_base,
        rotary_percent=provider.rotary_percent,
        rotary_interleaved=bool(_provider_value(provider, "rotary_interleaved", False)),
        use_rope_scaling=bool(provider.rope_scaling),
        rope_scaling_factor=provider.rope_scaling_factor,
        add_bias_linear=provider.add_bias_linear,
        add_qkv_bias=provider.add_qkv_bias,
        swiglu=gated and provider.activation == "silu",
        squared_relu=False,
        untie_embeddings_and_output_weights=not provider.share_embeddings_and_output_weights,
        apply_layernorm_1p=provider.layernorm_zero_centered_gamma,
        normalization=_NORMALIZATION.get(provider.normalization, provider.normalization),
        norm_epsilon=provider.layernorm_epsilon,
        qk_layernorm=provider.qk_layernorm,
        apply_query_key_layer_scaling=False,
        attention_dropout=provider.attention_dropout,
        hidden_dropout=provider.hidden_dropout,
        init_method_std=provider.init_method_std,
        num_experts=experts,
        moe_router_topk=provider.moe_router_topk if experts else 2,
        moe_ffn_hidden_size=(provider.moe_ffn_hidden_size or provider.ffn_hidden_size) if experts else None,
        moe_shared_expert_intermediate_size=provider.moe_shared_expert_intermediate_size,
        moe_grouped_gemm=False,
        # vocabulary
        vocab_size=padding.vocab_size,
        padded_vocab_size=padding.padded_size,
        make_vocab_size_divisible_by=padding.divisible_by,
        # numerics
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        # parallelism at write time
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        expert_model_parallel_size=provider.expert_model_parallel_size,
        virtual_pipeline_model_parallel_size=None,
        num_layers_per_virtual_pipeline_stage=None,
        decoder_first_pipeline_num_layers=provider.num_layers_in_first_pipeline_stage,
        decoder_last_pipeline_num_layers=provider.num_layers_in_last_pipeline_stage,
        sequence_parallel=provider.sequence_parallel,
        world_size=world_size,
        data_parallel_size=max(world_size // (tp * pp), 1),
        # checkpoint
        ckpt_format="torch_dist",
        use_dist_ckpt=True,
        no_save_optim=True,
        no_save_rng=True,
        iteration=iteration,
        consumed_train_samples=0,
        skipped_train_samples=0,
        consumed_valid_samples=0,
    )
    return ns


#: (Megatron-LM arg, provider field): the architecture a checkpoint's ``args`` must share with the HF config.
ARCHITECTURE_ARGS: tuple[tuple[str, str], ...] = (
    ("num_layers", "num_layers"),
    ("hidden_size", "hidden_size"),
    ("ffn_hidden_size", "ffn_hidden_size"),
    ("num_attention_heads", "num_attention_heads"),
    ("num_query_groups", "query_groups"),
    ("kv_channels", "head_dim"),
    ("num_experts", "num_moe_experts"),
)


def args_dict(args: Any, source: str) -> dict[str, Any]:
    """Megatron-LM's saved ``args`` (a Namespace, or a mapping) as a dict; anything else is refused."""
    if isinstance(args, argparse.Namespace) or hasattr(args, "__dict__"):
        return dict(vars(args))
    if isinstance(args, Mapping):
        return dict(args)
    raise CheckpointError(
        f"{source}: 'args' is a {type(args).__name__}, expected the argparse.Namespace Megatron-LM saves; "
        "the checkpoint was not written by Megatron-LM's save_checkpoint (or by mcore-compat)"
    )


def check_args_against(args: Any, provider: Any, *, source: str) -> None:
    """Raise :class:`CheckpointError` listing every architecture field where ``args`` and ``provider`` differ."""
    values = args_dict(args, source)
    values["num_layers"] = _gpt_blocks(values)
    diffs = []
    for arg, field in ARCHITECTURE_ARGS:
        if arg not in values or values[arg] is None and arg != "num_experts":
            continue
        want = _provider_value(provider, field)
        if arg == "num_query_groups" and not values.get("group_query_attention", True):
            continue
        if arg == "kv_channels" and values[arg] is None:
            continue
        if (values[arg] or None) != (want or None):
            diffs.append(f"{arg}: checkpoint {values[arg]!r}, HF config {want!r}")
    if diffs:
        raise CheckpointError(
            f"{source}: the checkpoint's args describe another architecture than the HF config: "
            + "; ".join(diffs) + ". Name the HF config of the model that was trained (--hf-config)."
        )


def provider_settings_from_args(args: Any, *, source: str) -> dict[str, Any]:
    """Provider fields a Megatron-LM checkpoint fixes beyond the HF config: dtype and vocabulary padding.

    Megatron-LM pads the vocabulary to a multiple of ``make_vocab_size_divisible_by x TP``; loading at
    TP=1 with ``should_pad_vocab`` and that product as the multiple gives the same padded size.
    """
    values = args_dict(args, source)
    out: dict[str, Any] = {}
    dtype = values.get("params_dtype")
    if isinstance(dtype, torch.dtype):
        out["params_dtype"] = dtype
    elif values.get("bf16"):
        out["params_dtype"] = torch.bfloat16
    elif values.get("fp16"):
        out["params_dtype"] = torch.float16
    divisible = values.get("make_vocab_size_divisible_by")
    tp = values.get("tensor_model_parallel_size") or 1
    if isinstance(divisible, int) and divisible * tp > 1:  # e.g. 17 rows at TP=2: padded to 18, kept at TP=1
        out["should_pad_vocab"] = True
        out["make_vocab_size_divisible_by"] = divisible * tp
    return out
