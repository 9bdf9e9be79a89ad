"""Family bridges and their registration by HF class (type) or architecture string.

``@MegatronModelBridge.register_bridge(source=LlamaForCausalLM, target=GPTModel)``
registers by type; ``source=HFClass("transformers", "LlamaForCausalLM")`` registers the same type
but imports it on first use of ``hf_class`` (transformers' model modules take seconds to import, and
conversion never needs them); ``source="DeepseekV3ForCausalLM"`` registers by string without
any HF class (the way ``trust_remote_code`` models are registered).
Dispatch reads ``config.architectures``. An architecture nobody registered is an
:class:`UnsupportedModelError` that lists the supported ones and the closest name.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

from bridge._logging import get_logger
from bridge.errors import MappingError, UnsupportedModelError
from bridge.mappings import MappingContext, MegatronMappingRegistry
from bridge.providers import GPTModelProvider
from bridge.requirements import Requirements, derive_requirements, provider_usage, variant_names

__all__ = [
    "HFClass",
    "MegatronModelBridge",
    "all_requirements",
    "bridge_for_architectures",
    "registered_architectures",
    "registered_bridges",
]

log = get_logger("registry")

_BY_ARCH: dict[str, type["MegatronModelBridge"]] = {}
B = TypeVar("B", bound=type["MegatronModelBridge"])


@dataclass(frozen=True)
class HFClass:
    """An HF model class named by module and class name, imported when first needed."""

    module: str
    name: str

    def load(self) -> type:
        try:
            loaded = getattr(importlib.import_module(self.module), self.name)
        except (ImportError, AttributeError) as exc:
            raise UnsupportedModelError(
                f"HF class {self.module}.{self.name} could not be imported ({exc}); install a transformers "
                "version that has it"
            ) from exc
        if not isinstance(loaded, type):
            raise MappingError(f"{self.module}.{self.name} is a {type(loaded).__name__}, expected an HF model class")
        return loaded


class _LazyClass:
    """A class attribute that is ``ref``'s class, imported on first access."""

    def __init__(self, ref: HFClass) -> None:
        self.ref = ref
        self._loaded: type | None = None

    def __get__(self, obj: object, owner: type | None = None) -> type:
        if self._loaded is None:
            self._loaded = self.ref.load()
        return self._loaded


