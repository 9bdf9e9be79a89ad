"""The ``model`` section: which architecture, and any MCore ``TransformerConfig`` field on top.

>>> m = ModelConfig(family="llama", hf_config=LLAMA_DICT,                # doctest: +SKIP
...                 overrides={"recompute_granularity": "full"})
>>> m.recompute_granularity                                               # doctest: +SKIP
'full'
>>> m.with_overrides(recompute_num_layers=1, recompute_method="uniform")  # doctest: +SKIP

The HF config (a dict built locally, or a ``transformers`` config object) selects the family
bridge, which turns it into a provider (:class:`bridge.providers.GPTModelProvider`); the
overrides are then set on that provider, so they reach ``TransformerConfig`` and ``GPTModel``
unchanged. Override names are checked when the :class:`ModelConfig` is created (see
:mod:`bridge.config.validation`), so a field the installed MCore lacks fails before anything
is built. Reading an attribute (``m.hidden_size``) gives the value the model will be built with.
"""

from __future__ import annotations

import copy
import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.config import validation
from bridge.errors import ConfigError, UnsupportedModelError
from bridge.models.hf_validation import validate_hf_config
from bridge.providers import GPTModelProvider

__all__ = ["ModelConfig", "bridge_class_for"]


def bridge_class_for(family: str | None, hf_config: Any) -> type:
    """The registered bridge class for ``family`` and/or ``hf_config``'s ``architectures``."""
    from bridge.registry import bridge_for_architectures, registered_bridges

    archs = _get(hf_config, "architectures")
    if archs:
        cls = bridge_for_architectures(list(archs), source="ModelConfig.hf_config")
        if family is not None and cls.family != family:
            raise ConfigError(
                f"family {family!r} does not match hf_config architectures {list(archs)}, which the "
                f"{cls.family!r} family handles; drop family= or fix the architectures"
            )
        return cls
    if family is None:
        raise ConfigError("ModelConfig needs family= or hf_config['architectures'] to pick a bridge")
    bridges = [b for b in registered_bridges() if b.family == family]
    if not bridges:
        known = sorted({b.family for b in registered_bridges()})
        raise UnsupportedModelError(f"no bridge family {family!r} is registered; known families: {known}")
    if len(bridges) > 1:
        raise ConfigError(
            f"family {family!r} has several architectures {[b.architecture for b in bridges]}; "
            "name one in hf_config['architectures']"
        )
    return bridges[0]


def _get(cfg: Any, name: str) -> Any:
    return cfg.get(name) if isinstance(cfg, Mapping) else getattr(cfg, name, None)


def _hf_config_object(bridge_cls: type, hf_config: Any) -> Any:
    """A ``transformers`` config object from a dict (built locally; nothing is downloaded), validated first."""
    validate_hf_config(hf_config)  # before transformers divides by num_attention_heads
    if not isinstance(hf_config, Mapping):
        return copy.deepcopy(hf_config)
    data = copy.deepcopy(dict(hf_config))
    data.setdefault("architectures", [bridge_cls.architecture])
    hf_class = getattr(bridge_cls, "hf_class", None)
    config_cls = getattr(hf_class, "config_class", None)
    if config_cls is not None:
        data.pop("model_type", None)
        return config_cls(**data)
    from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig

    model_type = data.pop("model_type", None)
    if model_type is None:
        raise ConfigError(
            f"hf_config for {bridge_cls.architecture} (registered by name) needs a 'model_type' key to "
            "build its transformers config"
        )
    if model_type in CONFIG_MAPPING:
        return AutoConfig.for_model(model_type, **data)
    # A custom-code architecture (its config class ships in the checkpoint, e.g. Kimi-K2): the bridge reads
    # plain fields, so a PretrainedConfig holding them stands in; no checkpoint code is imported or run. The
    # fields are set after construction: transformers 5 would otherwise rewrite a legacy ``rope_scaling``.
    config = PretrainedConfig(model_type=model_type)
    config.update(data)
    return config


