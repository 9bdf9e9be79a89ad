"""mcore-compat's bridge: Hugging Face <-> Megatron-Core conversion.

Names are imported lazily: a process that needs one module (``mcore-compat convert`` imports
:mod:`bridge.streaming`) must not pay for :class:`AutoBridge` and every family's model code at start-up.
"""

from __future__ import annotations

from bridge.lazy import lazy_exports
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

_EXPORTS: dict[str, str] = {
    "AutoBridge": "bridge.auto_bridge",
    "AutoMapping": "bridge.mappings",
    "ColumnParallelMapping": "bridge.mappings",
    "ConcatenatedQKVMapping": "bridge.mappings",
    "GPTModelProvider": "bridge.providers",
    "GatedMLPMapping": "bridge.mappings",
    "HFClass": "bridge.registry",
    "MegatronMappingRegistry": "bridge.mappings",
    "MegatronModelBridge": "bridge.registry",
    "MegatronParamMapping": "bridge.mappings",
    "QKVMapping": "bridge.mappings",
    "ReplicatedMapping": "bridge.mappings",
    "RowParallelMapping": "bridge.mappings",
    "SAFE_REPOS": "bridge.trust",
    "is_safe_repo": "bridge.trust",
}

__all__ = sorted([*_EXPORTS, "BridgeError", "CheckpointError", "ConfigError", "MappingError", "ParallelLayoutError",
                  "TrustRemoteCodeError", "UnsupportedFeatureError", "UnsupportedModelError", "WeightMismatchError"])

__getattr__, __dir__ = lazy_exports("bridge", _EXPORTS, __all__)
