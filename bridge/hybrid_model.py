"""Building MCore's ``HybridModel`` from a provider: model-class choice, local stack spec, config, notice.

* :func:`resolve_model_class`: the provider's ``model_class`` (``"auto"``, ``"gpt"``, ``"hybrid"``) against
  the installed release, through :mod:`bridge.compat`'s named features ``gpt_model`` and ``hybrid_model``:
  ``"auto"`` is GPTModel while MCore has it (a GPT-layout checkpoint loads into Megatron-LM's GPT runs and,
  through MCore's interop, into Hybrid runs; not the reverse), HybridModel where GPTModel is gone.
* :func:`local_hybrid_stack_spec`: MCore ships TE-only hybrid specs. The bridge builds its own from the
  family's local GPT layer spec(s): each GPT layer spec is cut into an attention layer (``*``: input norm
  and self-attention) and an MLP layer (``-``: ``MLPLayer``) or MoE layer (``E``), so every family's
  attention (QK norms, MLA, windows) and norms carry over unchanged. The stack takes one spec per layer kind:
  a family whose blocks of a kind differ in spec is refused (never built from its first block's spec), and
  the spec is cut from a stage-free copy of the provider, so a virtual pipeline's chunks (PP x VPP pattern
  segments, :func:`stage_pattern`) need no per-stage block spec.
* HybridModel builds its ``RotaryEmbedding`` without GPTModel's ``rotary_interleaved`` and ``rope_scaling``:
  :func:`_gpt_rotary_embedding` gives the built model GPTModel's (Ernie-4.5's interleaved RoPE, Llama 3.1's).
* ``HybridStack`` builds its final norm with ``TENorm`` unconditionally (0.18, 0.19), which raises without
  Transformer Engine. No patch is needed: the stack spec's module is :func:`local_hybrid_stack`, a
  ``HybridStack`` built with ``post_layer_norm=False`` (so ``TENorm`` is never called) that then builds the
  final norm from the GPT spec's own final norm (the local norm, or a family's, e.g. Gemma's zero-centred
  RMSNorm) and switches it on: the same ``final_norm`` module and forward path.
* :func:`hybrid_config`: the provider's own config, but pipeline stages given by ``|`` in the pattern (MCore
  refuses both). It stays the GPT config (``num_layers`` counts GPT blocks, per-layer lists such as
  ``window_attn_skip_freq`` / ``no_rope_freq`` / ``moe_layer_freq`` keep one entry per block, same
  initialisation) because every layer is built with its GPT block's number: HybridStack numbers layers
  ``1 .. 2n``; :func:`block_numbered` subclasses build theirs with ``(number + 1) // 2`` (what the family's
  modules and MCore's per-layer settings expect, e.g. Gemma 3's local-RoPE layers), then keep the stack's
  number as ``layer_number`` (checkpoint names and the stack's bookkeeping use it).
* :func:`note_gpt_deprecation`: from 0.19 GPTModel logs "GPTModel IS DEPRECATED ..." at every
  construction. Where the bridge builds GPTModel (the default path) it drops that record with a
  ``logging.Filter`` on MCore's ``gpt_model`` logger (standard logging configuration, no MCore code
  changed) and logs its own notice once per process naming ``model_class="hybrid"``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
from typing import Any

from bridge import compat
from bridge._logging import get_logger
from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.hybrid import MODEL_CLASSES, hybrid_pattern, moe_layers

__all__ = [
    "HYBRID_BUILD_MODULES",
    "HYBRID_MODEL_ARGUMENTS",
    "block_numbered",
    "build_hybrid_model",
    "hybrid_config",
    "hybrid_model_kwargs",
    "local_hybrid_stack_spec",
    "note_gpt_deprecation",
    "resolve_model_class",
    "stage_pattern",
]

log = get_logger("hybrid")

HYBRID_BUILD_MODULES = ("megatron.core.models.hybrid.hybrid_block", "megatron.core.ssm.mlp_layer")
"""MCore modules the local hybrid build imports besides HybridModel's own (``HybridStack``, ``MLPLayer``);
:mod:`bridge.requirements` hands them to the harness (a test keeps this in step with the imports below)."""

HYBRID_MODEL_ARGUMENTS = ("hybrid_stack_spec", "hybrid_layer_pattern")
"""``HybridModel.__init__`` parameters :func:`build_hybrid_model` always passes by name, besides config,
pre/post-process and :func:`hybrid_model_kwargs`."""

_GPT_ONLY_KWARGS = ("rope_scaling", "rope_scaling_factor")
"""GPTModel arguments HybridModel does not take (:func:`_gpt_rotary_embedding` does their job)."""

_GPT_ROTARY_KWARGS = ("rotary_percent", "seq_len_interpolation_factor", "rotary_base", "rope_scaling",
                      "rope_scaling_factor")
"""The provider's ``GPTModel`` arguments that GPTModel hands its ``RotaryEmbedding``."""

