"""``ConfigContainer``: one training run's whole configuration, as frozen, validated sections.

>>> cfg = ConfigContainer(model=ModelConfig(family="llama", hf_config=LLAMA_DICT))   # doctest: +SKIP
>>> cfg = cfg.with_overrides({"lr": 1e-4, "model.recompute_granularity": "full",     # doctest: +SKIP
...                           "parallelism.tensor_model_parallel_size": 2})
>>> provider = cfg.to_provider()              # GPTModelProvider, finalized    # doctest: +SKIP
>>> tc = cfg.transformer_config()             # the installed MCore's TransformerConfig  # doctest: +SKIP

Sections: ``model`` (:class:`~bridge.config.model.ModelConfig`), ``training``, ``optimizer``,
``checkpoint``, ``parallelism`` (:mod:`bridge.config.sections`). Changes make new containers
(:meth:`ConfigContainer.replace`, :meth:`ConfigContainer.with_overrides`); a container is
validated when it is created (names, values, parallel layout), so nothing invalid is ever
built; :meth:`ConfigContainer.validate` adds MCore's own ``TransformerConfig`` checks. :meth:`ConfigContainer.to_dict` and
:meth:`ConfigContainer.from_dict` are inverse pure functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge._logging import get_logger
from bridge.config import validation
from bridge.config.model import ModelConfig
from bridge.config.sections import CheckpointConfig, OptimizerConfig, ParallelismConfig, TrainingConfig
from bridge.errors import ConfigError, ParallelLayoutError
from bridge.providers import GPTModelProvider

__all__ = ["SECTIONS", "ConfigContainer"]

log = get_logger("config")

SECTIONS: dict[str, type] = {
    "training": TrainingConfig,
    "optimizer": OptimizerConfig,
    "checkpoint": CheckpointConfig,
    "parallelism": ParallelismConfig,
}
"""The non-model sections, by attribute name."""


@dataclass(frozen=True)
class ConfigContainer:
    """Everything a training run needs; see the module docstring."""

    model: ModelConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    parallelism: ParallelismConfig = field(default_factory=ParallelismConfig)

    def __post_init__(self) -> None:
        expected = {"model": ModelConfig, **SECTIONS}
        for name, cls in expected.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"ConfigContainer.{name} must be a {cls.__name__}, found {type(getattr(self, name)).__name__}; "
                    f"pass {cls.__name__}(...) or use replace({name}={{...}})"
                )
        self.to_provider(finalize=False)  # every check that needs no MCore object: fail early

    # -- changes ---------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "ConfigContainer":
        """A copy with sections replaced: each value is a section object or a mapping of its fields.

        ``cfg.replace(training={"train_iters": 10}, model={"recompute_granularity": "full"})``
        """
        sections: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "model":
                sections[name] = value if isinstance(value, ModelConfig) else self.model.with_overrides(**value)
            elif name in SECTIONS:
                if isinstance(value, Mapping):
                    value = _section(name, value, base=getattr(self, name), config_class=self._config_class())
                sections[name] = value
            else:
                raise ConfigError(f"ConfigContainer has no section {name!r}; sections are {['model', *SECTIONS]}")
        return dataclasses.replace(self, **sections)

    def with_overrides(self, overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> "ConfigContainer":
        """A copy with flat overrides applied: ``"section.field"`` keys or bare field names.

        Bare names go to the section that has the field (``lr`` -> optimizer), else to the model
        (``recompute_granularity``). Unknown names are errors naming the closest fields.
        """
        flat = {**(overrides or {}), **kwargs}
        if not flat:
            return self
        base = self.model.base_provider()
        routed = validation.route_overrides(
            flat, SECTIONS,
            validation.model_field_names(type(base), base.config_class) - validation.PARALLELISM_OWNED,
            provider_cls=type(base), config_class=base.config_class,
        )
        return self.replace(**routed)

    def _config_class(self) -> str:
        return self.model.base_provider().config_class

    # -- building -------------------------------------------------------------------------------
    def to_provider(self, *, finalize: bool = True) -> GPTModelProvider:
        """The provider for this configuration (validated; finalized unless ``finalize=False``)."""
        self._check_cross_sections()
        provider = self.model.provider(self.parallelism.provider_fields())
        if finalize:
            provider.finalize()
        else:
            provider.validate()
        return provider

    def transformer_config(self) -> Any:
        """The installed MCore's ``TransformerConfig`` (or subclass) for this configuration."""
        return self.to_provider(finalize=False).transformer_config()

    def mcore_optimizer_config(self) -> Any:
        """``megatron.core.optimizer.OptimizerConfig`` (precision from the model's ``params_dtype``)."""
        import torch
        from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig

        from bridge import compat

        dtype = self.model.params_dtype
        kwargs = {**self.optimizer.mcore_kwargs(), "bf16": dtype == torch.bfloat16,
                  "fp16": dtype == torch.float16, "params_dtype": dtype}
        return McoreOptimizerConfig(**compat.adapt_call_kwargs(McoreOptimizerConfig, kwargs, "OptimizerConfig"))

    def validate(self) -> None:
        """Also run MCore's own checks (``TransformerConfig.__post_init__``); needs no GPU."""
        self.transformer_config()

    def _check_cross_sections(self) -> None:
        par, train = self.parallelism, self.training
        base = self.model.provider()
        max_len = base.seq_length
        if train.seq_length > max_len and base.position_embedding_type == "learned_absolute":
            raise ConfigError(
                f"training.seq_length={train.seq_length} exceeds the model's learned position embeddings "
                f"({max_len}); lower seq_length"
            )
        if par.context_parallel_size > 1 and train.seq_length % (2 * par.context_parallel_size):
            raise ParallelLayoutError(
                f"training.seq_length={train.seq_length} must be divisible by 2 x context_parallel_size "
                f"= {2 * par.context_parallel_size} (each CP rank takes two load-balanced chunks)"
            )
        experts = base.num_moe_experts
        if par.expert_model_parallel_size > 1:
            if not experts:
                raise ParallelLayoutError(
                    f"expert_model_parallel_size={par.expert_model_parallel_size} needs a mixture-of-experts "
                    "model; this model has no experts (set it to 1)"
                )
            if experts % par.expert_model_parallel_size:
                raise ParallelLayoutError(
                    f"expert_model_parallel_size={par.expert_model_parallel_size} must divide the number of "
                    f"experts ({experts})"
                )
        vpp = par.virtual_pipeline_model_parallel_size
        if vpp is not None and base.num_layers_in_first_pipeline_stage is None \
                and base.num_layers_in_last_pipeline_stage is None \
                and base.num_layers % (par.pipeline_model_parallel_size * vpp):
            raise ParallelLayoutError(
                f"num_layers={base.num_layers} must be divisible by PP x VPP = "
                f"{par.pipeline_model_parallel_size} x {vpp} for an interleaved pipeline"
            )

    # -- data ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"model": {...}, "training": {...}, ...}`` (inverse: :meth:`from_dict`)."""
        out: dict[str, Any] = {"model": self.model.to_dict()}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConfigContainer":
        """The container :meth:`to_dict` wrote (missing sections take their defaults)."""
        unknown = set(data) - {"model", *SECTIONS}
        if unknown:
            raise ConfigError(f"unknown sections {sorted(unknown)}; sections are {['model', *SECTIONS]}")
        if "model" not in data:
            raise ConfigError("a configuration needs a 'model' section")
        kwargs: dict[str, Any] = {"model": ModelConfig(**data["model"])}
        model = kwargs["model"]
        for name in SECTIONS:
            if name in data:
                kwargs[name] = _section(name, data[name], config_class=model.base_provider().config_class)
        return cls(**kwargs)


def _section(name: str, values: Mapping[str, Any], *, base: Any = None, config_class: str) -> Any:
    """Section ``name`` from ``values`` (over ``base`` when given); unknown keys name the closest."""
    cls = SECTIONS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise validation.unknown_field_error(key, known, where=f"section {name!r}", config_class=config_class)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)
