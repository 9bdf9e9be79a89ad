"""Which names a configuration may set, and the errors for names it may not.

Every override, whether given to :class:`~bridge.config.model.ModelConfig`, to
:meth:`~bridge.config.container.ConfigContainer.with_overrides` or to a recipe, is checked
here *before* anything is built:

* a field of a config section (``training``, ``optimizer``, ``checkpoint``, ``parallelism``)
  goes to that section;
* a model field is a field of the family's provider (``GPTModelProvider`` and subclasses) or a
  field of the installed MCore's ``TransformerConfig`` (or the provider's config subclass,
  e.g. ``MLATransformerConfig``), new names of known renames included;
* a field another MCore release has (per ``bridge/data/field_history.json``) is an
  :class:`~bridge.errors.UnsupportedFeatureError` naming the installed version and the first
  release with it (or the new name of a rename), from :mod:`bridge.compat`;
* anything else is an :class:`UnknownFieldError` listing the closest names (difflib).

MCore is reached only through :mod:`bridge.compat` (``compat.config_fields`` etc. are looked up
at call time, so the installed release can be simulated in tests).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from bridge import compat
from bridge.errors import ConfigError

__all__ = [
    "PARALLELISM_OWNED",
    "UnknownFieldError",
    "check_model_fields",
    "known_in_other_release",
    "model_field_names",
    "route_overrides",
    "unknown_field_error",
]

# Model fields that the parallelism section owns: setting them through ``model`` is refused,
# so that one layout is described in one place.
PARALLELISM_OWNED: frozenset[str] = frozenset({
    "tensor_model_parallel_size",
    "pipeline_model_parallel_size",
    "virtual_pipeline_model_parallel_size",
    "context_parallel_size",
    "expert_model_parallel_size",
    "expert_tensor_parallel_size",
    "sequence_parallel",
})

# Provider fields that are not model settings (set through ModelConfig's own fields).
_PROVIDER_INTERNAL = frozenset({"config_overrides", "transformer_layer_spec", "config_class"})


class UnknownFieldError(ConfigError):
    """A configuration name exists in no section, no provider and no MCore release."""


def _provider_fields(provider_cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(provider_cls)) - _PROVIDER_INTERNAL


def model_field_names(provider_cls: type, config_class: str = "TransformerConfig") -> frozenset[str]:
    """Names a model override may use with the installed MCore (provider + config fields + renames)."""
    renames_new = {new for new, old in compat.renames_new_to_old().items() if old in compat.config_fields(config_class)}
    return _provider_fields(provider_cls) | compat.config_fields(config_class) | renames_new


def known_in_other_release(name: str) -> bool:
    """Whether the field history knows ``name`` (as a field of some release, or a renamed name)."""
    history = compat.field_history()
    return name in history.get("fields", {}) or name in history.get("renames", {})


def unknown_field_error(name: str, candidates: Iterable[str], *, where: str,
                        config_class: str = "TransformerConfig") -> ConfigError:
    """The error for a name that ``where`` does not accept.

    A name another MCore release has gives compat's version-aware error; otherwise the closest
    of ``candidates`` are suggested.
    """
    if name in compat.config_fields(config_class):
        return UnknownFieldError(
            f"{where} has no field {name!r}: it is a model field ({config_class}); "
            f"set it through the model (override 'model.{name}')"
        )
    if known_in_other_release(name):
        return compat.missing_field_error(name, config_class)  # the one shared message
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else "; no known field has a similar name."
    return UnknownFieldError(
        f"{where} has no field {name!r} (checked against megatron-core {compat.installed_version()}){hint}"
    )


def check_model_fields(names: Iterable[str], provider_cls: type, config_class: str = "TransformerConfig") -> None:
    """Raise for the first name a model override may not use (see the module docstring)."""
    allowed = model_field_names(provider_cls, config_class)
    for name in names:
        if name in PARALLELISM_OWNED:
            raise ConfigError(
                f"{name!r} belongs to the parallelism section; set it with "
                f"ParallelismConfig({name}=...) or the override 'parallelism.{name}', not through model"
            )
        if name not in allowed:
            raise unknown_field_error(
                name, allowed, where=f"the model ({provider_cls.__name__} / {config_class})", config_class=config_class
            )


def route_overrides(
    overrides: Mapping[str, Any],
    sections: Mapping[str, type],
    model_fields: frozenset[str],
    *,
    provider_cls: type,
    config_class: str = "TransformerConfig",
) -> dict[str, dict[str, Any]]:
    """Split flat overrides into ``{section: {field: value}}``.

    A key is ``"section.field"`` or a bare ``field``: bare keys go to the one section that has
    the field, else to ``model`` when it is a model field. Section field names are disjoint
    (a test checks it), so bare keys are never ambiguous.
    """
    section_fields = {s: frozenset(f.name for f in dataclasses.fields(cls)) for s, cls in sections.items()}
    out: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if section:
            if section == "model":
                check_model_fields([name], provider_cls, config_class)
            elif section not in section_fields:
                raise UnknownFieldError(
                    f"override {key!r}: no section {section!r}; sections are "
                    f"{', '.join(['model', *section_fields])}"
                )
            elif name not in section_fields[section]:
                raise unknown_field_error(name, section_fields[section], where=f"section {section!r}",
                                          config_class=config_class)
        else:
            owners = [s for s, names in section_fields.items() if name in names]
            if owners:
                section = owners[0]
            elif name in model_fields:
                section = "model"
                check_model_fields([name], provider_cls, config_class)
            else:
                everything = set(model_fields).union(*section_fields.values())
                raise unknown_field_error(name, everything, where="the configuration", config_class=config_class)
        out.setdefault(section, {})[name] = value
    return out
