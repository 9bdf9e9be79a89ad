"""The model families the conformance suite runs the guide on: one tiny config each, untied and tied.

The sizes are those of the family tests (``tests/bridge/models``); each checkpoint is built once per
session from its config, every parameter perturbed so that a dropped or swapped tensor shows in the
logits, and its HF logits are taken from the same in-memory model (eager attention, fp32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bridge.errors import ParallelLayoutError, UnsupportedFeatureError
from tests.bridge.models import (
    test_deepseek_v2, test_deepseek_v3, test_ernie4_5_moe, test_gemma, test_gemma2, test_gemma3, test_glm4_moe,
    test_gpt_oss, test_granite, test_mistral, test_mixtral, test_nemotron, test_olmoe, test_phi3, test_qwen2,
    test_qwen2_moe, test_qwen3, test_qwen3_moe, test_smollm3,
)
from tests.helpers.tiny import TINY_LLAMA

__all__ = ["CASES", "Case", "EXCLUDED", "Family", "FAMILIES", "build_case"]


@dataclass(frozen=True)
class Family:
    """A family's ``model_type`` and tiny config fields; ``tied``: whether the family allows tied embeddings."""

    name: str
    model_type: str
    fields: dict[str, Any] = field(default_factory=dict)
    tied: bool = True
    custom_code: bool = False  # modelling code ships in the checkpoint (auto_map): loaded with trust_remote_code
    #: at TP = 2 the provider must refuse this config: ``(error type, text the message must contain)``
    tp2_refusal: tuple[type[Exception], str] | None = None


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


FAMILIES: tuple[Family, ...] = (
    Family("llama", "llama", TINY_LLAMA),
    Family("mistral", "mistral", test_mistral.TINY),
    Family("qwen2", "qwen2", test_qwen2.TINY),
    Family("qwen3", "qwen3", test_qwen3.TINY),
    # one key/value head (MQA): TP = 2 cannot hold whole query groups on each rank
    Family("gemma", "gemma", test_gemma.TINY, tp2_refusal=(ParallelLayoutError, "must divide num_query_groups=1")),
    Family("gemma2", "gemma2", test_gemma2.TINY),
    Family("gemma3", "gemma3_text", test_gemma3.TINY),
    Family("granite", "granite", test_granite.TINY),
    Family("smollm3", "smollm3", test_smollm3.TINY),
    Family("nemotron", "nemotron", test_nemotron.TINY),
    Family("phi3", "phi3", test_phi3.TINY),
    Family("qwen2_moe", "qwen2_moe", {**test_qwen2_moe.TINY, "norm_topk_prob": False}),
    Family("qwen3_moe", "qwen3_moe", {**test_qwen3_moe.TINY, "norm_topk_prob": True}),
    Family("mixtral", "mixtral", test_mixtral.TINY),
    Family("deepseek_v2", "deepseek_v2", test_deepseek_v2.TINY),
    Family("deepseek_v3", "deepseek_v3", _without(test_deepseek_v3.TINY, "architectures")),
    # QK norms over the whole projection, which TP splits by heads
    Family("olmoe", "olmoe", test_olmoe.TINY, tp2_refusal=(UnsupportedFeatureError, "use TP=1")),
    Family("glm4_moe", "glm4_moe", {**test_glm4_moe.TINY, **test_glm4_moe.VARIANTS["qk_norm_groups_tied"]}),
    Family("ernie4_5_moe", "ernie4_5_moe", {**test_ernie4_5_moe.TINY, "moe_num_shared_experts": 1}),
    # MoE biases need expert_tensor_parallel_size=1 in MCore, and the bridge splits experts with TP
    Family("gpt_oss", "gpt_oss", {**test_gpt_oss.TINY, "swiglu_limit": 1.0},
           tp2_refusal=(UnsupportedFeatureError, "use TP=1")),
    Family("tiny_gpt", "tiny_gpt", {"vocab_size": 96}, custom_code=True),
    Family("kimi_k2", "kimi_k2", custom_code=True),  # Kimi-K2's own tiny config (KimiK2Bridge), code in the checkpoint
)

#: Registered families (``bridge.models.FAMILIES``) the guide cannot run, with why. None today.
EXCLUDED: dict[str, str] = {}

#: ``(family, tied)`` for every family, tied only where the family allows it.
CASES: tuple[tuple[Family, bool], ...] = tuple((f, t) for f in FAMILIES for t in (False, True) if f.tied or not t)


@dataclass(frozen=True)
class Case:
    """A built checkpoint and what HF computes on it."""

    family: Family
    tied: bool
    path: Path
    vocab_size: int
    input_ids: torch.Tensor
    hf_logits: torch.Tensor


@torch.no_grad()
def _perturb(model: torch.nn.Module, *, seed: int, noise: float) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    for _, param in sorted(model.named_parameters()):
        param.add_(torch.randn(param.shape, generator=gen) * noise)


@torch.no_grad()
def build_case(family: Family, tied: bool, root: Path, *, seed: int = 0, noise: float = 0.1) -> Case:
    """Save a perturbed tiny checkpoint of ``family`` under ``root`` and take its HF logits."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = root / f"{family.name}-{'tied' if tied else 'untied'}"
    if family.name == "kimi_k2":  # DeepSeek-V3's HF modelling saved with Kimi-K2's config and code
        from bridge.models.kimi_k2.bridge import KimiK2Bridge
        from harness.probes.fixtures.kimi_k2 import make_kimi_k2_checkpoint

        fields = {**KimiK2Bridge.representative_configs()[0].to_dict(), **family.fields, "tie_word_embeddings": tied}
        make_kimi_k2_checkpoint(path, fields, seed=seed, prepare=lambda m: _perturb(m, seed=seed, noise=noise))
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
        config = model.config
    elif family.custom_code:  # written from its spec (no code runs), then loaded through its own code
        from harness.probes.fixtures.tiny_gpt import make_custom_checkpoint

        make_custom_checkpoint(path, sentinel=root / "code-ran", seed=seed, tie_word_embeddings=tied, **family.fields)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
        config = model.config
    else:
        config = AutoConfig.for_model(family.model_type, **{**family.fields, "tie_word_embeddings": tied})
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").to(torch.float32).eval()
        _perturb(model, seed=seed, noise=noise)
        model.save_pretrained(path)
    ids = torch.randint(0, config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(seed))
    return Case(family, tied, path, config.vocab_size, ids, model(ids).logits)
