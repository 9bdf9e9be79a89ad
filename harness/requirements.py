"""What the bridge's families need from MCore, as lists of :mod:`harness.checks`.

Families come from :func:`bridge.registry.all_requirements` (derived from the
providers, never hand-kept here; imported lazily because ``bridge`` pulls in torch). A bridge that does not
import is an error that says why (a matrix without its family rows would read as "nothing supported").

Each family has one row per model class the bridge builds (:data:`MODEL_CLASS_ROWS`): ``llama`` (GPTModel)
and ``hybrid:llama`` (HybridModel, the provider's ``model_class="hybrid"``), each with the requirements the
bridge derives for that class; the ``hybrid:<family>`` probe tests report on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.checks import Check
from harness.errors import HarnessError
from harness.features import FEATURES, Feature
from harness.introspect import CONFIG_CLASS, MODEL_CLASSES

if TYPE_CHECKING:  # importing bridge pulls torch: only when families are asked for
    from bridge.requirements import Requirements

__all__ = ["MODEL_CLASS_ROWS", "Row", "VariantRow", "family_requirements", "family_row_name", "requirement_rows",
           "row_for_feature", "row_for_requirements"]


MODEL_CLASS_ROWS: dict[str, str] = {"gpt": "{family}", "hybrid": "hybrid:{family}"}
"""The row of a family on each model class (``"gpt"``: the family's name, as before model classes)."""


def family_row_name(family: str, model_class: str = "gpt") -> str:
    """``llama`` / ``hybrid:llama``: the matrix row (and probe row) of ``family`` on ``model_class``."""
    return MODEL_CLASS_ROWS[model_class].format(family=family)


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
    revision where only some variants run gets a ``partial`` verdict. ``model_class`` (``"gpt"``,
    ``"hybrid"``; None for features about no model class) is the MCore model class the row builds: its
    cells carry that class's deprecation notice where a revision's source announces one.
    """

    name: str
    kind: str  # "family" | "feature"
    description: str
    checks: tuple[Check, ...]
    any_of: tuple[tuple[Check, ...], ...] = ()
    renames: tuple[tuple[str, str], ...] = ()
    variants: tuple[VariantRow, ...] = ()
    model_class: str | None = None

    @property
    def model_class_name(self) -> str | None:
        """``GPTModel`` / ``HybridModel`` (None: the row is about no model class)."""
        return MODEL_CLASSES.get(self.model_class or "")


def _checks(config_class: str, fields: Iterable[str], params: Iterable[str], specs: Iterable[str],
            modules: Iterable[str], hybrid_params: Iterable[str] = ()) -> list[Check]:
    checks: list[Check] = [Check("class", config_class)]
    checks += [Check("field", f, config_class) for f in sorted(fields)]
    checks += [Check("gpt_param", p) for p in sorted(params)]
    checks += [Check("hybrid_param", p) for p in sorted(hybrid_params)]
    checks += [Check("layer_spec", f) for f in sorted(specs)]
    checks += [Check("module", m) for m in sorted(modules)]
    return checks


def family_requirements(model_class: str = "gpt") -> list[Requirements]:
    """The bridge's registered families on ``model_class``.

    Raises:
        HarnessError: the bridge's registry does not import (a missing dependency such as torch, a broken
            install); the message names the import error and how to fix it.
    """
    try:
        from bridge.registry import all_requirements
    except ImportError as exc:
        raise HarnessError(
            f"the family rows come from the bridge, but bridge.registry does not import ({type(exc).__name__}: "
            f"{exc}); expected mcore-compat installed with its dependencies (pip install mcore-compat, or "
            "pip install -e . in a checkout, which brings torch and transformers)"
        ) from exc
    return all_requirements(model_class)


def row_for_requirements(req: Requirements) -> Row:
    """Checks of one family: its config class, fields, GPTModel kwargs, layer specs, modules."""
    cls = req.config_class or CONFIG_CLASS
    model_class = req.model_class
    hybrid = req.hybrid_model_params
    checks = _checks(cls, req.config_fields, req.gpt_model_params, req.layer_spec_functions, req.modules, hybrid)
    variants = tuple(
        VariantRow(v.name, tuple(_checks(cls, v.config_fields, v.gpt_model_params,
                                         req.layer_spec_functions | v.layer_spec_functions, req.modules,
                                         v.hybrid_model_params)))
        for v in req.variants
    )
    return Row(
        name=family_row_name(req.family, model_class), kind="family",
        description=f"bridge family {req.family} on {MODEL_CLASSES[model_class]} ({cls})",
        checks=tuple(checks), renames=tuple(req.renames), variants=variants if len(variants) > 1 else (),
        model_class=model_class,
    )


def row_for_feature(feature: Feature) -> Row:
    return Row(name=feature.name, kind="feature", description=feature.description,
               checks=feature.checks(), any_of=feature.groups(), model_class=feature.model_class)


def requirement_rows(families: Sequence[Requirements] | None = None,
                     features: Sequence[Feature] = FEATURES) -> list[Row]:
    """Family rows, GPTModel ones then HybridModel ones (each sorted by family), followed by feature rows (in
    :data:`FEATURES` order). ``families`` given: exactly those requirements (of any model class)."""
    fams = ([*family_requirements("gpt"), *family_requirements("hybrid")] if families is None else list(families))
    order = list(MODEL_CLASS_ROWS)
    fams.sort(key=lambda r: (order.index(r.model_class), r.family))
    return [row_for_requirements(r) for r in fams] + [row_for_feature(f) for f in features]