class MegatronModelBridge:
    """Base of every family bridge: HF config -> provider, and the mapping table.

    A family subclass sets :attr:`family` and implements :meth:`provider_bridge` and
    :meth:`mapping_registry`; :meth:`representative_configs` returns small HF configs
    that exercise its features (used to derive :meth:`requirements`).
    """

    family: ClassVar[str] = ""
    architecture: ClassVar[str] = ""
    hf_class: ClassVar[type | None] = None
    target: ClassVar[str] = "GPTModel"
    registration: ClassVar[str] = ""  # "type" or "string"
    # HF tensors that are legitimately not weights of the model (never reported as unexpected).
    ignored_hf_patterns: ClassVar[tuple[str, ...]] = ("*.rotary_emb.inv_freq",)

    # -- to be implemented by families ------------------------------------------------------
    def provider_bridge(self, hf_config: Any) -> GPTModelProvider:
        raise NotImplementedError

    def mapping_registry(self, provider: GPTModelProvider) -> MegatronMappingRegistry:
        raise NotImplementedError

    @classmethod
    def representative_configs(cls) -> list[Any]:
        return []

    # -- shared behaviour ---------------------------------------------------------------------
    def model_registry(self, provider: GPTModelProvider, model_class: str | None = None) -> MegatronMappingRegistry:
        """The table for the model ``provider`` builds: :meth:`mapping_registry` (GPTModel names), or for HybridModel
        the same table read through :mod:`bridge.hybrid`'s layout map. ``model_class`` ("gpt"/"hybrid") overrides
        the provider's resolved class (a saved layout says which one its names follow)."""
        from bridge.hybrid import HybridMappingRegistry

        table = self.mapping_registry(provider)
        if (model_class or provider.resolved_model_class()) == "hybrid":
            return HybridMappingRegistry(table)
        return table

    def mapping_context(self, provider: GPTModelProvider) -> MappingContext:
        return MappingContext(
            num_attention_heads=provider.num_attention_heads,
            num_query_groups=provider.query_groups,
            head_dim=provider.head_dim,
            vocab_size=provider.vocab_size,
            make_vocab_size_divisible_by=provider.vocab_padding.divisible_by,  # 1 unless should_pad_vocab
        )

    def export_config(self, hf_config: Any) -> dict[str, Any]:
        """The ``config.json`` written on export."""
        return hf_config.to_dict() if hasattr(hf_config, "to_dict") else dict(hf_config)

    @classmethod
    def requirements(cls, model_class: str = "gpt") -> list[Requirements]:
        """What this family needs from MCore to build ``model_class`` (``"gpt"``: GPTModel, ``"hybrid"``:
        HybridModel), derived by running its provider on its configs (one :class:`~bridge.requirements.Variant`
        per config)."""
        configs = cls.representative_configs()
        usages = [(name, provider_usage(cls().provider_bridge(c), model_class))
                  for name, c in zip(variant_names(configs), configs)]
        req = derive_requirements(cls.family or cls.architecture, usages, model_class)
        return [req] if req is not None else []

    # -- registration -------------------------------------------------------------------------
    @staticmethod
    def register_bridge(*, source: type | HFClass | str, target: type | str = "GPTModel") -> Callable[[B], B]:
        """Class decorator registering a family bridge for an HF class (or its lazy :class:`HFClass`) or an
        architecture string."""
        hf_class: Any
        if isinstance(source, HFClass):
            arch, hf_class, how = source.name, _LazyClass(source), "type"
        elif isinstance(source, str):
            arch, hf_class, how = source, None, "string"
            if not source.isidentifier():
                raise MappingError(f"architecture string must be a class name like 'LlamaForCausalLM', found {source!r}")
        elif isinstance(source, type):
            arch, hf_class, how = source.__name__, source, "type"
        else:
            raise MappingError(f"source must be an HF model class or an architecture string, found {source!r}")
        target_name = target if isinstance(target, str) else target.__name__

        def decorate(cls: B) -> B:
            if not (isinstance(cls, type) and issubclass(cls, MegatronModelBridge)):
                raise MappingError(f"register_bridge decorates MegatronModelBridge subclasses, found {cls!r}")
            if arch in _BY_ARCH and _BY_ARCH[arch] is not cls:
                raise MappingError(
                    f"architecture {arch!r} is already registered to {_BY_ARCH[arch].__name__}; "
                    f"cannot also register {cls.__name__}"
                )
            cls.architecture, cls.hf_class, cls.target, cls.registration = arch, hf_class, target_name, how
            _BY_ARCH[arch] = cls
            log.debug("registered %s for %s (%s registration, target %s)", cls.__name__, arch, how, target_name)
            return cls

        return decorate


def _load_families() -> None:
    import bridge.models  # noqa: F401 - registers every family


def registered_architectures() -> list[str]:
    _load_families()
    return sorted(_BY_ARCH)


def registered_bridges() -> list[type[MegatronModelBridge]]:
    _load_families()
    return [_BY_ARCH[a] for a in sorted(_BY_ARCH)]


def all_requirements(model_class: str = "gpt") -> list[Requirements]:
    """Requirements of every registered family on ``model_class`` (``"gpt"``, ``"hybrid"``), sorted by family
    name (read by the harness)."""
    reqs: list[Requirements] = []
    for bridge_cls in registered_bridges():
        reqs.extend(bridge_cls.requirements(model_class))
    return sorted(reqs, key=lambda r: r.family)


def bridge_for_architectures(architectures: list[str] | None, *, source: str = "") -> type[MegatronModelBridge]:
    """The bridge registered for the first known name in ``architectures``."""
    _load_families()
    archs = list(architectures or [])
    for arch in archs:
        if arch in _BY_ARCH:
            return _BY_ARCH[arch]
    supported = sorted(_BY_ARCH)
    where = f" in {source}" if source else ""
    if not archs:
        raise UnsupportedModelError(
            f"expected config.architectures{where} to name a model class, found none; supported: {supported}"
        )
    close = difflib.get_close_matches(archs[0], supported, n=1, cutoff=0.5)
    hint = f" The closest supported name is {close[0]!r}." if close else ""
    raise UnsupportedModelError(
        f"no bridge is registered for architecture {', '.join(map(repr, archs))}{where}. "
        f"Supported architectures: {', '.join(supported)}.{hint} "
        "Register one with @MegatronModelBridge.register_bridge(source=...) (see docs/adding-a-model.md)."
    )
