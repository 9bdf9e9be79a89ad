"""Custom layer specs: a provider may bring its own ``transformer_layer_spec``.

Transformer Engine fuses each pre-norm into the following linear layer and names its weight
``linear_qkv.layer_norm_weight`` / ``linear_fc1.layer_norm_weight``; the local spec has separate
``input_layernorm`` / ``pre_mlp_layernorm`` modules. TE is not installable here, so the TE naming
scheme is exercised with a spec whose fused modules are pure PyTorch: a ColumnParallelLinear that
owns ``layer_norm_weight`` and applies RMSNorm before its matmul, with IdentityOp norms. With both
specs, HF -> MCore logits match and export is bit-exact; the norm weights of the HF checkpoint are
randomised so that a norm weight loaded into the wrong place (or not at all) would show.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from bridge import AutoBridge
from bridge.inference import forward_logits
from tests.helpers.tiny import TINY_LLAMA, hf_logits

VOCAB = TINY_LLAMA["vocab_size"]


def _fused_norm_linear_class() -> type:
    from megatron.core.tensor_parallel import ColumnParallelLinear

    class RMSNormColumnParallelLinear(ColumnParallelLinear):
        """RMSNorm(x) @ W^T, with the norm's weight owned by the linear layer (TE's naming)."""

        def __init__(self, input_size: int, output_size: int, *, config: Any, **kwargs: Any) -> None:
            super().__init__(input_size, output_size, config=config, **kwargs)
            self.layer_norm_weight = torch.nn.Parameter(torch.ones(input_size, dtype=config.params_dtype))
            self.layer_norm_eps = config.layernorm_epsilon

        def forward(self, input_: torch.Tensor, weight: torch.Tensor | None = None,
                    runtime_gather_output: bool | None = None):
            normed = torch.nn.functional.rms_norm(
                input_, (input_.shape[-1],), self.layer_norm_weight, self.layer_norm_eps)
            return super().forward(normed, weight=weight, runtime_gather_output=runtime_gather_output)

    return RMSNormColumnParallelLinear


def te_style_spec() -> Any:
    """The local spec with TE's fused-norm layout: IdentityOp norms, norm weights inside the linears."""
    from megatron.core.transformer.identity_op import IdentityOp

    from bridge import compat

    fused = _fused_norm_linear_class()
    spec = compat.local_layer_spec(normalization="RMSNorm")
    sub = spec.submodules
    attn = dataclasses.replace(sub.self_attention, submodules=dataclasses.replace(
        sub.self_attention.submodules, linear_qkv=fused))
    mlp = dataclasses.replace(sub.mlp, submodules=dataclasses.replace(sub.mlp.submodules, linear_fc1=fused))
    new_sub = dataclasses.replace(sub, input_layernorm=IdentityOp, pre_mlp_layernorm=IdentityOp,
                                  self_attention=attn, mlp=mlp)
    return dataclasses.replace(spec, submodules=new_sub)


def _checkpoint(path: Path) -> Path:
    """A tiny Llama with random norm weights (HF initialises them to ones)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.5 * torch.randn_like(p))
    model.save_pretrained(path)
    return path


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


LOCAL_NAMES = ("decoder.layers.0.input_layernorm.weight", "decoder.layers.0.pre_mlp_layernorm.weight")
TE_NAMES = ("decoder.layers.0.self_attention.linear_qkv.layer_norm_weight",
            "decoder.layers.0.mlp.linear_fc1.layer_norm_weight")


@pytest.mark.parametrize("spec_kind", ["local", "te-style", "te-style-callable"])
def test_spec_naming_schemes_parity_and_bit_exact_export(tmp_path: Path, spec_kind: str) -> None:
    src = _checkpoint(tmp_path / "hf")
    bridge = AutoBridge.from_hf_pretrained(src)
    provider = bridge.to_megatron_provider()
    if spec_kind == "te-style":
        provider.transformer_layer_spec = te_style_spec()
    elif spec_kind == "te-style-callable":
        provider.transformer_layer_spec = lambda p: te_style_spec()
    provider.finalize()
    model = provider.provide_distributed_model(wrap_with_ddp=False)

    names = dict(model[0].named_parameters())
    present, absent = (LOCAL_NAMES, TE_NAMES) if spec_kind == "local" else (TE_NAMES, LOCAL_NAMES)
    assert all(n in names for n in present), sorted(names)
    assert not any(n in names for n in absent)
    hf = _tensors(src)
    # the fused norm weights hold the HF norms (random, so a wrong mapping cannot pass)
    assert torch.equal(names[present[0]], hf["model.layers.0.input_layernorm.weight"])
    assert torch.equal(names[present[1]], hf["model.layers.0.post_attention_layernorm.weight"])

    ids = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(1))
    ours = forward_logits(model, ids, vocab_size=VOCAB)
    ref = hf_logits(src, ids)
    assert (ours - ref).abs().max().item() <= 1e-5

    out = tmp_path / "export"
    bridge.save_hf_pretrained(model, out)
    after = _tensors(out)
    assert sorted(after) == sorted(hf)
    for name, tensor in hf.items():
        assert torch.equal(after[name], tensor), name


def test_te_style_spec_through_config_container(tmp_path: Path) -> None:
    """The config layer carries a custom spec to the provider unchanged."""
    from bridge.config import ConfigContainer, ModelConfig

    spec = te_style_spec()
    hf = {**TINY_LLAMA, "architectures": ["LlamaForCausalLM"]}
    cfg = ConfigContainer(model=ModelConfig(family="llama", hf_config=hf, transformer_layer_spec=spec))
    provider = cfg.to_provider()
    assert provider.layer_spec() is spec
    model = provider.provide_distributed_model(wrap_with_ddp=False)
    assert TE_NAMES[0] in dict(model[0].named_parameters())
