"""The bridge's two directions on whole state dicts, composed from a family's own pieces without
building MCore: its mapping table (read HF -> Megatron through ``hf_to_megatron_lookup``, the way
the registry derives that direction), its mapping context, and the sharding metadata conversion
uses (:func:`bridge.conversion.tp_meta`)."""

from __future__ import annotations

import torch

from bridge.conversion import tp_meta
from bridge.mappings import MappingContext, MegatronMappingRegistry
from bridge.parallel import ParamSpec
from bridge.registry import bridge_for_architectures
from tests.strategies import HFArchitecture

__all__ = ["family_tables", "to_hf", "to_megatron"]


def family_tables(arch: HFArchitecture) -> tuple[MegatronMappingRegistry, MappingContext]:
    """The family's mapping table and context, from its own bridge and provider."""
    config = arch.hf_config()
    bridge = bridge_for_architectures(config.architectures)()
    provider = bridge.provider_bridge(config)
    provider.should_pad_vocab = True  # the strategies draw the padding multiple: exercise it
    provider.make_vocab_size_divisible_by = arch.make_vocab_size_divisible_by
    return bridge.mapping_registry(provider), bridge.mapping_context(provider)


def to_megatron(
    hf: dict[str, torch.Tensor], registry: MegatronMappingRegistry, ctx: MappingContext
) -> tuple[dict[str, torch.Tensor], dict[str, ParamSpec]]:
    """The full Megatron state (global names) and each parameter's sharding, as import builds them."""
    mappings = {}
    for name in hf:
        mapping = registry.hf_to_megatron_lookup(name)
        assert mapping is not None, f"no mapping consumes {name!r}"
        mappings.setdefault(mapping.megatron_param, mapping)
    full = {
        meg: m.hf_to_megatron({n: hf[n] for n in m.hf_names()}, ctx) for meg, m in mappings.items()
    }
    kinds = {meg: ParamSpec(m.sharding, tp_meta(m, ctx)) for meg, m in mappings.items()}
    return full, kinds


def to_hf(
    full: dict[str, torch.Tensor], registry: MegatronMappingRegistry, ctx: MappingContext
) -> dict[str, torch.Tensor]:
    """The HF tensors export writes for a full Megatron state."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in full.items():
        mapping = registry.megatron_to_hf_lookup(name)
        assert mapping is not None, name
        if mapping.export:
            out.update(mapping.megatron_to_hf(tensor, ctx))
    return out
