"""What each bridge family needs from MCore, derived from what the bridge actually does.

The harness reads these (through :func:`bridge.registry.all_requirements`) to decide, without importing
MCore, whether a revision supports a family. Nothing here is a hand-kept list: every
set is computed by running the family's provider on its representative HF configs and
recording the ``TransformerConfig`` keyword arguments, ``GPTModel`` keyword arguments
and layer-spec functions it would use. Per model class (``"gpt"``: ``GPTModel``, ``"hybrid"``: ``HybridModel``,
the provider's ``model_class``): the model-class module comes from :data:`bridge.compat.MODEL_CLASS_SOURCES`
(the same table the named features ``gpt_model`` / ``hybrid_model`` import from) and the hybrid build's own
modules and ``HybridModel`` arguments from :mod:`bridge.hybrid_model`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NOISE_KEYS", "ProviderUsage", "Requirements", "Variant", "derive_requirements", "model_class_modules",
           "provider_usage", "variant_names"]

GPT_MODEL_MODULE = "megatron.core.models.gpt.gpt_model"

NOISE_KEYS = frozenset({"transformers_version", "architectures", "_name_or_path", "dtype", "torch_dtype"})
"""Keys of an HF ``config.to_dict()`` that say nothing about the architecture (left out of variant names)."""


@dataclass(frozen=True)
class ProviderUsage:
    """The MCore API one provider (one HF config) uses; see :class:`Requirements` for the fields."""

    config_class: str
    config_fields: frozenset[str]
    optional_config_fields: frozenset[str]
    gpt_model_params: frozenset[str]
    layer_spec_functions: frozenset[str]
    hybrid_model_params: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Variant:
    """One representative config of a family and the MCore API it uses on its own.

    ``name`` is how the config differs from the family's first one (``v0(base)``,
    ``v2(rope_parameters)``: :func:`variant_names`, the same names the harness's probes report).
    """

    name: str
    config_fields: frozenset[str]
    gpt_model_params: frozenset[str] = frozenset()
    layer_spec_functions: frozenset[str] = frozenset()
    hybrid_model_params: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Requirements:
    """MCore API one family (or feature) uses.

    Attributes:
        family: family or feature name, e.g. ``"llama"`` or ``"llama:rope_scaling"``.
        config_fields: ``TransformerConfig`` (or subclass) fields the provider sets to a value
            that needs the field (anything but ``None``/``False``).
        optional_config_fields: fields it sets to ``None``/``False`` (switched off); a release
            without them is fine, :mod:`bridge.compat` drops them.
        config_class: the config class the provider instantiates (``TransformerConfig``
            or e.g. ``MLATransformerConfig``).
        gpt_model_params: keyword arguments passed to ``GPTModel.__init__`` (``model_class`` ``"gpt"``).
        hybrid_model_params: keyword arguments passed to ``HybridModel.__init__`` (``model_class``
            ``"hybrid"``).
        model_class: the MCore model class these requirements are for (``"gpt"`` or ``"hybrid"``).
        layer_spec_functions: functions of ``models/gpt/gpt_layer_specs.py`` it calls.
        modules: dotted MCore modules it imports (e.g. ``megatron.core.transformer.moe``).
        renames: optional known renames ``{new_name: old_name}`` the compat layer handles.
        variants: per representative config, what it uses (the sets above are their union);
            the harness gives a family ``partial`` where only some variants run.
    """

    family: str
    config_fields: frozenset[str]
    config_class: str = "TransformerConfig"
    optional_config_fields: frozenset[str] = frozenset()
    gpt_model_params: frozenset[str] = frozenset()
    layer_spec_functions: frozenset[str] = frozenset()
    modules: frozenset[str] = frozenset()
    renames: tuple[tuple[str, str], ...] = field(default=())
    variants: tuple[Variant, ...] = ()
    hybrid_model_params: frozenset[str] = frozenset()
    model_class: str = "gpt"


def provider_usage(provider: Any, model_class: str = "gpt") -> ProviderUsage:
    """What ``provider`` (a :class:`bridge.providers.GPTModelProvider`) passes to MCore: fields set to a value
    that needs them, fields switched off (``None``/``False``), ``GPTModel`` arguments (``model_class="hybrid"``:
    ``HybridModel`` arguments instead), layer-spec functions (the hybrid stack is cut from the GPT layer spec)."""
    from bridge.compat import is_switched_off

    fields: set[str] = set()
    optional: set[str] = set()
    for name, value in provider.transformer_config_kwargs().items():
        (optional if is_switched_off(value) else fields).add(name)
    specs = frozenset({"get_gpt_layer_local_spec"} if provider.transformer_layer_spec is None else ())
    if model_class == "hybrid":
        from bridge.hybrid_model import HYBRID_MODEL_ARGUMENTS, hybrid_model_kwargs

        hybrid = {k for k, v in hybrid_model_kwargs(provider).items() if not is_switched_off(v)}
        return ProviderUsage(provider.config_class, frozenset(fields), frozenset(optional), frozenset(), specs,
                             frozenset(hybrid) | frozenset(HYBRID_MODEL_ARGUMENTS))
    params = frozenset(k for k, v in provider.gpt_model_kwargs().items() if not is_switched_off(v))
    return ProviderUsage(provider.config_class, frozenset(fields), frozenset(optional), params, specs)


def model_class_modules(model_class: str) -> frozenset[str]:
    """The MCore modules building ``model_class`` (``"gpt"``, ``"hybrid"``) imports: the class's own module
    (:data:`bridge.compat.MODEL_CLASS_SOURCES`) and, for HybridModel, the local hybrid stack's."""
    from bridge.compat import MODEL_CLASS_SOURCES

    if model_class not in MODEL_CLASS_SOURCES:
        raise ValueError(f"model_class must be one of {sorted(MODEL_CLASS_SOURCES)}, found {model_class!r}")
    modules = {MODEL_CLASS_SOURCES[model_class][0]}
    if model_class == "hybrid":
        from bridge.hybrid_model import HYBRID_BUILD_MODULES

        modules |= set(HYBRID_BUILD_MODULES)
    return frozenset(modules)


