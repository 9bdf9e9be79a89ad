"""Training-run configuration: :class:`ConfigContainer` (frozen, validated sections) and recipes."""

from bridge.config.container import SECTIONS, ConfigContainer
from bridge.config.model import ModelConfig
from bridge.config.sections import CheckpointConfig, OptimizerConfig, ParallelismConfig, TrainingConfig
from bridge.config.validation import UnknownFieldError

__all__ = [
    "SECTIONS",
    "CheckpointConfig",
    "ConfigContainer",
    "ModelConfig",
    "OptimizerConfig",
    "ParallelismConfig",
    "TrainingConfig",
    "UnknownFieldError",
]
