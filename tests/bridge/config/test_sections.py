"""The non-model sections: defaults are valid, every invalid value is refused with the fix."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.config import CheckpointConfig, OptimizerConfig, ParallelismConfig, TrainingConfig
from bridge.config.container import SECTIONS
from bridge.errors import ConfigError, ParallelLayoutError


def test_sections_are_frozen_and_documented() -> None:
    for cls in SECTIONS.values():
        section = cls()
        name = dataclasses.fields(cls)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, name, getattr(section, name))
        assert cls.__doc__
        for f in dataclasses.fields(cls):
            assert f.metadata.get("megatron_lm", "").startswith("--"), f"{cls.__name__}.{f.name} has no flag"


def test_section_field_names_are_disjoint() -> None:
    """A bare override name (``lr``, ``save``) must have exactly one home."""
    seen: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in seen, f"{f.name} is in both {seen[f.name]} and {section}"
            seen[f.name] = section


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "says"),
    [
        (TrainingConfig, {"micro_batch_size": 0}, ConfigError, "positive integer"),
        (TrainingConfig, {"micro_batch_size": 3, "global_batch_size": 32}, ConfigError, "multiple of 3"),
        (TrainingConfig, {"train_iters": 1.5}, ConfigError, "train_iters"),
        (OptimizerConfig, {"optimizer": "lamb"}, ConfigError, "'adam' or 'sgd'"),
        (OptimizerConfig, {"lr": 1e-4, "min_lr": 1e-3}, ConfigError, "min_lr <= lr"),
        (OptimizerConfig, {"adam_beta2": 1.0}, ConfigError, "adam_beta2"),
        (OptimizerConfig, {"lr_decay_style": "exp"}, ConfigError, "cosine"),
        (OptimizerConfig, {"lr_warmup_iters": -1}, ConfigError, "lr_warmup_iters"),
        (CheckpointConfig, {"ckpt_format": "zarr"}, ConfigError, "torch_dist"),
        (CheckpointConfig, {"save_interval": 100}, ConfigError, "save="),
        (CheckpointConfig, {"save": "/ckpt", "ckpt_format": "torch", "async_save": True}, ConfigError, "torch_dist"),
        (ParallelismConfig, {"tensor_model_parallel_size": 0}, ConfigError, "positive integer"),
        (ParallelismConfig, {"sequence_parallel": True}, ParallelLayoutError, "tensor_model_parallel_size > 1"),
        (ParallelismConfig, {"virtual_pipeline_model_parallel_size": 2}, ParallelLayoutError, "pipeline_model"),
    ],
)
def test_invalid_values_are_refused(cls: type, kwargs: dict, error: type, says: str) -> None:
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        cls(**kwargs)


def test_parallelism_provider_fields_leave_out_unset_values() -> None:
    par = ParallelismConfig(tensor_model_parallel_size=2, sequence_parallel=True)
    fields = par.provider_fields()
    assert fields["tensor_model_parallel_size"] == 2 and fields["sequence_parallel"] is True
    assert "virtual_pipeline_model_parallel_size" not in fields and "expert_tensor_parallel_size" not in fields
    assert par.model_parallel_size == 2


def test_optimizer_mcore_kwargs_are_mcore_optimizer_fields() -> None:
    from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig

    mcore = {f.name for f in dataclasses.fields(McoreOptimizerConfig)}
    kwargs = OptimizerConfig(lr=1e-3).mcore_kwargs()
    assert set(kwargs) <= mcore and kwargs["lr"] == 1e-3
