"""Named features: each version difference the bridge decides on, as a predicate over the installed
megatron-core (part of :mod:`bridge.compat`, import from there).

:data:`FEATURES` maps a feature name to its predicate, read from what the installed release has (a field,
an argument, a class, a line of its source), never from its version number; :func:`has_feature` answers
by name. Other modules decide on these names instead of scattered ``hasattr`` checks (docs/architecture.md).
"""

from __future__ import annotations

import inspect
from typing import Callable

from bridge import compat_release as release
from bridge.errors import ConfigError

__all__ = ["FEATURES", "MODEL_CLASS_SOURCES", "expert_data_parallel_rank", "has_feature"]

MODEL_CLASS_SOURCES: dict[str, tuple[str, str]] = {
    "gpt": ("megatron.core.models.gpt.gpt_model", "GPTModel"),
    "hybrid": ("megatron.core.models.hybrid.hybrid_model", "HybridModel"),
}
"""``model_class -> (module, class)`` of each MCore model class the bridge builds: the named features
``gpt_model`` / ``hybrid_model`` import from here, and :mod:`bridge.requirements` tells the harness which
module each model class needs (the matrix's GPTModel / HybridModel verdicts)."""


def _local_attention_softmax_module() -> bool:
    """Whether the local ``DotProductAttention`` computes its probabilities with its own
    ``self.scale_mask_softmax`` module from the scaled scores (a subclass can wrap it: soft-capping)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    return "self.scale_mask_softmax(" in inspect.getsource(DotProductAttention.forward)


def _has_fields(*names: str) -> Callable[[], bool]:
    return lambda: all(n in release.config_fields() for n in names)


def _has_spec_arg(name: str) -> Callable[[], bool]:
    def check() -> bool:
        from megatron.core.models.gpt import gpt_layer_specs

        return name in release.call_params(gpt_layer_specs.get_gpt_layer_local_spec)

    return check


def _local_attention_applies_window() -> bool:
    """Whether the local ``DotProductAttention``'s softmax takes ``window_size`` (else it ignores the window)."""
    from megatron.core.fusions.fused_softmax import FusedScaleMaskSoftmax

    return "window_size" in release.call_params(FusedScaleMaskSoftmax.__init__)


