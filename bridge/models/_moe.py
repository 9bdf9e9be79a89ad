"""What the MoE families share: the provider that mixes dense and MoE layers, the settings every
bridged MoE uses, the 0/1 layer pattern, and the router/expert mapping rows.

HF checkpoints store experts one by one (``mlp.experts.{e}.gate_proj`` ...; transformers 5
fuses them into 3-D tensors in memory but writes this layout back on save). MCore's local
spec holds them as ``SequentialMLP`` experts ``mlp.experts.local_experts.{e}``: in every
expert pattern below the first ``*`` is the layer and the second the (global) expert.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from bridge import compat
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.mappings import AutoMapping, GatedMLPMapping, StackedExpertMapping
from bridge.providers import GPTModelProvider

__all__ = ["MOE_COMMON_OVERRIDES", "MoEModelProvider", "moe_layer_pattern", "moe_mappings", "stacked_expert_mappings"]

# Settings every bridged MoE shares: no token dropping, no training-only losses, experts as
# SequentialMLP, and the all-gather dispatcher (the all-to-all one creates a CUDA stream when built).
MOE_COMMON_OVERRIDES: dict[str, Any] = {
    "moe_expert_capacity_factor": None,
    "moe_aux_loss_coeff": 0.0,
    "moe_router_load_balancing_type": "none",
    "moe_token_dispatcher_type": "allgather",
    "moe_grouped_gemm": False,
}


@dataclass
class MoEModelProvider(GPTModelProvider):
    """A Llama-like provider (RMSNorm, SwiGLU, RoPE, no biases by default) whose layers may mix MoE and dense MLPs.

    It derives from ``GPTModelProvider`` directly, restating ``LlamaModelProvider``'s five defaults, so that the
    families built on it (Qwen3-MoE, MLA, ...) stay within two levels of inheritance.

    When ``config_overrides["moe_layer_freq"]`` is a 0/1 list with dense layers (0), the
    layers are built from MCore's ``get_gpt_decoder_block_spec`` (local, non-TE modules),
    which picks the dense or the MoE local spec per layer and slices them per PP stage;
    otherwise the single local layer spec is used.
    """

    normalization: str = "RMSNorm"
    gated_linear_unit: bool = True
    activation: str = "silu"
    position_embedding_type: str = "rope"
    add_bias_linear: bool = False

    def _experts_need_the_dense_size(self) -> bool:
        """Local experts of a release that sizes them with ``ffn_hidden_size`` (feature
        ``local_experts_own_size`` of :mod:`bridge.compat` missing: 0.10, 0.11)."""
        moe_size = self.moe_ffn_hidden_size or self.ffn_hidden_size
        return (bool(self.num_moe_experts) and self.transformer_layer_spec is None
                and moe_size != self.ffn_hidden_size and not compat.has_feature("local_experts_own_size"))

    def validate(self) -> None:
        vpp = self.config_overrides.get("virtual_pipeline_model_parallel_size")
        if vpp and self.heterogeneous and self.transformer_layer_spec is None and self.resolved_model_class() == "gpt":
            raise UnsupportedFeatureError(
                f"virtual_pipeline_model_parallel_size={vpp} on GPTModel with dense and MoE blocks: MCore's block spec "
                "for such a model is built per virtual stage, which the bridge's GPTModel path does not do; use "
                "model_class='hybrid' (megatron-core 0.18+, where each virtual stage picks its pattern segment) or no "
                "virtual pipeline"
            )
        if self.num_moe_experts and self.add_bias_linear and self.tensor_model_parallel_size > 1:
            raise UnsupportedFeatureError(
                f"tensor_model_parallel_size={self.tensor_model_parallel_size} with expert biases (add_bias_linear): "
                "MCore allows MoE biases only with expert_tensor_parallel_size=1, and the bridge splits experts with "
                "TP; use TP=1 (PP and EP are fine)"
            )
        if self._experts_need_the_dense_size() and self.heterogeneous:
            raise UnsupportedFeatureError(
                f"dense layers of size {self.ffn_hidden_size} next to experts of size {self.moe_ffn_hidden_size}: "
                f"megatron-core {compat.installed_version()} builds local experts (SequentialMLP) with "
                "ffn_hidden_size only, so both sizes cannot coexist. Upgrade megatron-core (0.12 lifts this)."
            )
        super().validate()

    def transformer_config(self):
        """As for any provider; where local experts are sized by ``ffn_hidden_size`` (0.10, 0.11) and every
        layer is MoE (so no dense MLP uses it), ``ffn_hidden_size`` is the experts' size."""
        config = super().transformer_config()
        if self._experts_need_the_dense_size() and not self.heterogeneous:
            config = dataclasses.replace(config, ffn_hidden_size=config.moe_ffn_hidden_size)
        return config

    def layer_spec_kwargs(self) -> dict[str, Any]:
        kwargs = super().layer_spec_kwargs()
        if self.config_class == "MLATransformerConfig":
            kwargs["multi_latent_attention"] = True
        return kwargs

    @property
    def heterogeneous(self) -> bool:
        freq = self.config_overrides.get("moe_layer_freq")
        return isinstance(freq, list) and not all(freq)

    def layer_spec(self):
        if self.transformer_layer_spec is not None or not self.heterogeneous:
            return super().layer_spec()
        from megatron.core.models.gpt import gpt_layer_specs

        fn = gpt_layer_specs.get_gpt_decoder_block_spec
        extra = compat.adapt_call_kwargs(fn, {"normalization": self.normalization}, "get_gpt_decoder_block_spec")
        return fn(self.transformer_config(), use_transformer_engine=False, **extra)


