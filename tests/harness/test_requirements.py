"""harness.requirements: the family rows come from the bridge, and a bridge that does not import says so."""

from __future__ import annotations

import sys

import pytest

from harness.errors import HarnessError
from harness.requirements import family_requirements, requirement_rows


def test_family_rows_come_from_the_bridge_registry():
    from bridge.registry import all_requirements

    assert [r.family for r in family_requirements("gpt")] == [r.family for r in all_requirements("gpt")]
    assert {row.name for row in requirement_rows() if row.kind == "family"} >= {"llama", "hybrid:llama"}


def test_a_bridge_that_does_not_import_is_an_error_not_an_empty_matrix(monkeypatch):
    monkeypatch.setitem(sys.modules, "bridge.registry", None)  # what `import bridge.registry` meets when it is broken
    with pytest.raises(HarnessError, match=r"bridge\.registry does not import \(ModuleNotFoundError: .*\); "
                                           r"expected mcore-compat installed with its dependencies"):
        family_requirements("gpt")
    with pytest.raises(HarnessError):
        requirement_rows()