def _local_attention_takes_head_sizes() -> bool:
    """Whether the local ``DotProductAttention`` takes ``k_channels``/``v_channels`` (MLA builds it with them)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    return {"k_channels", "v_channels"} <= release.call_params(DotProductAttention.__init__)


def _has_inference_rng_tracker() -> bool:
    from megatron.core.tensor_parallel import random as mrandom

    return "inference_rng_tracker" in release.call_params(mrandom.initialize_rng_tracker)


def _local_experts_take_their_own_size() -> bool:
    """Whether the local experts (``SequentialMLP``) build with ``moe_ffn_hidden_size != ffn_hidden_size``.

    0.10 and 0.11 assert the two are equal ("Please use GroupedMLP or TEGroupedMLP when
    moe_ffn_hidden_size is different from ffn_hidden_size"); 0.12 gives its experts a config copy
    whose ``ffn_hidden_size`` is ``moe_ffn_hidden_size``. Read from the installed ``SequentialMLP``.
    """
    from megatron.core.transformer.moe.experts import SequentialMLP

    return "moe_ffn_hidden_size == self.config.ffn_hidden_size" not in inspect.getsource(SequentialMLP.__init__)


def _moe_spec_takes_a_router() -> bool:
    """Whether the MoE layer spec has a ``router`` slot (``MoESubmodules.router``), so a layer spec can
    give an MoE layer its own router class (Ernie-4.5-MoE's); releases without it build ``TopKRouter``."""
    from megatron.core.transformer.moe.moe_layer import MoESubmodules

    return hasattr(MoESubmodules, "router") or "router" in getattr(MoESubmodules, "__dataclass_fields__", {})


def _mla_takes_plain_q_proj() -> bool:
    """Whether MLA without a query LoRA (``q_lora_rank=None``) builds ``linear_q_proj`` as the spec gives it.

    From 0.19 (``transformer/mla_qk_norm_config.py``), with ``qk_layernorm`` on, MLA demands a fused
    norm+linear there, i.e. a norm on the query input that HF's ``q_proj`` does not have (and that only
    Transformer Engine provides).
    """
    import importlib.util

    return importlib.util.find_spec("megatron.core.transformer.mla_qk_norm_config") is None


def _dist_checkpointing_load_takes(name: str) -> Callable[[], bool]:
    """Whether ``dist_checkpointing.load`` takes the keyword ``name`` (``common_strategy``: up to 0.16, which
    still kept the common state in ``common.pt``; 0.17+ keep it inside the DCP files and dropped the keyword)."""
    def check() -> bool:
        from megatron.core.dist_checkpointing import serialization

        return name in inspect.signature(serialization.load).parameters

    return check


def _dataclass_has_field(module: str, name: str, field: str) -> Callable[[], bool]:
    """Whether dataclass ``module.name`` has ``field`` (torch's own classes; False when the class is absent)."""
    def check() -> bool:
        import dataclasses
        import importlib

        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            return False
        return cls is not None and field in {f.name for f in dataclasses.fields(cls)}

    return check


def _importable(module: str, name: str) -> Callable[[], bool]:
    """Whether ``from module import name`` works in the installed MCore (a deleted class or module: False)."""
    def check() -> bool:
        import importlib

        try:
            return getattr(importlib.import_module(module), name, None) is not None
        except ImportError:
            return False

    return check


def _gpt_model_deprecated() -> bool:
    """Whether ``GPTModel`` announces its deprecation when built (0.19: "GPTModel IS DEPRECATED ...")."""
    if not has_feature("gpt_model"):
        return False
    from megatron.core.models.gpt import GPTModel

    return "GPTModel IS DEPRECATED" in inspect.getsource(GPTModel.__init__)


def _model_classes_build_yarn() -> bool:
    """Whether every model class the installed MCore has (GPTModel, HybridModel) builds a ``YarnRotaryEmbedding``
    for ``position_embedding_type="yarn"``, read from the ``yarn_*`` attributes of the config (GPTModel: 0.15+)."""
    import importlib

    classes = []
    for module, name in MODEL_CLASS_SOURCES.values():
        try:
            classes.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return bool(classes) and all("yarn_rotary_scaling_factor" in inspect.getsource(c.__init__) for c in classes)


def expert_data_parallel_rank() -> int:
    """This rank's index among the ranks that hold the same experts.

    ``parallel_state.get_expert_data_parallel_rank`` from 0.10; ``get_data_modulo_expert_parallel_rank``
    before (feature ``expert_data_parallel_rank``).
    """
    from megatron.core import parallel_state as ps

    if has_feature("expert_data_parallel_rank"):
        return ps.get_expert_data_parallel_rank()
    return ps.get_data_modulo_expert_parallel_rank()


def _has_parallel_state_function(name: str) -> Callable[[], bool]:
    def check() -> bool:
        from megatron.core import parallel_state as ps

        return callable(getattr(ps, name, None))

    return check


FEATURES: dict[str, Callable[[], bool]] = {
    "expert_data_parallel_rank": _has_parallel_state_function("get_expert_data_parallel_rank"),
    "local_spec_normalization": _has_spec_arg("normalization"),
    "qk_layernorm": _has_fields("qk_layernorm"),
    "moe": _has_fields("num_moe_experts"),
    "moe_shared_experts": _has_fields("moe_shared_expert_intermediate_size"),
    "sliding_window": _has_fields("window_size"),
    "local_sliding_window": _local_attention_applies_window,
    "pipeline_stage_overrides": _has_fields("num_layers_in_first_pipeline_stage"),
    "inference_rng_tracker": _has_inference_rng_tracker,
    "local_attention_head_sizes": _local_attention_takes_head_sizes,
    "mla_plain_q_proj": _mla_takes_plain_q_proj,
    "local_experts_own_size": _local_experts_take_their_own_size,
    "moe_router_submodule": _moe_spec_takes_a_router,
    "local_attention_softmax_module": _local_attention_softmax_module,
    "softmax_scale": _has_fields("softmax_scale"),
    # GPT-OSS: attention sinks (softmax_type="learnable"), the clamped SwiGLU with its +1 on the linear half, YaRN
    "learnable_softmax_offset": _has_fields("softmax_type"),
    "clamped_glu": _has_fields("activation_func_clamp_value", "glu_linear_offset"),
    "yarn_rope": _model_classes_build_yarn,
    "dist_ckpt_common_strategy": _dist_checkpointing_load_takes("common_strategy"),
    # GPTModel -> HybridModel (bridge.hybrid_model): which model classes exist, and whether GPTModel is deprecated
    "gpt_model": _importable(*MODEL_CLASS_SOURCES["gpt"]),
    "hybrid_model": _importable(*MODEL_CLASS_SOURCES["hybrid"]),
    "gpt_model_deprecated": _gpt_model_deprecated,
    # MCore's own load-time GPT checkpoint -> HybridModel translation (0.19+; harness ckpt_compat, migrate-ckpt)
    "gpt_checkpoint_interop": _importable("megatron.core.dist_checkpointing.gpt_checkpoint_interop",
                                          "retarget_sharded_state_dict_to_gpt_checkpoint"),
    # torch (not MCore): torch.save can skip each zip record's CRC32 (torch 2.6+; bridge.megatron_ckpt.offline)
    "torch_save_crc32_option": _importable("torch.serialization", "set_crc32_options"),
    # torch.save can write a record's metadata and leave its data as a hole to fill (torch 2.6+; offline.py)
    "torch_save_skip_data": _importable("torch.serialization", "skip_data"),
    # DCP's storage entries can name transforms of the stored bytes, e.g. compression (torch 2.8+; records.py)
    "dcp_storage_transforms": _dataclass_has_field("torch.distributed.checkpoint.filesystem", "_StorageInfo",
                                                   "transform_descriptors"),
}


def has_feature(name: str) -> bool:
    """Whether the installed megatron-core has the named feature (see :data:`FEATURES`)."""
    try:
        check = FEATURES[name]
    except KeyError:
        raise ConfigError(f"unknown feature {name!r}; known: {sorted(FEATURES)}") from None
    return check()
