"""What the bridge's families need from MCore, as lists of :mod:`harness.checks`.

Families come from :func:`bridge.registry.all_requirements` (derived from the
providers, never hand-kept here; imported lazily because ``bridge`` pulls in torch). Until the bridge registers families this is empty and
the matrix only has feature rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.checks import Check
from harness.features import FEATURES, Feature
from harness.introspect import CONFIG_CLASS

if TYPE_CHECKING:  # importing bridge pulls torch: only when families are asked for
    from bridge.requirements import Requirements

__all__ = ["Row", "VariantRow", "family_requirements", "requirement_rows", "row_for_feature", "row_for_requirements"]

log = logging.getLogger("harness.requirements")


@dataclass(frozen=True)
class VariantRow:
    """One variant of a family (a representative config): the checks it needs on its own."""

    name: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class Row:
    """One matrix row: a family or a feature, with the checks that decide it.

    ``renames`` are pairs ``(name_used, other_name)`` a compat layer is known to translate.
    A family's ``variants`` split ``checks`` (their union) per representative config, so a
    revision where only some variants run gets a ``partial`` verdict.
    """

    name: str
    kind: str  # "family" | "feature"
    description: str
    checks: tuple[Check, ...]
    any_of: tuple[tuple[Check, ...], ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    variants: tuple[VariantRow, ...] = ()


def _checks(config_class: str, fields: Iterable[str], params: Iterable[str], specs: Iterable[str],
            modules: Iterable[str]) -> list[Check]:
    checks: list[Check] = [Check("class", config_class)]
    checks += [Check("field", f, config_class) for f in sorted(fields)]
    checks += [Check("gpt_param", p) for p in sorted(params)]
    checks += [Check("layer_spec", f) for f in sorted(specs)]
    checks += [Check("module", m) for m in sorted(modules)]
    return checks


def family_requirements() -> list[Requirements]:
    """The bridge's registered families ([] while none is registered or the registry is absent)."""
    try:
        from bridge.registry import all_requirements

        return all_requirements()
    except ImportError as exc:  # bridge.registry not written yet
        log.info("no bridge families available (%s); the matrix has feature rows only", exc)
        return []


def row_for_requirements(req: Requirements) -> Row:
    """Checks of one family: its config class, fields, GPTModel kwargs, layer specs, modules."""
    cls = req.config_class or CONFIG_CLASS
    checks = _checks(cls, req.config_fields, req.gpt_model_params, req.layer_spec_functions, req.modules)
    variants = tuple(
        VariantRow(v.name, tuple(_checks(cls, v.config_fields, v.gpt_model_params,
                                         req.layer_spec_functions | v.layer_spec_functions, req.modules)))
        for v in req.variants
    )
    return Row(
        name=req.family, kind="family", description=f"bridge family {req.family} ({cls})",
        checks=tuple(checks), renames=tuple(req.renames), variants=variants if len(variants) > 1 else (),
    )


def row_for_feature(feature: Feature) -> Row:
    return Row(name=feature.name, kind="feature", description=feature.description,
               checks=feature.checks(), any_of=feature.groups())


def requirement_rows(families: Sequence[Requirements] | None = None,
                     features: Sequence[Feature] = FEATURES) -> list[Row]:
    """Family rows (sorted by name) followed by feature rows (in :data:`FEATURES` order)."""
    fams = family_requirements() if families is None else list(families)
    return [row_for_requirements(r) for r in sorted(fams, key=lambda r: r.family)] + [
        row_for_feature(f) for f in features
    ]