_MCORE_GPT_LOGGER = "megatron.core.models.gpt.gpt_model"
_MCORE_BANNER = "GPTModel IS DEPRECATED"


def resolve_model_class(requested: str) -> str:
    """``"gpt"`` or ``"hybrid"``: what ``requested`` builds with the installed megatron-core (see the module docstring)."""
    if requested not in MODEL_CLASSES:
        raise ConfigError(f"model_class must be one of {list(MODEL_CLASSES)}, found {requested!r}")
    version = compat.installed_version()
    has_gpt, has_hybrid = compat.has_feature("gpt_model"), compat.has_feature("hybrid_model")
    if requested == "hybrid" and not has_hybrid:
        raise UnsupportedFeatureError(
            f"model_class='hybrid' builds megatron.core.models.hybrid.HybridModel, which megatron-core {version} "
            "does not have (it arrives in 0.18). Upgrade megatron-core to 0.18 or later, or use model_class='auto'."
        )
    if requested == "gpt" and not has_gpt:
        raise UnsupportedFeatureError(
            f"model_class='gpt': megatron-core {version} has no GPTModel (from megatron.core.models.gpt import "
            "GPTModel fails). Use model_class='auto' or 'hybrid': the same weights load into HybridModel."
        )
    if requested != "auto":
        return requested
    if has_gpt:
        return "gpt"
    if has_hybrid:
        return "hybrid"
    raise UnsupportedFeatureError(f"megatron-core {version} has neither GPTModel nor HybridModel to build")


# --- the deprecation notice ------------------------------------------------------------------

class _DropMCoreBanner(logging.Filter):
    """Drops MCore's per-construction GPTModel deprecation banner (the bridge logs its own notice once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_MCORE_BANNER)


@functools.lru_cache(maxsize=1)
def note_gpt_deprecation() -> None:
    """Once per process, where MCore deprecates GPTModel: our notice, and MCore's repeated banner filtered."""
    if not compat.has_feature("gpt_model_deprecated"):
        return
    logging.getLogger(_MCORE_GPT_LOGGER).addFilter(_DropMCoreBanner())
    log.warning(
        "megatron-core %s deprecates GPTModel (only critical fixes upstream). The bridge builds GPTModel by "
        "default while it exists; set model_class=\"hybrid\" on the provider to build HybridModel with the same "
        "weights (the bridge maps both layouts).", compat.installed_version(),
    )


# --- config and pattern ----------------------------------------------------------------------

def stage_pattern(provider: Any) -> str:
    """The provider's hybrid layer pattern: ``*-`` / ``*E`` per GPT block, ``|`` between pipeline stages; with a
    virtual pipeline (config ``virtual_pipeline_model_parallel_size``, VPP) PP x VPP segments in model order,
    which HybridModel hands out as MCore's interleaved schedule does (segment ``vp_stage * PP + pp_rank``)."""
    from bridge.parallel.pp import PipelineLayout

    freq = provider.config_overrides.get("moe_layer_freq", 1)
    vpp = provider.config_overrides.get("virtual_pipeline_model_parallel_size") or 1
    moe = moe_layers(provider.num_layers, num_experts=provider.num_moe_experts, moe_layer_freq=freq)
    layout = PipelineLayout(num_layers=provider.num_layers, pp=provider.pipeline_model_parallel_size * vpp,
                            first_stage_layers=provider.num_layers_in_first_pipeline_stage,
                            last_stage_layers=provider.num_layers_in_last_pipeline_stage)
    return hybrid_pattern(moe, layout.sizes)


def hybrid_config(provider: Any):
    """The provider's ``TransformerConfig`` for HybridModel: the GPT one, pipeline stages left to the pattern."""
    config = provider.transformer_config()
    if config.num_layers_in_first_pipeline_stage is None and config.num_layers_in_last_pipeline_stage is None:
        return config
    return dataclasses.replace(config, num_layers_in_first_pipeline_stage=None, num_layers_in_last_pipeline_stage=None)


# --- the local stack spec --------------------------------------------------------------------

