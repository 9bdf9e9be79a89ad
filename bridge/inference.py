"""A plain forward pass through this rank's model chunks, for parity checks and probes.

Works for PP = 1 and PP > 1 (activations move stage to stage with point-to-point
send/recv; no MCore schedule needed). Returns the logits on the last pipeline stage,
trimmed to the real vocabulary (padding rows removed), and ``None`` elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["causal_mask", "forward_logits"]


def causal_mask(batch: int, seq: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """MCore's boolean attention mask ``[B, 1, S, S]``: True means *masked*."""
    m = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device=device), diagonal=1)
    return m.expand(batch, 1, seq, seq).contiguous()


@torch.no_grad()
def forward_logits(model: Any, input_ids: torch.Tensor, *, vocab_size: int | None = None) -> torch.Tensor | None:
    """Logits ``[B, S, V]`` of ``input_ids`` on the last stage (``None`` on other stages)."""
    from megatron.core import parallel_state as ps

    chunks = list(model) if isinstance(model, (list, tuple)) else [model]
    if len(chunks) != 1:
        raise NotImplementedError("virtual pipeline (several chunks per rank) is not supported by forward_logits")
    chunk = chunks[0]
    chunk.eval()
    device = next(chunk.parameters()).device
    input_ids = input_ids.to(device)
    b, s = input_ids.shape
    position_ids = torch.arange(s, device=device).unsqueeze(0).expand(b, s)
    mask = causal_mask(b, s, device)
    pp = ps.get_pipeline_model_parallel_world_size()
    first, last = ps.is_pipeline_first_stage(), ps.is_pipeline_last_stage()
    if pp > 1 and not first:
        hidden = torch.empty(s, b, chunk.config.hidden_size, dtype=chunk.config.params_dtype, device=device)
        dist.recv(hidden, src=ps.get_pipeline_model_parallel_prev_rank())
        _set_input(chunk, hidden)
    out = chunk(input_ids, position_ids, mask)
    if pp > 1 and not last:
        dist.send(out.contiguous(), dst=ps.get_pipeline_model_parallel_next_rank())
        return None
    return out[..., :vocab_size] if vocab_size else out


def _set_input(chunk: torch.nn.Module, hidden: torch.Tensor) -> None:
    while hasattr(chunk, "module") and not hasattr(chunk, "set_input_tensor"):
        chunk = chunk.module
    chunk.set_input_tensor(hidden)
