"""The two proofs every family gives: CPU logits parity with HF, and a bit-exact HF -> Megatron -> HF trip.

Checkpoints are built locally from tiny configs. Every parameter is perturbed after HF's own
initialisation, so zero-initialised biases and one- (or zero-) initialised norms carry distinct
values: a mapping that drops, swaps or transposes any tensor changes the logits and the export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from bridge import AutoBridge
from bridge.inference import forward_logits
from bridge.parity import PARITY_ATOL  # the one bound, shared with the harness's probes (MoE included)

__all__ = ["PARITY_ATOL", "all_tensors", "build", "make_checkpoint", "max_abs_diff", "assert_bit_exact_export",
           "token_ids"]


def make_checkpoint(path: Path, config: Any, model_cls: type, *, seed: int = 0, noise: float = 0.1) -> Path:
    """Save ``model_cls(config)`` with every parameter perturbed by ``noise`` * N(0, 1)."""
    torch.manual_seed(seed)
    model = model_cls(config).to(torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=gen) * noise)
    model.save_pretrained(path)
    return Path(path)


def build(path: Path, *, trust_remote_code: bool | None = None, **provider_fields: Any):
    """``(bridge, model chunks)`` for the checkpoint at ``path`` with TP = PP = 1."""
    bridge = AutoBridge.from_hf_pretrained(path, trust_remote_code=trust_remote_code)
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = 1
    provider.pipeline_model_parallel_size = 1
    for name, value in provider_fields.items():
        setattr(provider, name, value)
    provider.finalize()
    return bridge, provider.provide_distributed_model(wrap_with_ddp=False)


def token_ids(vocab_size: int, *, batch: int = 2, seq: int = 17, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab_size, (batch, seq), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_model_logits(path: Path, ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    kwargs.setdefault("attn_implementation", "eager")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs).eval()
    return model(ids).logits


def max_abs_diff(model: Any, path: Path, ids: torch.Tensor, vocab_size: int, **hf_kwargs: Any) -> float:
    """Largest |Megatron - HF| logit over ``ids``."""
    ours = forward_logits(model, ids, vocab_size=vocab_size)
    ref = hf_model_logits(path, ids, **hf_kwargs)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return (ours - ref).abs().max().item()


def all_tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(f))
    return out


def assert_bit_exact_export(bridge: Any, model: Any, src: Path, out: Path, ids: torch.Tensor,
                            **hf_kwargs: Any) -> dict[str, torch.Tensor]:
    """Export, then: same key set, every tensor ``torch.equal`` (dtype included), and transformers
    loads the export and gives the source's logits exactly. Returns the exported tensors."""
    bridge.save_hf_pretrained(model, out)
    before, after = all_tensors(src), all_tensors(out)
    assert sorted(after) == sorted(before)
    for name, tensor in before.items():
        assert after[name].dtype == tensor.dtype, name
        assert torch.equal(after[name], tensor), name
    assert torch.equal(hf_model_logits(out, ids, **hf_kwargs), hf_model_logits(src, ids, **hf_kwargs))
    return after
