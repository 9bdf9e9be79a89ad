"""Kimi-K2 provider: a DeepSeek-V3 network under its own name (``KimiK2ForCausalLM``, ``model_type``
``kimi_k2``), whose configuration class ships inside the checkpoint (``auto_map``).

The provider never imports that class: it reads the DeepSeek-V3 fields from whatever config object it is
given (the one ``AutoConfig`` builds once the checkpoint is trusted, or a ``PretrainedConfig`` with the
same keys) and maps them as DeepSeek-V3's: MLA with a query LoRA, the first ``first_k_dense_replace``
layers dense, one shared expert, and V3's sigmoid router with expert bias (Kimi-K2: 384 experts, top 8,
ungrouped, ``routed_scaling_factor`` 2.827). See :mod:`bridge.models._mla`.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._mla import MLAModelProvider, deepseek_provider_kwargs
from bridge.models._routing import sigmoid_router_kwargs

__all__ = ["kimi_k2_provider"]

_REQUIRED = ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
             "moe_intermediate_size")


def kimi_k2_provider(cfg: Any) -> MLAModelProvider:
    """The provider of a Kimi-K2 config (DeepSeek-V3 fields; see the module docstring)."""
    missing = [name for name in _REQUIRED if H.get(cfg, name) is None]
    if missing:
        raise ConfigError(
            f"expected a Kimi-K2 config with the DeepSeek-V3 fields {list(_REQUIRED)}; {missing} are missing. "
            "Is this checkpoint a KimiK2ForCausalLM?"
        )
    return MLAModelProvider(**deepseek_provider_kwargs(cfg, router=sigmoid_router_kwargs, family="Kimi-K2"))