def _gpt_layers(spec: Any) -> tuple[list[Any], Any]:
    """``(layer specs, final norm or None)`` of a layer spec or a block spec (``TransformerBlockSubmodules``,
    bare or as a ``ModuleSpec``'s submodules)."""
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

    block = spec if isinstance(spec, TransformerBlockSubmodules) else getattr(spec, "submodules", None)
    if isinstance(block, TransformerBlockSubmodules):
        return list(block.layer_specs), block.layer_norm
    return [spec], None


def _is_moe(layer: Any) -> bool:
    from megatron.core.transformer.moe.moe_layer import MoELayer

    module = compat.spec_module(getattr(layer.submodules, "mlp", None))
    return isinstance(module, type) and issubclass(module, MoELayer)


@functools.lru_cache(maxsize=None)
def block_numbered(cls: type) -> type:
    """``cls`` (a ``TransformerLayer`` class) building its modules with the GPT block's layer number."""

    class BlockNumbered(cls):  # type: ignore[misc, valid-type]
        def __init__(self, config: Any, submodules: Any, layer_number: int = 1, **kwargs: Any) -> None:
            super().__init__(config, submodules, layer_number=(layer_number + 1) // 2, **kwargs)
            self.layer_number = layer_number  # HybridStack's numbering (checkpoint names, offsets)

    BlockNumbered.__name__ = BlockNumbered.__qualname__ = f"BlockNumbered{cls.__name__}"
    return BlockNumbered


def _attention_part(layer: Any) -> Any:
    from megatron.core.transformer.identity_op import IdentityFuncOp, IdentityOp

    sub = dataclasses.replace(copy.copy(layer.submodules), pre_mlp_layernorm=IdentityOp, mlp=IdentityOp,
                              mlp_bda=IdentityFuncOp)
    return dataclasses.replace(layer, module=block_numbered(layer.module), submodules=sub)


def _mlp_part(layer: Any, *, moe: bool) -> Any:
    from megatron.core.ssm.mlp_layer import MLPLayer
    from megatron.core.transformer.identity_op import IdentityFuncOp, IdentityOp
    from megatron.core.transformer.transformer_layer import TransformerLayer

    sub = dataclasses.replace(copy.copy(layer.submodules), input_layernorm=IdentityOp, self_attention=IdentityOp,
                              self_attn_bda=IdentityFuncOp)
    module = MLPLayer if layer.module is TransformerLayer and not moe else layer.module  # a family's own class stays
    return dataclasses.replace(layer, module=block_numbered(module), submodules=sub)


@functools.lru_cache(maxsize=1)
def local_hybrid_stack() -> type:
    """``HybridStack`` whose final norm comes from the spec (``final_norm`` param), never ``TENorm``."""
    from megatron.core.models.hybrid.hybrid_block import HybridStack
    from megatron.core.transformer.spec_utils import build_module

    class LocalHybridStack(HybridStack):
        """``HybridStack`` with the final norm built from the spec (see :mod:`bridge.hybrid_model`)."""

        def __init__(self, *args: Any, final_norm: Any, post_layer_norm: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, post_layer_norm=False, **kwargs)
            self.post_layer_norm = post_layer_norm
            if self.post_process and post_layer_norm:
                self.final_norm = build_module(final_norm, config=self.config, hidden_size=self.config.hidden_size,
                                               eps=self.config.layernorm_epsilon)

    return LocalHybridStack


def _whole_model(provider: Any) -> Any:
    """A copy of ``provider`` without pipeline stages: a block spec (MoE families with dense blocks) is then built
    for every block, whatever this rank's stage or virtual stage (MCore's block spec asks for a ``vp_stage`` under
    a virtual pipeline); the stack spec only needs each layer kind's spec, and HybridModel picks its segment."""
    if provider.pipeline_model_parallel_size == 1:
        return provider
    overrides = {k: v for k, v in provider.config_overrides.items() if k != "virtual_pipeline_model_parallel_size"}
    return dataclasses.replace(provider, pipeline_model_parallel_size=1, num_layers_in_first_pipeline_stage=None,
                               num_layers_in_last_pipeline_stage=None, config_overrides=overrides)


def _one_spec(layers: list[Any], *, moe: bool) -> Any:
    """The one layer spec the family uses for its dense (or MoE) GPT blocks, None if it has none. HybridStack
    takes one spec per layer kind, so a family whose blocks of a kind differ in spec is refused, never built
    from the first block's spec (per-layer behaviour keyed by layer number, e.g. windows, is fine: the spec is shared)."""
    kind = [layer for layer in layers if _is_moe(layer) == moe]
    if any(layer != kind[0] for layer in kind[1:]):
        raise UnsupportedFeatureError(
            f"the family's {'MoE' if moe else 'dense'} GPT blocks use different layer specs, but HybridStack builds "
            "every layer of a kind from one spec; key per-layer differences on the layer number in one spec, or "
            "use model_class='gpt'")
    return kind[0] if kind else None


def local_hybrid_stack_spec(provider: Any):
    """A non-TE ``HybridStack`` spec made of the provider's local GPT layer spec(s) (see the module docstring)."""
    from megatron.core.models.hybrid.hybrid_block import HybridStackSubmodules
    from megatron.core.transformer.spec_utils import ModuleSpec

    layers, final_norm = _gpt_layers(_whole_model(provider).layer_spec())
    if final_norm is None:  # what TransformerBlock builds for a layer spec: the local norm
        from megatron.core.transformer.torch_norm import WrappedTorchNorm

        final_norm = WrappedTorchNorm
    dense, moe = _one_spec(layers, moe=False), _one_spec(layers, moe=True)
    if dense is not None and moe is not None and _attention_part(dense) != _attention_part(moe):
        raise UnsupportedFeatureError(
            "the family's dense and MoE GPT layer specs differ in their attention half, but HybridStack builds "
            "every '*' layer from one spec; give both layer kinds the same attention spec or use model_class='gpt'")
    attention = _attention_part(dense or moe)
    submodules = HybridStackSubmodules(
        attention_layer=attention,
        **({"mlp_layer": _mlp_part(dense, moe=False)} if dense is not None else {}),
        **({"moe_layer": _mlp_part(moe, moe=True)} if moe is not None else {}),
    )
    return ModuleSpec(module=local_hybrid_stack(), submodules=submodules, params={"final_norm": final_norm})


def _gpt_rotary_embedding(model: Any, provider: Any) -> None:
    """Give the built model the rotary embedding GPTModel would build (same class and arguments; it holds no
    parameters). HybridModel builds its ``RotaryEmbedding`` without GPTModel's ``rotary_interleaved`` (0.18,
    0.19: Ernie-4.5's interleaved pairs came out rotated as halves) and takes no ``rope_scaling`` (Llama 3.1's),
    so the bridge always rebuilds it with every argument GPTModel passes: one path whatever HybridModel drops."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    if type(getattr(model, "rotary_pos_emb", None)) is not RotaryEmbedding:  # none (MLA, learned), or YaRN's
        return
    config, gpt = model.config, provider.gpt_model_kwargs()
    kwargs = {"kv_channels": config.kv_channels, "rotary_interleaved": config.rotary_interleaved,
              **{k: gpt[k] for k in _GPT_ROTARY_KWARGS},
              "use_cpu_initialization": config.use_cpu_initialization,
              "cp_group": getattr(getattr(model, "pg_collection", None), "cp", None)}
    model.rotary_pos_emb = RotaryEmbedding(**compat.adapt_call_kwargs(RotaryEmbedding.__init__, kwargs,
                                                                     "RotaryEmbedding"))


def hybrid_model_kwargs(provider: Any) -> dict[str, Any]:
    """The provider's ``GPTModel`` keyword arguments that ``HybridModel`` takes too (all but Llama 3.1's
    ``rope_scaling``, see :func:`_gpt_rotary_embedding`); pure (what :mod:`bridge.requirements` records)."""
    return {k: v for k, v in provider.gpt_model_kwargs().items() if k not in _GPT_ONLY_KWARGS}


def build_hybrid_model(provider: Any, *, pre_process: bool, post_process: bool, vp_stage: int | None = None):
    """One ``HybridModel`` chunk for this rank (model-parallel groups must exist)."""
    from megatron.core.models.hybrid.hybrid_model import HybridModel

    kwargs = compat.adapt_call_kwargs(HybridModel.__init__, {**hybrid_model_kwargs(provider), "vp_stage": vp_stage},
                                      "HybridModel")
    pattern = stage_pattern(provider)
    log.debug("HybridModel pattern %r", pattern)
    model = HybridModel(config=hybrid_config(provider), hybrid_stack_spec=local_hybrid_stack_spec(provider),
                        hybrid_layer_pattern=pattern, pre_process=pre_process, post_process=post_process, **kwargs)
    _gpt_rotary_embedding(model, provider)
    return model
