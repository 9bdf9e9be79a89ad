"""The conformance suite covers every registered family: a new family fails here until it is added."""

from __future__ import annotations

from bridge.models import FAMILIES as REGISTERED
from tests.conformance.families import CASES, EXCLUDED, FAMILIES


def test_every_registered_family_runs_the_guide() -> None:
    listed = {f.name for f in FAMILIES}
    missing = sorted(set(REGISTERED) - listed - set(EXCLUDED))
    assert not missing, (f"registered families missing from tests/conformance/families.py: {missing}; add a "
                         "Family with the tiny config of tests/bridge/models/test_<family>.py (or, with a reason, "
                         "to EXCLUDED)")
    assert not listed - set(REGISTERED), f"unknown families listed: {sorted(listed - set(REGISTERED))}"
    assert not listed & set(EXCLUDED) and all(EXCLUDED.values()), "an exclusion needs a reason and no entry"


def test_each_family_runs_untied_and_tied_where_it_allows() -> None:
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)
    assert {(f.name, t) for f, t in CASES} == {(f.name, t) for f in FAMILIES for t in (False, True) if f.tied or not t}
