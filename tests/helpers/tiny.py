"""Tiny HF checkpoints built locally from configs (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["TINY_LLAMA", "make_hf_checkpoint", "hf_logits"]

TINY_LLAMA: dict[str, Any] = dict(
    vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, initializer_range=0.2,
)


def make_hf_checkpoint(path: Path, config_cls: Any = None, model_cls: Any = None, *, seed: int = 0,
                       dtype: torch.dtype = torch.float32, **overrides: Any) -> Path:
    """Save a randomly initialised HF model built from ``config_cls(**TINY_LLAMA | overrides)``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config_cls = config_cls or LlamaConfig
    model_cls = model_cls or LlamaForCausalLM
    torch.manual_seed(seed)
    kwargs = {**TINY_LLAMA, **overrides} if config_cls is LlamaConfig else overrides
    config = config_cls(**kwargs)
    model = model_cls(config).to(dtype)
    model.save_pretrained(path)
    return Path(path)


@torch.no_grad()
def hf_logits(path: Path, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    kwargs.setdefault("attn_implementation", "eager")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()
    return model(input_ids).logits
