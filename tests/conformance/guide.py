"""Megatron-Bridge's "Get Started with Hugging Face Conversion" usage, restated in our own words as functions.

Each function is one step a Megatron-Bridge user takes, written against the public API the guide
and its API reference describe (load, provide, forward, export, conversion tasks, streaming). The
only line that differs from a Megatron-Bridge script is the import below::

    from megatron.bridge import AutoBridge   # Megatron-Bridge
    from bridge import AutoBridge            # mcore-compat

Nothing here knows about our internals: the conformance tests call these steps and check what a
user would check (shapes, HF logits, exported tensors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bridge import AutoBridge  # Megatron-Bridge: from megatron.bridge import AutoBridge

__all__ = ["conversion_tasks", "forward", "load", "provide", "save_pretrained", "save_weights", "stream_weights"]


def load(hf_path: str | Path, **kwargs: Any) -> Any:
    """Step 1: an AutoBridge for a supported checkpoint (local path or Hub ID)."""
    if not AutoBridge.can_handle(hf_path, trust_remote_code=kwargs.get("trust_remote_code", False)):
        raise RuntimeError(f"{hf_path} needs a custom bridge")
    return AutoBridge.from_hf_pretrained(hf_path, **kwargs)


def provide(bridge: Any, *, tp: int = 1, pp: int = 1) -> list[torch.nn.Module]:
    """Step 2: configure the provider before building, finalize, build the model (weights loaded)."""
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = tp
    provider.pipeline_model_parallel_size = pp
    provider.finalize()
    return provider.provide_distributed_model(wrap_with_ddp=False)


@torch.no_grad()
def forward(model: list[torch.nn.Module], input_ids: torch.Tensor) -> torch.Tensor:
    """Step 3: a plain forward of the first (only) chunk, causal attention, no mask passed: logits [B, S, V]."""
    chunk = model[0]
    chunk.eval()
    position_ids = torch.arange(input_ids.shape[1]).unsqueeze(0).expand_as(input_ids)
    return chunk(input_ids, position_ids, attention_mask=None)


def save_pretrained(bridge: Any, model: list[torch.nn.Module], out: Path) -> None:
    """Step 4a: config, tokenizer and weights, loadable by transformers."""
    bridge.save_hf_pretrained(model, out)


def save_weights(bridge: Any, model: list[torch.nn.Module], out: Path) -> None:
    """Step 4b: safetensors weights only."""
    bridge.save_hf_weights(model, out, show_progress=False)


def stream_weights(bridge: Any, model: list[torch.nn.Module]) -> dict[str, torch.Tensor]:
    """Step 4c: stream ``(name, weight)`` pairs on the host, as an RL framework would consume them."""
    return {name: weight for name, weight in bridge.export_hf_weights(model, cpu=True)}


def conversion_tasks(bridge: Any, model: list[torch.nn.Module]) -> list[Any]:
    """Step 5: the planned per-parameter conversions (introspection)."""
    return bridge.get_conversion_tasks(model)
