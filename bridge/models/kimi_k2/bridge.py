"""Kimi-K2 bridge: registered by architecture STRING (``KimiK2ForCausalLM``); no HF class is imported.

Its checkpoints carry their configuration and modelling code (``auto_map``), so loading one needs
``trust_remote_code`` under the policy of :mod:`bridge.trust`: an explicit ``True``, or a Hub ID of a
trusted organisation. The tensors are DeepSeek-V3's, so the table is the shared DeepSeek table with
the router's ``e_score_correction_bias`` (:func:`bridge.models._mla.deepseek_mappings`).
"""

from __future__ import annotations

from typing import Any

from bridge.mappings import MegatronMappingRegistry
from bridge.models._mla import deepseek_mappings
from bridge.models.kimi_k2.provider import kimi_k2_provider
from bridge.providers import GPTModelProvider
from bridge.registry import MegatronModelBridge

__all__ = ["ARCHITECTURE", "KimiK2Bridge", "MODEL_TYPE"]

ARCHITECTURE = "KimiK2ForCausalLM"
MODEL_TYPE = "kimi_k2"


@MegatronModelBridge.register_bridge(source=ARCHITECTURE, target="GPTModel")
class KimiK2Bridge(MegatronModelBridge):
    family = "kimi_k2"

    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        return kimi_k2_provider(hf_config)

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        return MegatronMappingRegistry(*deepseek_mappings(
            tied=provider.share_embeddings_and_output_weights,
            q_lora=provider.config_overrides.get("q_lora_rank") is not None, expert_bias=True,
        ))

    @classmethod
    def representative_configs(cls) -> list[Any]:
        """Kimi-K2's shape in small (query LoRA, one dense layer, one shared expert, ungrouped sigmoid
        routing, YaRN as in Kimi-K2-Instruct-0905), as plain ``PretrainedConfig`` objects: its class lives
        in the checkpoint."""
        from transformers import PretrainedConfig

        yarn = {"rope_type": "yarn", "rope_theta": 50000.0, "factor": 4.0, "original_max_position_embeddings": 64,
                "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}
        base = dict(architectures=[ARCHITECTURE], model_type=MODEL_TYPE, vocab_size=128, hidden_size=64,
                    intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=3, first_k_dense_replace=1,
                    num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16,
                    qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
                    num_experts_per_tok=4, n_shared_experts=1, n_group=1, topk_group=1,
                    routed_scaling_factor=2.827, norm_topk_prob=True, hidden_act="silu", rms_norm_eps=1e-6,
                    max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": 50000.0})
        return [
            PretrainedConfig(**{**base, "rope_parameters": yarn}),
            PretrainedConfig(**base, tie_word_embeddings=True),
        ]
