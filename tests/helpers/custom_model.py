"""TinyGPT: a trust_remote_code checkpoint of our own, for the bridge's custom-code paths.

:func:`make_custom_checkpoint` writes a tiny HF checkpoint whose configuration and modelling
code live in the checkpoint directory (``auto_map``). The model is a Llama (RMSNorm, SwiGLU,
RoPE with the rotate-half convention, GQA, causal) under other parameter names and layouts:

========================================  =============================================
TinyGPT                                   HF Llama
========================================  =============================================
``wte.weight``                            ``model.embed_tokens.weight``
``blocks.{i}.norm1.weight``               ``model.layers.{i}.input_layernorm.weight``
``blocks.{i}.attn.qkv.weight``            cat(``q_proj``, ``k_proj``, ``v_proj``) rows
``blocks.{i}.attn.out.weight``            ``model.layers.{i}.self_attn.o_proj.weight``
``blocks.{i}.norm2.weight``               ``model.layers.{i}.post_attention_layernorm.weight``
``blocks.{i}.mlp.w12.weight``             cat(``gate_proj``, ``up_proj``) rows
``blocks.{i}.mlp.w3.weight``              ``model.layers.{i}.mlp.down_proj.weight``
``norm_f.weight``                         ``model.norm.weight``
``lm_head.weight`` (absent when tied)     ``lm_head.weight``
========================================  =============================================

The fused QKV is ``[all q heads; all k heads; all v heads]``, not Megatron's per-group
interleave. Both code files append their module name to a *sentinel* file when imported, so a
test can tell whether checkpoint code ran. The weights are built here directly from
``torch.manual_seed(seed)``: generating a checkpoint never imports its code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

__all__ = [
    "ARCHITECTURE",
    "CONFIG_MODULE",
    "MODEL_TYPE",
    "MODELING_MODULE",
    "TinyGPTSpec",
    "llama_config",
    "llama_state_dict",
    "make_custom_checkpoint",
    "spec_from_config",
    "tiny_gpt_state_dict",
]

ARCHITECTURE = "TinyGPTForCausalLM"
MODEL_TYPE = "tiny_gpt"
CONFIG_MODULE = "configuration_tiny_gpt"
MODELING_MODULE = "modeling_tiny_gpt"
_TEMPLATES = Path(__file__).with_name("tiny_gpt_sources")


@dataclass(frozen=True)
class TinyGPTSpec:
    """The configuration fields of TinyGPT (defaults: a 2-layer GQA model, ~50k parameters)."""

    vocab_size: int = 128
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    ffn_hidden_size: int = 96
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 64
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"TinyGPT needs hidden_size % num_heads == 0 and num_heads % num_kv_heads == 0; "
                f"found hidden_size={self.hidden_size}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}."
            )
        if self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim; found {self.head_dim}. Change hidden_size or num_heads.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def spec_from_config(config_dict: dict[str, Any]) -> TinyGPTSpec:
    """The :class:`TinyGPTSpec` of a TinyGPT ``config.json`` content (other keys ignored)."""
    names = {f.name for f in fields(TinyGPTSpec)}
    return TinyGPTSpec(**{k: v for k, v in config_dict.items() if k in names})


def tiny_gpt_state_dict(spec: TinyGPTSpec, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 TinyGPT weights, deterministic in ``seed``; norm weights are ``1 + noise`` so
    that a mapping which drops or swaps a norm changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    h, d = spec.hidden_size, spec.head_dim
    qkv_rows = (spec.num_heads + 2 * spec.num_kv_heads) * d

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.02

    def norm() -> torch.Tensor:
        return 1.0 + 0.1 * torch.randn(h, generator=gen)

    tensors = {"wte.weight": normal(spec.vocab_size, h)}
    for i in range(spec.num_layers):
        p = f"blocks.{i}."
        tensors[p + "norm1.weight"] = norm()
        tensors[p + "attn.qkv.weight"] = normal(qkv_rows, h)
        tensors[p + "attn.out.weight"] = normal(h, spec.num_heads * d)
        tensors[p + "norm2.weight"] = norm()
        tensors[p + "mlp.w12.weight"] = normal(2 * spec.ffn_hidden_size, h)
        tensors[p + "mlp.w3.weight"] = normal(h, spec.ffn_hidden_size)
    tensors["norm_f.weight"] = norm()
    if not spec.tie_word_embeddings:
        tensors["lm_head.weight"] = normal(spec.vocab_size, h)
    return tensors


def llama_state_dict(tensors: dict[str, torch.Tensor], spec: TinyGPTSpec) -> dict[str, torch.Tensor]:
    """The same weights under HF Llama's names and layouts (see the module docstring)."""
    q_rows, kv_rows = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
    out = {"model.embed_tokens.weight": tensors["wte.weight"], "model.norm.weight": tensors["norm_f.weight"]}
    out["lm_head.weight"] = tensors["lm_head.weight" if not spec.tie_word_embeddings else "wte.weight"]
    for i in range(spec.num_layers):
        src, dst = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = tensors[src + "attn.qkv.weight"].split([q_rows, kv_rows, kv_rows])
        gate, up = tensors[src + "mlp.w12.weight"].chunk(2)
        out |= {
            dst + "input_layernorm.weight": tensors[src + "norm1.weight"],
            dst + "self_attn.q_proj.weight": q,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v,
            dst + "self_attn.o_proj.weight": tensors[src + "attn.out.weight"],
            dst + "post_attention_layernorm.weight": tensors[src + "norm2.weight"],
            dst + "mlp.gate_proj.weight": gate,
            dst + "mlp.up_proj.weight": up,
            dst + "mlp.down_proj.weight": tensors[src + "mlp.w3.weight"],
        }
    return {k: v.contiguous() for k, v in out.items()}