def moe_layer_pattern(num_layers: int, is_moe: Any) -> dict[str, Any]:
    """``{"moe_layer_freq": [0/1 per layer]}`` (1 = MoE) when some layers are dense, ``{}`` when none is
    (MCore's default: every layer MoE; older releases without the field then still work)."""
    pattern = [1 if is_moe(i) else 0 for i in range(num_layers)]
    if not any(pattern):
        raise ConfigError(
            f"expected at least one MoE layer, found none of {num_layers} layers; "
            "a checkpoint without experts belongs to a dense family"
        )
    return {} if all(pattern) else {"moe_layer_freq": pattern}


def moe_mappings(*, prefix: str = "model", shared_experts: bool = False,
                 expert_bias: bool = False) -> list[Any]:
    """Router and per-expert weights (and optionally shared experts and the router's expert bias)."""
    p, m = prefix, "decoder.layers.*.mlp"
    table: list[Any] = [
        AutoMapping(f"{m}.router.weight", f"{p}.layers.*.mlp.gate.weight"),
        GatedMLPMapping(f"{m}.experts.local_experts.*.linear_fc1.weight",
                        gate=f"{p}.layers.*.mlp.experts.*.gate_proj.weight",
                        up=f"{p}.layers.*.mlp.experts.*.up_proj.weight"),
        AutoMapping(f"{m}.experts.local_experts.*.linear_fc2.weight", f"{p}.layers.*.mlp.experts.*.down_proj.weight"),
    ]
    if expert_bias:
        table.append(AutoMapping(f"{m}.router.expert_bias", f"{p}.layers.*.mlp.gate.e_score_correction_bias"))
    if shared_experts:
        table += [
            GatedMLPMapping(f"{m}.shared_experts.linear_fc1.weight",
                            gate=f"{p}.layers.*.mlp.shared_experts.gate_proj.weight",
                            up=f"{p}.layers.*.mlp.shared_experts.up_proj.weight"),
            AutoMapping(f"{m}.shared_experts.linear_fc2.weight", f"{p}.layers.*.mlp.shared_experts.down_proj.weight"),
        ]
    return table


def stacked_expert_mappings(*, experts: int, prefix: str = "model", interleaved: bool = False,
                            biases: bool = False) -> list[Any]:
    """Experts stored stacked per layer (``mlp.experts.gate_up_proj [E, hidden, 2 * ffn]`` applied as ``x @ W``,
    ``down_proj [E, ffn, hidden]``, optionally their ``_bias`` tensors) <-> each expert's ``linear_fc1``/``linear_fc2``
    (:class:`~bridge.mappings.StackedExpertMapping`); ``interleaved``: gate and up columns alternate (GPT-OSS),
    else ``[gate | up]`` halves."""
    e, x = "decoder.layers.*.mlp.experts.local_experts.*", f"{prefix}.layers.*.mlp.experts"
    rows = [(f"{e}.linear_fc1.weight", f"{x}.gate_up_proj", True, interleaved, "gated"),
            (f"{e}.linear_fc2.weight", f"{x}.down_proj", True, False, "row")]
    if biases:
        rows += [(f"{e}.linear_fc1.bias", f"{x}.gate_up_proj_bias", False, interleaved, "gated"),
                 (f"{e}.linear_fc2.bias", f"{x}.down_proj_bias", False, False, "replicated")]
    return [StackedExpertMapping(m, h, num_experts=experts, transpose=t, interleaved=i, sharding=k)
            for m, h, t, i, k in rows]
