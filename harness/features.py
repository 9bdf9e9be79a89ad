"""Named MCore features, each a predicate over a revision's static API.

A feature is supported when all of its ``requires`` checks hold and, if it has ``any_of``
groups, when at least one group holds entirely (for APIs that moved between releases).
Checks use the string notation of :mod:`harness.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checks import Check, parse_check

__all__ = ["FEATURES", "Feature", "feature_by_name"]


@dataclass(frozen=True)
class Feature:
    """A named feature: what it is, and what a revision must provide for it."""

    name: str
    description: str
    requires: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    model_class: str | None = None
    """The model class the feature is (``"gpt"``, ``"hybrid"``): its cells say where that class is deprecated."""

    def checks(self) -> tuple[Check, ...]:
        return tuple(parse_check(c) for c in self.requires)

    def groups(self) -> tuple[tuple[Check, ...], ...]:
        return tuple(tuple(parse_check(c) for c in g) for g in self.any_of)


FEATURES: tuple[Feature, ...] = (
    Feature("transformer_config", "TransformerConfig dataclass",
            ("class:TransformerConfig", "module:megatron.core.transformer.transformer_config")),
    Feature("gpt_model", "GPTModel with layer specs",
            ("module:megatron.core.models.gpt.gpt_model", "layer_spec:get_gpt_layer_local_spec"), model_class="gpt"),
    Feature("gqa", "grouped-query attention (num_query_groups)", ("field:num_query_groups",)),
    Feature("rope_fusion", "fused rotary embedding", ("field:apply_rope_fusion",)),
    Feature("rotary_interleaved", "interleaved rotary embedding", ("field:rotary_interleaved",)),
    Feature("rope_scaling", "Llama-3.1 style RoPE scaling (GPTModel rope_scaling)",
            ("gpt_param:rope_scaling",)),
    Feature("yarn", "YaRN rotary embedding",
            ("module:megatron.core.models.common.embeddings.yarn_rotary_pos_embedding",)),
    Feature("qk_layernorm", "QK layernorm", ("field:qk_layernorm",)),
    Feature("sliding_window", "sliding-window attention (window_size)", ("field:window_size",)),
    Feature("interleaved_sliding_window", "sliding window on a subset of layers",
            ("field:window_size", "field:window_attn_skip_freq")),
    Feature("softmax_type", "attention softmax variants (sinks / off-by-one)", ("field:softmax_type",)),
    Feature("attention_backend", "selectable attention backend (attention_backend)",
            ("field:attention_backend",)),
    Feature("experimental_attention", "experimental attention variants",
            ("field:experimental_attention_variant",)),
    Feature("moe", "mixture of experts", ("field:num_moe_experts", "module:megatron.core.transformer.moe")),
    Feature("moe_grouped_gemm", "MoE grouped GEMM", ("field:moe_grouped_gemm",)),
    Feature("moe_shared_experts", "MoE shared experts", ("field:moe_shared_expert_intermediate_size",)),
    Feature("moe_layer_freq", "MoE on a subset of layers (moe_layer_freq)", ("field:moe_layer_freq",)),
    Feature("moe_router_score_function", "sigmoid / softmax router score function",
            ("field:moe_router_score_function",)),
    Feature("mla", "multi-latent attention",
            ("class:MLATransformerConfig", "module:megatron.core.transformer.multi_latent_attention")),
    Feature("mtp", "multi-token prediction",
            ("field:mtp_num_layers", "module:megatron.core.transformer.multi_token_prediction",
             "gpt_param:mtp_block_spec")),
    Feature("decoder_block_spec", "per-layer decoder block specs", ("layer_spec:get_gpt_decoder_block_spec",)),
    Feature("heterogeneous_layers", "heterogeneous per-layer configurations",
            ("field:heterogeneous_block_specs", "module:megatron.core.transformer.heterogeneous")),
    Feature("fp8", "FP8 training", ("field:fp8",)),
    Feature("fp4", "FP4 training", ("field:fp4",)),
    Feature("te_spec", "Transformer Engine layer spec",
            ("layer_spec:get_gpt_layer_with_transformer_engine_spec",)),
    Feature("te_extensions", "Transformer Engine wrappers in megatron.core.extensions",
            ("module:megatron.core.extensions.transformer_engine",)),
    Feature("torch_norm", "torch-native norms (WrappedTorchNorm)", ("module:megatron.core.transformer.torch_norm",)),
    Feature("dist_checkpointing", "distributed checkpointing", ("module:megatron.core.dist_checkpointing",)),
    Feature("uneven_pipeline", "uneven first/last pipeline stages",
            any_of=(("field:num_layers_in_first_pipeline_stage", "field:num_layers_in_last_pipeline_stage"),
                    ("field:first_pipeline_num_layers", "field:last_pipeline_num_layers"))),
    Feature("pipeline_layout", "custom pipeline layer layout", ("field:pipeline_model_parallel_layout",)),
    Feature("cuda_graphs", "CUDA graphs", ("field:enable_cuda_graph",)),
    Feature("hybrid_ssm", "Mamba / hybrid SSM models",
            ("module:megatron.core.ssm", "module:megatron.core.models.mamba")),
    Feature("hybrid_model", "HybridModel (GPT blocks as '*-'/'*E' layer pairs; the bridge's model_class='hybrid')",
            ("module:megatron.core.models.hybrid.hybrid_model", "module:megatron.core.models.hybrid.hybrid_block"),
            model_class="hybrid"),
)  # fmt: skip
"""Every feature row of the matrix, in report order."""


def feature_by_name(name: str) -> Feature:
    """Raises KeyError naming the known features."""
    for feature in FEATURES:
        if feature.name == name:
            return feature
    raise KeyError(f"unknown feature {name!r}; known: {', '.join(f.name for f in FEATURES)}")
