"""Published HF ``config.json`` architectures of one flagship model per supported family.

Written out here as data (nothing is downloaded): the architecture fields of each model's
released ``config.json`` on the Hugging Face Hub, without tokenizer ids, ``auto_map`` or
quantization settings, which do not affect the MCore model. The recipes in
:mod:`bridge.config.recipes` start from these.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["FLAGSHIPS", "FLAGSHIP_FAMILIES"]

_LLAMA3_8B = {  # meta-llama/Meta-Llama-3-8B
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": None, "hidden_act": "silu",
    "attention_bias": False, "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_QWEN2_7B = {  # Qwen/Qwen2-7B
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu", "sliding_window": 131072,
    "use_sliding_window": False, "max_window_layers": 28, "tie_word_embeddings": False,
    "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_QWEN3_8B = {  # Qwen/Qwen3-8B
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3",
    "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "hidden_act": "silu",
    "attention_bias": False, "sliding_window": None, "use_sliding_window": False, "max_window_layers": 36,
    "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1
    "architectures": ["MistralForCausalLM"], "model_type": "mistral",
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096, "hidden_act": "silu",
    "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_GEMMA_7B = {  # google/gemma-7b
    "architectures": ["GemmaForCausalLM"], "model_type": "gemma",
    "vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
    "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256, "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None, "hidden_act": "gelu",
    "attention_bias": False, "tie_word_embeddings": True, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_QWEN3_30B_A3B = {  # Qwen/Qwen3-30B-A3B
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
    "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
    "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": True, "decoder_sparse_step": 1,
    "mlp_only_layers": [], "router_aux_loss_coef": 0.001, "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "hidden_act": "silu",
    "attention_bias": False, "sliding_window": None, "use_sliding_window": False, "max_window_layers": 48,
    "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_DEEPSEEK_V3 = {  # deepseek-ai/DeepSeek-V3
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "first_k_dense_replace": 3, "moe_layer_freq": 1,
    "num_attention_heads": 128, "num_key_value_heads": 128, "q_lora_rank": 1536, "kv_lora_rank": 512,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True, "routed_scaling_factor": 2.5,
    "num_nextn_predict_layers": 1, "max_position_embeddings": 163840, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False, "initializer_range": 0.02,
    "torch_dtype": "bfloat16",
}

# Issue 18's families. Kimi-K2's published config.json names ``DeepseekV3ForCausalLM`` with
# ``model_type`` ``kimi_k2`` and custom code (``auto_map``); the bridge registers the family by the name
# ``KimiK2ForCausalLM``, which its entry uses. Gemma 3's is the ``text_config`` of the multimodal release,
# under the text-only class ``Gemma3ForCausalLM``.

_PHI3_MINI = {  # microsoft/Phi-3-mini-4k-instruct
    "architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
    "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None,
    "sliding_window": 2047, "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False,
    "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_MINITRON_8B = {  # nvidia/Minitron-8B-Base (Nemotron-4 architecture)
    "architectures": ["NemotronForCausalLM"], "model_type": "nemotron",
    "vocab_size": 256000, "hidden_size": 4096, "intermediate_size": 16384, "num_hidden_layers": 32,
    "num_attention_heads": 48, "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 4096,
    "norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "hidden_act": "relu2",
    "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}

_GEMMA2_9B = {  # google/gemma-2-9b
    "architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2",
    "vocab_size": 256000, "hidden_size": 3584, "intermediate_size": 14336, "num_hidden_layers": 42,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "query_pre_attn_scalar": 256,
    "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 4096,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False, "tie_word_embeddings": True,
    "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_GEMMA3_12B = {  # google/gemma-3-12b-pt, its text_config
    "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
    "vocab_size": 262208, "hidden_size": 3840, "intermediate_size": 15360, "num_hidden_layers": 48,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "query_pre_attn_scalar": 256,
    "attn_logit_softcapping": None, "final_logit_softcapping": None, "sliding_window": 1024,
    "sliding_window_pattern": 6, "max_position_embeddings": 131072, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "rope_local_base_freq": 10000.0,
    "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False, "tie_word_embeddings": True,
    "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_SMOLLM3_3B = {  # HuggingFaceTB/SmolLM3-3B
    "architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3",
    "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
    "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 65536,
    "no_rope_layer_interval": 4, "no_rope_layers": [0 if (i + 1) % 4 == 0 else 1 for i in range(36)],
    "use_sliding_window": False, "sliding_window": None, "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
    "rope_scaling": None, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
    "tie_word_embeddings": True, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_GRANITE_8B = {  # ibm-granite/granite-3.3-8b-base
    "architectures": ["GraniteForCausalLM"], "model_type": "granite",
    "vocab_size": 49159, "hidden_size": 4096, "intermediate_size": 12800, "num_hidden_layers": 40,
    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
    "embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.0078125,
    "logits_scaling": 16.0, "rms_norm_eps": 1e-5, "rope_theta": 10000000.0, "rope_scaling": None,
    "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": True,
    "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_MIXTRAL_8X7B = {  # mistralai/Mixtral-8x7B-v0.1
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
    "router_aux_loss_coef": 0.02, "max_position_embeddings": 32768, "sliding_window": None,
    "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": False,
    "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_QWEN1_5_MOE_A2_7B = {  # Qwen/Qwen1.5-MoE-A2.7B-Chat (the architecture of the base model)
    "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe",
    "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
    "shared_expert_intermediate_size": 5632, "num_hidden_layers": 24, "num_attention_heads": 16,
    "num_key_value_heads": 16, "num_experts": 60, "num_experts_per_tok": 4, "norm_topk_prob": False,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "router_aux_loss_coef": 0.001,
    "max_position_embeddings": 32768, "sliding_window": 32768, "use_sliding_window": False,
    "max_window_layers": 21, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_OLMOE_1B_7B = {  # allenai/OLMoE-1B-7B-0125
    "architectures": ["OlmoeForCausalLM"], "model_type": "olmoe",
    "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 1024, "num_hidden_layers": 16,
    "num_attention_heads": 16, "num_key_value_heads": 16, "num_experts": 64, "num_experts_per_tok": 8,
    "norm_topk_prob": False, "router_aux_loss_coef": 0.01, "clip_qkv": None, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "hidden_act": "silu",
    "attention_bias": False, "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_DEEPSEEK_V2_LITE = {  # deepseek-ai/DeepSeek-V2-Lite
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2",
    "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
    "num_hidden_layers": 27, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": None, "kv_lora_rank": 512,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 64, "n_shared_experts": 2, "num_experts_per_tok": 6, "n_group": 1, "topk_group": 1,
    "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False, "routed_scaling_factor": 1.0,
    "max_position_embeddings": 163840, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False, "initializer_range": 0.02,
    "torch_dtype": "bfloat16",
}

_KIMI_K2 = {  # moonshotai/Kimi-K2-Base: DeepSeek-V3's architecture with these fields changed (class name: above)
    **_DEEPSEEK_V3,
    "architectures": ["KimiK2ForCausalLM"], "model_type": "kimi_k2",
    "vocab_size": 163840, "first_k_dense_replace": 1, "num_attention_heads": 64, "num_key_value_heads": 64,
    "n_routed_experts": 384, "n_group": 1, "topk_group": 1, "routed_scaling_factor": 2.827,
    "num_nextn_predict_layers": 0, "max_position_embeddings": 131072, "rope_theta": 50000.0,
    "rope_scaling": {"type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
                     "beta_fast": 1.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0},
}

_GLM4_5_AIR = {  # zai-org/GLM-4.5-Air-Base
    "architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe",
    "vocab_size": 151552, "hidden_size": 4096, "intermediate_size": 10944, "moe_intermediate_size": 1408,
    "num_hidden_layers": 46, "first_k_dense_replace": 1, "num_attention_heads": 96, "num_key_value_heads": 8,
    "head_dim": 128, "partial_rotary_factor": 0.5, "attention_bias": True, "use_qk_norm": False,
    "n_routed_experts": 128, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 1, "topk_group": 1,
    "norm_topk_prob": True, "routed_scaling_factor": 1.0, "num_nextn_predict_layers": 1,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "rope_scaling": None,
    "hidden_act": "silu", "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_ERNIE4_5_21B_A3B = {  # baidu/ERNIE-4.5-21B-A3B-Base-PT
    "architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie4_5_moe",
    "vocab_size": 103424, "hidden_size": 2560, "intermediate_size": 12288, "moe_intermediate_size": 1536,
    "num_hidden_layers": 28, "num_attention_heads": 20, "num_key_value_heads": 4, "head_dim": 128,
    "moe_num_experts": 64, "moe_num_shared_experts": 2, "moe_k": 6, "moe_layer_start_index": 1,
    "moe_layer_end_index": 27, "moe_layer_interval": 1, "moe_norm_min": 1e-12, "use_bias": False,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
    "tie_word_embeddings": True, "initializer_range": 0.02, "torch_dtype": "bfloat16",
}

_GPT_OSS_20B = {  # openai/gpt-oss-20b (its MXFP4 quantization_config left out, as for every entry)
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
    "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880, "num_hidden_layers": 24,
    "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64, "num_local_experts": 32,
    "num_experts_per_tok": 4, "experts_per_token": 4, "router_aux_loss_coef": 0.9, "swiglu_limit": 7.0,
    "sliding_window": 128, "layer_types": ["sliding_attention", "full_attention"] * 12,
    "initial_context_length": 4096, "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 150000.0,
    "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 4096,
                     "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False},
    "hidden_act": "silu", "attention_bias": True, "tie_word_embeddings": False, "initializer_range": 0.02,
    "torch_dtype": "bfloat16",
}

FLAGSHIPS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "llama3_8b": MappingProxyType(_LLAMA3_8B),
    "qwen2_7b": MappingProxyType(_QWEN2_7B),
    "qwen3_8b": MappingProxyType(_QWEN3_8B),
    "mistral_7b": MappingProxyType(_MISTRAL_7B),
    "gemma_7b": MappingProxyType(_GEMMA_7B),
    "qwen3_30b_a3b": MappingProxyType(_QWEN3_30B_A3B),
    "deepseek_v3": MappingProxyType(_DEEPSEEK_V3),
    "phi3_mini": MappingProxyType(_PHI3_MINI),
    "minitron_8b": MappingProxyType(_MINITRON_8B),
    "gemma2_9b": MappingProxyType(_GEMMA2_9B),
    "gemma3_12b": MappingProxyType(_GEMMA3_12B),
    "smollm3_3b": MappingProxyType(_SMOLLM3_3B),
    "granite3_8b": MappingProxyType(_GRANITE_8B),
    "mixtral_8x7b": MappingProxyType(_MIXTRAL_8X7B),
    "qwen1_5_moe_a2_7b": MappingProxyType(_QWEN1_5_MOE_A2_7B),
    "olmoe_1b_7b": MappingProxyType(_OLMOE_1B_7B),
    "deepseek_v2_lite": MappingProxyType(_DEEPSEEK_V2_LITE),
    "kimi_k2": MappingProxyType(_KIMI_K2),
    "glm4_5_air": MappingProxyType(_GLM4_5_AIR),
    "ernie4_5_21b_a3b": MappingProxyType(_ERNIE4_5_21B_A3B),
    "gpt_oss_20b": MappingProxyType(_GPT_OSS_20B),
})
"""Flagship name -> HF ``config.json`` architecture fields (read-only)."""

# HF's ``model_type`` where it is not the bridge family's name (the bridge dispatches on ``architectures``).
_FAMILY_OF_MODEL_TYPE = {"gemma3_text": "gemma3"}

FLAGSHIP_FAMILIES: Mapping[str, str] = MappingProxyType({
    name: _FAMILY_OF_MODEL_TYPE.get(cfg["model_type"], cfg["model_type"]) for name, cfg in FLAGSHIPS.items()
})
"""Flagship name -> the bridge family that converts it (cheap: no bridge import)."""