def llama_config(spec: TinyGPTSpec) -> Any:
    """A ``transformers.LlamaConfig`` describing the same network as ``spec``."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.ffn_hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        rms_norm_eps=spec.rms_norm_eps,
        rope_theta=spec.rope_theta,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=spec.tie_word_embeddings,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
    )


def _source(module: str, sentinel: Path) -> str:
    """A code file's text: the sentinel path is baked in, so it is written on import, before
    any configuration is read."""
    body = (_TEMPLATES / f"{module}.py.txt").read_text(encoding="utf-8")
    header = (
        f"# Generated by tests/helpers/custom_model.py. Importing this file appends {module!r}\n"
        "# to the sentinel file below, so tests can tell that checkpoint code ran.\n"
        f"with open({str(sentinel)!r}, 'a', encoding='utf-8') as _sentinel_file:\n"
        f"    _sentinel_file.write({module!r} + '\\n')\n"
    )
    return header + body


def make_custom_checkpoint(
    dirpath: str | Path, *, sentinel: Path, seed: int = 0, **config_overrides: Any
) -> Path:
    """Write a TinyGPT checkpoint (``config.json``, both code files, ``model.safetensors``).

    ``config_overrides`` are :class:`TinyGPTSpec` fields. ``sentinel`` is the file both code
    files append to when imported; it is not created here. Returns the directory.
    """
    unknown = set(config_overrides) - {f.name for f in fields(TinyGPTSpec)}
    if unknown:
        raise TypeError(f"unknown TinyGPT config fields {sorted(unknown)}; known: {[f.name for f in fields(TinyGPTSpec)]}")
    spec = TinyGPTSpec(**config_overrides)
    directory = Path(dirpath)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "auto_map": {
            "AutoConfig": f"{CONFIG_MODULE}.TinyGPTConfig",
            "AutoModelForCausalLM": f"{MODELING_MODULE}.{ARCHITECTURE}",
        },
        **asdict(spec),
        "torch_dtype": "float32",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for module in (CONFIG_MODULE, MODELING_MODULE):
        (directory / f"{module}.py").write_text(_source(module, Path(sentinel).absolute()), encoding="utf-8")
    save_file(tiny_gpt_state_dict(spec, seed=seed), str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory
