"""mcore-compat's bridge: Hugging Face <-> Megatron-Core conversion."""

from bridge.auto_bridge import AutoBridge
from bridge.errors import (
    BridgeError,
    CheckpointError,
    ConfigError,
    MappingError,
    ParallelLayoutError,
    TrustRemoteCodeError,
    UnsupportedFeatureError,
    UnsupportedModelError,
    WeightMismatchError,
)
from bridge.mappings import (
    AutoMapping,
    ColumnParallelMapping,
    ConcatenatedQKVMapping,
    GatedMLPMapping,
    MegatronMappingRegistry,
    MegatronParamMapping,
    QKVMapping,
    ReplicatedMapping,
    RowParallelMapping,
)
from bridge.providers import GPTModelProvider
from bridge.registry import HFClass, MegatronModelBridge
from bridge.trust import SAFE_REPOS, is_safe_repo

__all__ = [
    "AutoBridge",
    "AutoMapping",
    "BridgeError",
    "CheckpointError",
    "ColumnParallelMapping",
    "ConcatenatedQKVMapping",
    "ConfigError",
    "GPTModelProvider",
    "GatedMLPMapping",
    "HFClass",
    "MappingError",
    "MegatronMappingRegistry",
    "MegatronModelBridge",
    "MegatronParamMapping",
    "ParallelLayoutError",
    "QKVMapping",
    "ReplicatedMapping",
    "RowParallelMapping",
    "SAFE_REPOS",
    "TrustRemoteCodeError",
    "UnsupportedFeatureError",
    "UnsupportedModelError",
    "WeightMismatchError",
    "is_safe_repo",
]
