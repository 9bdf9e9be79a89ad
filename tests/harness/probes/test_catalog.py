"""The probe catalog names one test per family and the shared tests, each with the rows it informs."""

from __future__ import annotations

import pytest

from bridge.models import FAMILIES
from harness.features import FEATURES
from harness.probes import catalog
from harness.probes.payload_recipes import recipe_families


def test_every_registered_family_has_its_test_and_its_row() -> None:
    assert catalog.family_names() == tuple(sorted(FAMILIES))
    for family in FAMILIES:
        test = catalog.test_by_name(f"family:{family}")
        assert test.rows == (family,)
        assert test.family == family


def test_shared_tests_cover_the_feature_and_recipe_rows() -> None:
    names = catalog.test_names()
    assert len(names) == len(set(names))
    assert names[0] == "import" and {"features", "recipes", "properties", "tp2", "pp2"} <= set(names)
    assert catalog.test_by_name("features").rows == tuple(f.name for f in FEATURES)
    assert set(catalog.test_by_name("recipes").rows) == set(recipe_families().values())
    assert set(catalog.test_by_name("recipes").rows) <= set(FAMILIES)


def test_multiprocess_flags_and_budgets() -> None:
    for test in catalog.TESTS:
        assert test.timeout_s > 0 and set(test.devices) <= {"cpu", "cuda"}
        assert test.multiprocess == (test.name in ("tp2", "pp2"))
        assert test.family is None or test.name.startswith("family:")


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: import, family:"):
        catalog.test_by_name("family:gpt5")
