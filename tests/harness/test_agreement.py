"""harness.agreement: a static verdict against the probes, per platform and per cell (the most alarming wins).

Folding and merging exercise it on whole matrices (tests/harness/probes/test_fold.py); these pin the rules.
"""

from __future__ import annotations

import pytest

from harness.agreement import AGREEMENTS, NOT_COMPARED, platform_agreement, reassess_cell, settle_agreement

REV = {"spec": "pypi:0.16.1", "version": "0.16.1"}


def dyn(status: str, details: str = "") -> dict:
    return {"status": status, "details": details or status}


@pytest.mark.parametrize(("static", "status", "expected"), [
    ("supported", "passed", "agree"),
    ("renamed", "passed", "agree"),
    ("missing", "failed", "agree"),
    ("missing", "error", "agree"),  # missing predicts anything but a pass
    ("supported", "failed", "disagree"),
    ("missing", "passed", "disagree"),
])
def test_a_static_verdict_predicts_pass_or_not(static, status, expected):
    assert platform_agreement("gqa", REV, static, dyn(status), "cpu") == (expected, None)


@pytest.mark.parametrize("static", NOT_COMPARED)
def test_unreadable_or_unchecked_statics_and_skipped_probes_are_not_compared(static):
    assert platform_agreement("gqa", REV, static, dyn("failed"), "cpu") == (None, None)
    assert platform_agreement("gqa", REV, "supported", dyn("skipped"), "cpu") == (None, None)


def test_a_known_disagreement_is_explained_with_its_reason():
    failed = dyn("failed", "v0: UnsupportedFeatureError: sliding window attention needs 0.15")
    agreement, reason = platform_agreement("mistral", {"version": "0.13.0"}, "supported", failed, "cpu")
    assert agreement == "explained" and "sliding-window attention" in reason


def test_the_cell_shows_its_most_alarming_platform_and_drops_stale_keys():
    cell = {"status": "supported", "agreement": "agree", "explanation": "stale",
            "dynamic": {"cpu": dyn("passed"), "gpu": dyn("failed")}}
    reassess_cell("gqa", REV, cell)
    assert (cell["dynamic"]["cpu"]["agreement"], cell["dynamic"]["gpu"]["agreement"]) == ("agree", "disagree")
    assert cell["agreement"] == max(AGREEMENTS, key=AGREEMENTS.index) == "disagree" and "explanation" not in cell
    cell["dynamic"] = {"cpu": {"status": "skipped", "agreement": None}}
    settle_agreement(cell)
    assert "agreement" not in cell


PARTIAL_VARIANTS = {"v0(base)": {"status": "supported", "missing": [], "renamed": {}},
                    "v1(tied)": {"status": "renamed", "missing": [], "renamed": {"a": "b"}},
                    "v2(rope_scaling)": {"status": "missing", "missing": ["field:TransformerConfig.rope_scaling"],
                                         "renamed": {}}}


def partial_dyn(status: str, **variants: str) -> dict:
    return {**dyn(status), "variants": variants} if variants else dyn(status)


@pytest.mark.parametrize(("probes", "expected"), [
    (partial_dyn("failed", v0="passed", v1="passed", v2="failed"), "agree"),  # exactly the blocked variant failed
    (partial_dyn("failed", v0="failed", v1="passed", v2="passed"), "disagree"),  # both 'partial', another variant
    (partial_dyn("failed", v0="failed", v1="passed", v2="failed"), "disagree"),  # one more failed than predicted
    (partial_dyn("passed", v0="passed", v1="passed", v2="passed"), "disagree"),  # the blocked variant runs
    (partial_dyn("failed"), "agree"),  # no per-variant record (older results): anything but a pass agrees
    (partial_dyn("passed"), "disagree"),
])
def test_a_partial_verdict_is_compared_variant_by_variant(probes, expected):
    assert platform_agreement("llama", REV, "partial", probes, "cpu", PARTIAL_VARIANTS) == (expected, None)


def test_reassessing_a_partial_cell_uses_its_variants():
    cell = {"status": "partial", "variants": PARTIAL_VARIANTS,
            "dynamic": {"cpu": partial_dyn("failed", v0="failed", v1="passed", v2="passed")}}
    reassess_cell("llama", REV, cell)
    assert cell["agreement"] == "disagree"
    cell["dynamic"]["cpu"] = partial_dyn("failed", v0="passed", v1="passed", v2="failed")
    reassess_cell("llama", REV, cell)
    assert cell["agreement"] == "agree"
