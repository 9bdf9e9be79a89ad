"""Parameter mappings between HF tensors and Megatron parameters."""

from bridge.mappings.base import (
    AutoMapping,
    ColumnParallelMapping,
    MappingContext,
    MegatronParamMapping,
    ReplicatedMapping,
    RowParallelMapping,
    detect_sharding,
)
from bridge.mappings.experts import ExpertStacker, StackedExpertMapping
from bridge.mappings.fused import ConcatenatedQKVMapping, GatedMLPMapping, QKVMapping
from bridge.mappings.registry import MegatronMappingRegistry

__all__ = [
    "AutoMapping",
    "ColumnParallelMapping",
    "ConcatenatedQKVMapping",
    "GatedMLPMapping",
    "MappingContext",
    "MegatronMappingRegistry",
    "MegatronParamMapping",
    "ExpertStacker",
    "StackedExpertMapping",
    "QKVMapping",
    "ReplicatedMapping",
    "RowParallelMapping",
    "detect_sharding",
]
