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