def variant_names(configs: Sequence[Any]) -> list[str]:
    """``v{i}(keys that differ from the first config)`` per HF config (``v0(base)`` for the first)."""
    dicts = [{k: v for k, v in c.to_dict().items() if k not in NOISE_KEYS} for c in configs]
    names = []
    for i, d in enumerate(dicts):
        differs = sorted(k for k in set(d) | set(dicts[0]) if d.get(k) != dicts[0].get(k))
        shown = ",".join(differs[:3]) + ("..." if len(differs) > 3 else "")
        names.append(f"v{i}" + (f"({shown})" if shown else "(base)" if i == 0 else ""))
    return names


def derive_requirements(family: str, usages: Iterable[tuple[str, ProviderUsage]], model_class: str = "gpt"
                        ) -> Requirements | None:
    """A family's requirements on ``model_class`` from its ``(variant name, usage)`` pairs (None: no config sets
    any field)."""
    pairs = list(usages)
    fields = frozenset().union(*(u.config_fields for _, u in pairs))
    if not fields:
        return None
    optional = frozenset().union(*(u.optional_config_fields for _, u in pairs))
    return Requirements(
        family=family,
        config_fields=fields,
        optional_config_fields=optional - fields,
        config_class=pairs[-1][1].config_class,
        gpt_model_params=frozenset().union(*(u.gpt_model_params for _, u in pairs)),
        layer_spec_functions=frozenset().union(*(u.layer_spec_functions for _, u in pairs)),
        modules=model_class_modules(model_class),
        variants=tuple(Variant(name, u.config_fields, u.gpt_model_params, u.layer_spec_functions,
                               u.hybrid_model_params) for name, u in pairs),
        hybrid_model_params=frozenset().union(*(u.hybrid_model_params for _, u in pairs)),
        model_class=model_class,
    )
