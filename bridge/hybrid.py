"""GPTModel <-> HybridModel: the one parameter layout map, the layer pattern, and the derived mapping tables.

MCore's ``HybridModel`` (``megatron.core.models.hybrid``, 0.18+) builds a decoder from a pattern of
single-purpose layers: ``*`` attention, ``-`` dense MLP, ``E`` mixture of experts, ``|`` a pipeline
stage boundary. A GPT transformer block ``i`` is two hybrid layers, ``*-`` (dense) or ``*E`` (MoE):

=================================================  ==================================================
GPTModel                                           HybridModel
=================================================  ==================================================
``decoder.layers.{i}.input_layernorm.*``           ``decoder.layers.{2i}.input_layernorm.*``
``decoder.layers.{i}.self_attention.*``            ``decoder.layers.{2i}.self_attention.*``
``decoder.layers.{i}.pre_mlp_layernorm.*``         ``decoder.layers.{2i+1}.pre_mlp_layernorm.*``
``decoder.layers.{i}.mlp.*``                       ``decoder.layers.{2i+1}.mlp.*``
``decoder.final_layernorm.*``                      ``decoder.final_norm.*``
anything else (embedding, output layer)            the same name
=================================================  ==================================================

Transformer Engine's fused norm names follow their module (``self_attention.linear_qkv.layer_norm_weight``
-> attention layer, ``mlp.linear_fc1.layer_norm_weight`` -> MLP layer). :func:`gpt_to_hybrid` and
:func:`hybrid_to_gpt` are pure and inverse to each other (``tests/bridge/test_hybrid.py`` checks the pair
with Hypothesis). Every family's Hybrid mapping table is its GPT table seen through them
(:class:`HybridMappingRegistry`): no family writes a second table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bridge.errors import ConfigError, MappingError
from bridge.mappings import MegatronMappingRegistry, MegatronParamMapping

__all__ = [
    "MODEL_CLASSES",
    "HybridMappingRegistry",
    "gpt_to_hybrid",
    "hybrid_pattern",
    "hybrid_to_gpt",
    "moe_layers",
    "rename_for",
]

#: The provider's ``model_class`` values: ``auto`` is GPTModel while the installed MCore has it.
MODEL_CLASSES = ("auto", "gpt", "hybrid")

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.([A-Za-z_]+)(.*)$")
# Sub-modules of a GPT block by the hybrid layer that holds them (0: attention, 1: MLP / MoE).
_ATTENTION_PARTS = frozenset({"input_layernorm", "self_attention"})
_MLP_PARTS = frozenset({"pre_mlp_layernorm", "mlp"})
_GPT_FINAL_NORM, _HYBRID_FINAL_NORM = "decoder.final_layernorm.", "decoder.final_norm."

ATTENTION, MLP, MOE, PIPE = "*", "-", "E", "|"


def gpt_to_hybrid(name: str) -> str:
    """A GPTModel parameter name (global layer numbers) -> the HybridModel name of the same tensor."""
    if name.startswith(_GPT_FINAL_NORM):
        return _HYBRID_FINAL_NORM + name[len(_GPT_FINAL_NORM):]
    m = _LAYER.match(name)
    if m is None:
        return name
    index, part, rest = int(m.group(1)), m.group(2), m.group(3)
    if part in _ATTENTION_PARTS:
        return f"decoder.layers.{2 * index}.{part}{rest}"
    if part in _MLP_PARTS:
        return f"decoder.layers.{2 * index + 1}.{part}{rest}"
    raise MappingError(
        f"{name!r}: a GPT block's {part!r} has no place in the hybrid layout (expected a part of the attention "
        f"layer, {sorted(_ATTENTION_PARTS)}, or of the MLP layer, {sorted(_MLP_PARTS)})"
    )


def hybrid_to_gpt(name: str) -> str:
    """A HybridModel parameter name (``*-`` / ``*E`` pairs) -> the GPTModel name; inverse of :func:`gpt_to_hybrid`."""
    if name.startswith(_HYBRID_FINAL_NORM):
        return _GPT_FINAL_NORM + name[len(_HYBRID_FINAL_NORM):]
    m = _LAYER.match(name)
    if m is None:
        return name
    index, part, rest = int(m.group(1)), m.group(2), m.group(3)
    expected = _ATTENTION_PARTS if index % 2 == 0 else _MLP_PARTS
    if part not in expected:
        kind = "an attention" if index % 2 == 0 else "an MLP/MoE"
        raise MappingError(
            f"{name!r}: hybrid layer {index} is {kind} layer in the bridge's patterns (pairs '*-' / '*E'), "
            f"which holds {sorted(expected)}, not {part!r}"
        )
    return f"decoder.layers.{index // 2}.{part}{rest}"


def moe_layers(num_layers: int, *, num_experts: int | None, moe_layer_freq: int | Sequence[int] | None = 1) -> list[bool]:
    """Which GPT blocks are MoE, as MCore reads ``moe_layer_freq`` (an int ``N``: every ``N``-th block from
    block 0; a 0/1 list: one entry per block)."""
    if not num_experts:
        return [False] * num_layers
    freq = 1 if moe_layer_freq is None else moe_layer_freq
    if isinstance(freq, int):
        if freq < 1:
            raise ConfigError(f"moe_layer_freq must be >= 1, found {freq}")
        return [i % freq == 0 for i in range(num_layers)]
    flags = [bool(x) for x in freq]
    if len(flags) != num_layers:
        raise ConfigError(f"moe_layer_freq lists {len(flags)} layers, expected num_layers={num_layers}")
    return flags


def hybrid_pattern(moe: Sequence[bool], stage_sizes: Sequence[int] | None = None) -> str:
    """The HybridModel layer pattern of GPT blocks ``moe`` (``*E`` for MoE, ``*-`` dense), with a ``|`` after each
    pipeline stage of ``stage_sizes`` GPT blocks (None or one stage: no ``|``)."""
    blocks = [ATTENTION + (MOE if m else MLP) for m in moe]
    sizes = list(stage_sizes or [len(blocks)])
    if sum(sizes) != len(blocks) or any(s < 0 for s in sizes):
        raise ConfigError(f"pipeline stage sizes {sizes} do not add up to the {len(blocks)} layers")
    stages, start = [], 0
    for size in sizes:
        stages.append("".join(blocks[start:start + size]))
        start += size
    return PIPE.join(stages)


def _renamed(mapping: MegatronParamMapping, name: str) -> MegatronParamMapping:
    """A resolved mapping (no wildcard left) under another Megatron name; HF side and transforms unchanged."""
    assert not mapping.is_pattern, mapping
    clone = object.__new__(type(mapping))
    clone.__dict__.update(mapping.__dict__)
    clone.megatron_param = name
    clone._megatron_re = re.compile("^" + re.escape(name) + "$")
    return clone


class HybridMappingRegistry(MegatronMappingRegistry):
    """A family's GPT table read through the layout map: lookups by HybridModel names, HF side unchanged."""

    def __init__(self, gpt: MegatronMappingRegistry) -> None:
        super().__init__(*gpt)
        self.gpt = gpt

    def megatron_to_hf_lookup(self, megatron_name: str) -> MegatronParamMapping | None:
        try:
            gpt_name = hybrid_to_gpt(megatron_name)
        except MappingError:
            return None
        mapping = self.gpt.megatron_to_hf_lookup(gpt_name)
        return None if mapping is None else _renamed(mapping, megatron_name)

    def hf_to_megatron_lookup(self, hf_name: str) -> MegatronParamMapping | None:
        mapping = self.gpt.hf_to_megatron_lookup(hf_name)
        if mapping is None or mapping.is_pattern:
            return mapping
        return _renamed(mapping, gpt_to_hybrid(mapping.megatron_param))


def rename_for(source: str, target: str):
    """The name map from ``source``'s parameter layout to ``target``'s (``"gpt"`` / ``"hybrid"``)."""
    maps = {("gpt", "hybrid"): gpt_to_hybrid, ("hybrid", "gpt"): hybrid_to_gpt}
    if source == target:
        return lambda name: name
    try:
        return maps[(source, target)]
    except KeyError:
        raise ConfigError(f"model classes are 'gpt' and 'hybrid'; found {source!r} -> {target!r}") from None
