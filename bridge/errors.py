"""The one exception root of :mod:`bridge` and its specific kinds.

Every message says what was expected, what was found, and how to fix it.
Several kinds also derive from the built-in exception a caller would naturally
catch (``ValueError``, ``KeyError``) so that generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "CheckpointError",
    "ConfigError",
    "MappingError",
    "ParallelLayoutError",
    "TrustRemoteCodeError",
    "UnsupportedFeatureError",
    "UnsupportedModelError",
    "WeightMismatchError",
    "tensors_mismatch",
]


class BridgeError(Exception):
    """Root of every error raised on purpose by :mod:`bridge`."""


class TrustRemoteCodeError(BridgeError, ValueError):
    """Custom modelling code would have to run, but the source is not trusted."""


class UnsupportedModelError(BridgeError, ValueError):
    """No registered bridge handles the checkpoint's architecture."""


class MappingError(BridgeError, ValueError):
    """A parameter mapping is malformed or does not match a parameter name."""


class WeightMismatchError(BridgeError):
    """HF and Megatron weights disagree: missing, unexpected, or wrongly shaped tensors."""


class CheckpointError(BridgeError, ValueError):
    """A checkpoint on disk is malformed, unsafe, or inconsistent."""


class ConfigError(BridgeError, ValueError):
    """A configuration value is invalid for this model or this MCore."""


class UnsupportedFeatureError(ConfigError):
    """A requested MCore feature is absent from the installed megatron-core."""


class ParallelLayoutError(BridgeError, ValueError):
    """A tensor/pipeline-parallel layout does not fit the model."""


def tensors_mismatch(subject: str, missing: list[str], unexpected: list[str], *, unexpected_why: str = "",
                     fix: str) -> WeightMismatchError:
    """One error naming every missing and unexpected tensor (sorted by the caller), then how to fix it."""
    return WeightMismatchError(
        f"{subject}: "
        + (f"missing {len(missing)} tensor(s): {missing}" if missing else "")
        + ("; " if missing and unexpected else "")
        + (f"unexpected {len(unexpected)} tensor(s){unexpected_why}: {unexpected}" if unexpected else "")
        + f". {fix}"
    )
