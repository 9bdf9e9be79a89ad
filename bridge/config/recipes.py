"""Pretraining recipes: one flagship model per family, as a validated :class:`ConfigContainer`.

>>> cfg = llama3_8b_pretrain_config(seq_length=4096, lr=1e-4, recompute_granularity="full")  # doctest: +SKIP
>>> sorted(RECIPES)                                                                          # doctest: +SKIP

Each recipe starts from the model's published HF architecture (:mod:`bridge.config.flagships`),
a parallel layout that fits the model on 80 GB GPUs, and common pretraining hyper-parameters.
Keyword overrides are flat names or ``"section.field"`` keys, routed and validated like
:meth:`ConfigContainer.with_overrides`: an unknown name is an error naming the closest fields,
and an MCore field the installed release lacks names the release that has it.

:func:`check_all_recipes` builds every recipe's ``TransformerConfig`` (no model) for the
installed megatron-core; the harness runs it once per revision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bridge._logging import get_logger
from bridge.config.container import ConfigContainer
from bridge.config.flagships import FLAGSHIPS
from bridge.config.model import ModelConfig
from bridge.config.sections import OptimizerConfig, ParallelismConfig, TrainingConfig

__all__ = [
    "RECIPES",
    "check_all_recipes",
    "deepseek_v2_lite_pretrain_config",
    "deepseek_v3_pretrain_config",
    "ernie4_5_21b_a3b_pretrain_config",
    "gemma2_9b_pretrain_config",
    "gemma3_12b_pretrain_config",
    "gemma_7b_pretrain_config",
    "glm4_5_air_pretrain_config",
    "gpt_oss_20b_pretrain_config",
    "granite3_8b_pretrain_config",
    "kimi_k2_pretrain_config",
    "llama3_8b_pretrain_config",
    "minitron_8b_pretrain_config",
    "mistral_7b_pretrain_config",
    "mixtral_8x7b_pretrain_config",
    "olmoe_1b_7b_pretrain_config",
    "phi3_mini_pretrain_config",
    "qwen1_5_moe_a2_7b_pretrain_config",
    "qwen2_7b_pretrain_config",
    "qwen3_30b_a3b_pretrain_config",
    "qwen3_8b_pretrain_config",
    "smollm3_3b_pretrain_config",
]

log = get_logger("config.recipes")

_PRETRAIN_OPTIMIZER = OptimizerConfig(lr=3e-4, min_lr=3e-5, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
                                      clip_grad=1.0, lr_decay_style="cosine", lr_warmup_iters=2000)


def _recipe(flagship: str, *, seq_length: int, parallelism: ParallelismConfig, overrides: Mapping[str, Any],
            model_overrides: Mapping[str, Any] | None = None, global_batch_size: int = 512,
            optimizer: OptimizerConfig = _PRETRAIN_OPTIMIZER) -> ConfigContainer:
    base = ConfigContainer(
        model=ModelConfig(hf_config=FLAGSHIPS[flagship], overrides=dict(model_overrides or {})),
        training=TrainingConfig(micro_batch_size=1, global_batch_size=global_batch_size, seq_length=seq_length,
                                train_iters=100_000, eval_interval=2000, eval_iters=32),
        optimizer=optimizer,
        parallelism=parallelism,
    )
    return base.with_overrides(overrides)


def llama3_8b_pretrain_config(seq_length: int = 8192, **overrides: Any) -> ConfigContainer:
    """Llama-3-8B: 32 layers, hidden 4096, GQA 32/8 heads, RoPE theta 500k; TP 1, CP 2 for 8k tokens."""
    return _recipe("llama3_8b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(context_parallel_size=2))


def qwen2_7b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Qwen2-7B: 28 layers, hidden 3584, GQA 28/4 heads, QKV bias; TP 2 with sequence parallelism."""
    return _recipe("qwen2_7b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def qwen3_8b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Qwen3-8B: 36 layers, hidden 4096, GQA 32/8 heads, QK-norm; TP 2 with sequence parallelism."""
    return _recipe("qwen3_8b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def mistral_7b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Mistral-7B-v0.1: 32 layers, hidden 4096, GQA 32/8, 4096-token sliding window; TP 2 with SP."""
    return _recipe("mistral_7b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def gemma_7b_pretrain_config(seq_length: int = 8192, **overrides: Any) -> ConfigContainer:
    """Gemma-7B: 28 layers, hidden 3072, 16 heads of 256, GeGLU, 256k tied vocabulary; TP 2 with SP."""
    return _recipe("gemma_7b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def qwen3_30b_a3b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Qwen3-30B-A3B (MoE): 48 layers, 128 experts, top-8; TP 2 + SP, PP 2, EP 8."""
    return _recipe("qwen3_30b_a3b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True,
                                                 pipeline_model_parallel_size=2, expert_model_parallel_size=8))


def deepseek_v3_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """DeepSeek-V3 (MLA, 256 routed + 1 shared expert, top-8): TP 2 + SP, PP 16, EP 64.

    61 layers over 16 stages: 4 on the first (with the embedding), 1 on the last (with the output
    layer over the 129k vocabulary), 4 on each of the 14 others. (The bridge does not build the
    multi-token-prediction layer of the checkpoint.)
    """
    return _recipe("deepseek_v3", seq_length=seq_length, overrides=overrides, global_batch_size=2048,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True,
                                                 pipeline_model_parallel_size=16, expert_model_parallel_size=64),
                   model_overrides={"num_layers_in_first_pipeline_stage": 4,
                                    "num_layers_in_last_pipeline_stage": 1},
                   optimizer=OptimizerConfig(lr=2.2e-4, min_lr=2.2e-5, weight_decay=0.1, adam_beta1=0.9,
                                             adam_beta2=0.95, clip_grad=1.0, lr_decay_style="cosine",
                                             lr_warmup_iters=2000))


def phi3_mini_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Phi-3-mini (3.8B): 32 layers, hidden 3072, 32 heads (MHA), fused QKV, 2047-token window; data parallel."""
    return _recipe("phi3_mini", seq_length=seq_length, overrides=overrides, parallelism=ParallelismConfig())


def minitron_8b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Minitron-8B (Nemotron-4): 32 layers, hidden 4096, GQA 48/8 heads of 128, squared ReLU, LayerNorm1P,
    half rotary; TP 2 with SP."""
    return _recipe("minitron_8b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def gemma2_9b_pretrain_config(seq_length: int = 8192, **overrides: Any) -> ConfigContainer:
    """Gemma-2-9B: 42 layers, hidden 3584, GQA 16/8 heads of 256, soft-capping, post-norms, a 4096-token
    window on every other layer; TP 2 with SP."""
    return _recipe("gemma2_9b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def gemma3_12b_pretrain_config(seq_length: int = 8192, **overrides: Any) -> ConfigContainer:
    """Gemma-3-12B (text): 48 layers, hidden 3840, GQA 16/8 heads of 256, QK norm, five 1024-token windowed
    layers per global one (two RoPE bases); TP 4 with SP."""
    return _recipe("gemma3_12b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=4, sequence_parallel=True))


def smollm3_3b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """SmolLM3-3B: 36 layers, hidden 2048, GQA 16/4 heads, every fourth layer without RoPE, tied
    embeddings; data parallel."""
    return _recipe("smollm3_3b", seq_length=seq_length, overrides=overrides, parallelism=ParallelismConfig())


def granite3_8b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Granite-3.3-8B: 40 layers, hidden 4096, GQA 32/8 heads, embedding/residual/attention/logit
    multipliers, tied embeddings; TP 2 with SP."""
    return _recipe("granite3_8b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True))


def mixtral_8x7b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Mixtral-8x7B (MoE): 32 layers, 8 experts of 14336, top-2; PP 4, EP 8."""
    return _recipe("mixtral_8x7b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(pipeline_model_parallel_size=4, expert_model_parallel_size=8))


def qwen1_5_moe_a2_7b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Qwen1.5-MoE-A2.7B: 24 layers, 60 experts of 1408, top-4, a gated shared expert of 5632; EP 4."""
    return _recipe("qwen1_5_moe_a2_7b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(expert_model_parallel_size=4))


def olmoe_1b_7b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """OLMoE-1B-7B: 16 layers, 64 experts of 1024, top-8, whole-projection QK norm (so TP 1); EP 8."""
    return _recipe("olmoe_1b_7b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(expert_model_parallel_size=8))


def deepseek_v2_lite_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """DeepSeek-V2-Lite (MLA without query LoRA; 64 routed + 2 shared experts, top-6, first layer dense,
    YaRN): EP 8."""
    return _recipe("deepseek_v2_lite", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(expert_model_parallel_size=8))


def kimi_k2_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """Kimi-K2 (DeepSeek-V3 architecture: MLA, 384 routed + 1 shared expert, top-8, sigmoid routing):
    TP 2 + SP, PP 16, EP 64; 61 layers as DeepSeek-V3's (4 on the first stage, 1 on the last, 4 on the rest)."""
    return _recipe("kimi_k2", seq_length=seq_length, overrides=overrides, global_batch_size=2048,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True,
                                                 pipeline_model_parallel_size=16, expert_model_parallel_size=64),
                   model_overrides={"num_layers_in_first_pipeline_stage": 4,
                                    "num_layers_in_last_pipeline_stage": 1})


def glm4_5_air_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """GLM-4.5-Air (MoE): 46 layers (the first dense), GQA 96/8 heads, half rotary, QKV bias, 128 routed
    + 1 shared expert, top-8, sigmoid routing; TP 2 + SP, PP 2, EP 8."""
    return _recipe("glm4_5_air", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True,
                                                 pipeline_model_parallel_size=2, expert_model_parallel_size=8))


def ernie4_5_21b_a3b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """ERNIE-4.5-21B-A3B (MoE): 28 layers (the first dense), GQA 20/4 heads, 64 routed + 2 shared experts,
    top-6, softmax routing with an expert bias; EP 8."""
    return _recipe("ernie4_5_21b_a3b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(expert_model_parallel_size=8))


def gpt_oss_20b_pretrain_config(seq_length: int = 4096, **overrides: Any) -> ConfigContainer:
    """gpt-oss-20b (MoE): 24 layers alternating 128-token windowed and full attention with sinks, 32 experts
    with biases and a clamped SwiGLU, top-4, YaRN; EP 8 (TP 1: MCore's expert biases need it)."""
    return _recipe("gpt_oss_20b", seq_length=seq_length, overrides=overrides,
                   parallelism=ParallelismConfig(expert_model_parallel_size=8))


RECIPES: dict[str, Callable[..., ConfigContainer]] = {
    "llama3_8b_pretrain": llama3_8b_pretrain_config,
    "qwen2_7b_pretrain": qwen2_7b_pretrain_config,
    "qwen3_8b_pretrain": qwen3_8b_pretrain_config,
    "mistral_7b_pretrain": mistral_7b_pretrain_config,
    "gemma_7b_pretrain": gemma_7b_pretrain_config,
    "qwen3_30b_a3b_pretrain": qwen3_30b_a3b_pretrain_config,
    "deepseek_v3_pretrain": deepseek_v3_pretrain_config,
    "phi3_mini_pretrain": phi3_mini_pretrain_config,
    "minitron_8b_pretrain": minitron_8b_pretrain_config,
    "gemma2_9b_pretrain": gemma2_9b_pretrain_config,
    "gemma3_12b_pretrain": gemma3_12b_pretrain_config,
    "smollm3_3b_pretrain": smollm3_3b_pretrain_config,
    "granite3_8b_pretrain": granite3_8b_pretrain_config,
    "mixtral_8x7b_pretrain": mixtral_8x7b_pretrain_config,
    "qwen1_5_moe_a2_7b_pretrain": qwen1_5_moe_a2_7b_pretrain_config,
    "olmoe_1b_7b_pretrain": olmoe_1b_7b_pretrain_config,
    "deepseek_v2_lite_pretrain": deepseek_v2_lite_pretrain_config,
    "kimi_k2_pretrain": kimi_k2_pretrain_config,
    "glm4_5_air_pretrain": glm4_5_air_pretrain_config,
    "ernie4_5_21b_a3b_pretrain": ernie4_5_21b_a3b_pretrain_config,
    "gpt_oss_20b_pretrain": gpt_oss_20b_pretrain_config,
}
"""Recipe name -> recipe function (each takes ``seq_length=`` and flat ``**overrides``)."""


def check_all_recipes() -> dict[str, str]:
    """``{recipe: "ok" | "<ErrorType>: <message>"}``: each recipe's container, ``TransformerConfig``
    and MCore ``OptimizerConfig`` built for the installed megatron-core (no model is built).

    Meant for the harness's per-revision probe: any exception is reported, not raised.
    """
    out: dict[str, str] = {}
    for name, recipe in RECIPES.items():
        try:
            cfg = recipe()
            cfg.transformer_config()
            cfg.mcore_optimizer_config()
        except Exception as e:  # noqa: BLE001 - a probe reports every failure as data
            log.debug("recipe %s failed", name, exc_info=True)
            out[name] = f"{type(e).__name__}: {e}"
        else:
            out[name] = "ok"
    return out