@dataclass(frozen=True)
class ModelConfig:
    """The model: a family bridge, its HF config, and MCore field overrides.

    Attributes:
        hf_config: HF ``config.json`` content as a dict, or a ``transformers`` config object.
        family: bridge family name (``"llama"``, ...); optional when ``hf_config`` has
            ``architectures``, checked against them otherwise.
        overrides: provider fields (``num_layers``, ``activation``, ...) and any
            ``TransformerConfig`` field of the installed MCore (``recompute_granularity``, ...),
            applied on top of what the HF config gives. Parallelism fields belong to
            :class:`~bridge.config.sections.ParallelismConfig` instead.
        transformer_layer_spec: a custom MCore ``ModuleSpec`` (or ``callable(provider) -> ModuleSpec``)
            for the decoder layers; ``None`` uses the bridge's default (the local spec).
    """

    hf_config: Any
    family: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    transformer_layer_spec: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", types.MappingProxyType(dict(self.overrides)))
        cls = bridge_class_for(self.family, self.hf_config)
        object.__setattr__(self, "family", cls.family)
        base = self.base_provider()
        validation.check_model_fields(self.overrides, type(base), base.config_class)

    # -- derived objects ---------------------------------------------------------------------
    @property
    def bridge_class(self) -> type:
        return bridge_class_for(self.family, self.hf_config)

    def hf_config_object(self) -> Any:
        """The HF config as a ``transformers`` config object (a fresh copy)."""
        return _hf_config_object(self.bridge_class, self.hf_config)

    def base_provider(self) -> GPTModelProvider:
        """The family's provider for the HF config, before overrides (pure; builds nothing)."""
        return self.bridge_class().provider_bridge(self.hf_config_object())

    def provider(self, parallelism: Mapping[str, Any] | None = None) -> GPTModelProvider:
        """A new, unfinalized provider: the HF config's, then ``parallelism``, then the overrides."""
        provider = self.base_provider()
        for name, value in (parallelism or {}).items():
            setattr(provider, name, value)
        for name, value in self.overrides.items():
            setattr(provider, name, value)
        if self.transformer_layer_spec is not None:
            provider.transformer_layer_spec = self.transformer_layer_spec
        return provider

    # -- overrides ---------------------------------------------------------------------------
    def with_overrides(self, **overrides: Any) -> "ModelConfig":
        """A copy with ``overrides`` merged over the current ones (validated the same way)."""
        return ModelConfig(hf_config=self.hf_config, family=self.family,
                           overrides={**self.overrides, **overrides},
                           transformer_layer_spec=self.transformer_layer_spec)

    def without_overrides(self, *names: str) -> "ModelConfig":
        """A copy with the named overrides removed (back to the HF config's values)."""
        missing = [n for n in names if n not in self.overrides]
        if missing:
            raise ConfigError(f"cannot remove overrides {missing}: not set; set overrides are {sorted(self.overrides)}")
        kept = {k: v for k, v in self.overrides.items() if k not in names}
        return ModelConfig(hf_config=self.hf_config, family=self.family, overrides=kept,
                           transformer_layer_spec=self.transformer_layer_spec)

    def __getattr__(self, name: str) -> Any:
        """``model.<field>``: the value the model will be built with (override, else from the HF config)."""
        if name.startswith("_") or name in ("hf_config", "family", "overrides", "transformer_layer_spec"):
            raise AttributeError(name)
        if name in self.overrides:
            return self.overrides[name]
        provider = self.base_provider()
        kwargs = provider.transformer_config_kwargs()
        if name in kwargs:
            return kwargs[name]
        if name in {f.name for f in dataclasses.fields(provider)} or \
                isinstance(getattr(type(provider), name, None), property):
            return getattr(provider, name)
        from bridge import compat

        if name in compat.config_fields(provider.config_class):
            return _config_default(provider.config_class, name)
        raise AttributeError(
            f"{type(self).__name__} has no field {name!r} (neither a provider field nor a "
            f"{provider.config_class} field of the installed megatron-core)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``hf_config`` as a dict); the inverse is ``ModelConfig(**d)``."""
        if self.transformer_layer_spec is not None:
            raise ConfigError("a model with a custom transformer_layer_spec (code) cannot be written as data")
        hf = dict(self.hf_config) if isinstance(self.hf_config, Mapping) else self.hf_config.to_dict()
        return {"family": self.family, "hf_config": hf, "overrides": dict(self.overrides)}


def _config_default(config_class: str, name: str) -> Any:
    from megatron.core.transformer import transformer_config as tc

    for f in dataclasses.fields(getattr(tc, config_class)):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise AttributeError(name)
