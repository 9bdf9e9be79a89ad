"""TinyGPT provider: the project's own ``trust_remote_code`` test architecture (a Llama under other names).

Its configuration class lives in the checkpoint (``auto_map``), so this module never imports it: the
provider reads plain attributes from whatever config object it is given, the ``TinyGPTConfig`` that
``AutoConfig`` builds once the checkpoint is trusted or a ``transformers.PretrainedConfig`` holding the
same keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError
from bridge.models import hf_config as H
from bridge.models._llama_like import LlamaModelProvider

__all__ = ["TinyGPTModelProvider", "tiny_gpt_provider_kwargs"]

_REQUIRED = ("vocab_size", "hidden_size", "num_layers", "num_heads", "ffn_hidden_size")


@dataclass
class TinyGPTModelProvider(LlamaModelProvider):
    """TinyGPT: RMSNorm, SwiGLU, rotate-half RoPE, GQA, no biases (Llama's defaults)."""


def tiny_gpt_provider_kwargs(cfg: Any) -> dict[str, Any]:
    """Provider fields from a TinyGPT config (``num_layers``, ``num_heads``, ``num_kv_heads``, ...)."""
    missing = [name for name in _REQUIRED if H.get(cfg, name) is None]
    if missing:
        raise ConfigError(
            f"expected a TinyGPT config with {list(_REQUIRED)}; {missing} are missing. "
            "Is this checkpoint a TinyGPTForCausalLM?"
        )
    heads = int(H.get(cfg, "num_heads"))
    hidden = int(H.get(cfg, "hidden_size"))
    if hidden % heads:
        raise ConfigError(f"TinyGPT needs hidden_size divisible by num_heads; found {hidden} and {heads}")
    return dict(
        num_layers=int(H.get(cfg, "num_layers")),
        hidden_size=hidden,
        ffn_hidden_size=int(H.get(cfg, "ffn_hidden_size")),
        num_attention_heads=heads,
        num_query_groups=int(H.get(cfg, "num_kv_heads", default=heads)),
        kv_channels=hidden // heads,
        vocab_size=int(H.get(cfg, "vocab_size")),
        seq_length=int(H.get(cfg, "max_position_embeddings", default=2048)),
        layernorm_epsilon=float(H.get(cfg, "rms_norm_eps", default=1e-5)),
        rotary_base=float(H.get(cfg, "rope_theta", default=10000.0)),
        share_embeddings_and_output_weights=bool(H.get(cfg, "tie_word_embeddings", default=False)),
        params_dtype=H.torch_dtype(cfg),
    )
