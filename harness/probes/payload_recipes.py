"""``recipes``: :func:`bridge.config.recipes.check_all_recipes` on the imported MCore, one row per family.

Each recipe builds its ``ConfigContainer``, MCore ``TransformerConfig`` and ``OptimizerConfig`` on CPU
(no model). A recipe's family is its flagship's (recipe ``<flagship>_pretrain``; ``FLAGSHIP_FAMILIES``);
a family's row passes when all of its recipes do.
"""

from __future__ import annotations

from harness.probes.payload_common import FAILED, PASSED, Outcome, Row

__all__ = ["probe_recipes", "recipe_families"]

_SUFFIX = "_pretrain"


def recipe_families() -> dict[str, str]:
    """``{recipe name: family}`` for every recipe in :data:`bridge.config.recipes.RECIPES`."""
    from bridge.config.flagships import FLAGSHIP_FAMILIES
    from bridge.config.recipes import RECIPES

    out = {}
    for recipe in RECIPES:
        flagship = recipe.removesuffix(_SUFFIX)
        assert flagship in FLAGSHIP_FAMILIES, f"recipe {recipe!r} is named after no flagship config"
        out[recipe] = FLAGSHIP_FAMILIES[flagship]
    return out


def probe_recipes() -> Outcome:
    from bridge.config.recipes import check_all_recipes

    results = check_all_recipes()
    by_family: dict[str, dict[str, str]] = {}
    for recipe, family in recipe_families().items():
        by_family.setdefault(family, {})[recipe] = results[recipe]
    rows = {}
    for family, recipes in sorted(by_family.items()):
        bad = {r: msg for r, msg in recipes.items() if msg != "ok"}
        metrics = {"recipes": len(recipes), "recipes_ok": len(recipes) - len(bad)}
        if bad:
            rows[family] = Row(FAILED, "; ".join(f"{r}: {msg}" for r, msg in bad.items()), metrics)
        else:
            rows[family] = Row(PASSED, f"{', '.join(recipes)}: container, TransformerConfig and "
                                       "OptimizerConfig build", metrics)
    return Outcome(rows)
