"""harness.features: every feature is well formed, and a few verdicts on real releases."""

from __future__ import annotations

import pytest

from harness.checks import CHECK_KINDS, parse_check
from harness.features import FEATURES, feature_by_name
from harness.requirements import row_for_feature
from harness.verdicts import evaluate


def test_features_are_unique_and_parse():
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    for f in FEATURES:
        assert f.requires or f.any_of
        for check in (*f.checks(), *(c for g in f.groups() for c in g)):
            assert check.kind in CHECK_KINDS and str(parse_check(str(check))) == str(check)


@pytest.mark.parametrize("text", ["field", "nope:x", "field:"])
def test_malformed_checks(text):
    with pytest.raises(ValueError):
        parse_check(text)


def test_unknown_feature_lists_known_ones():
    with pytest.raises(KeyError, match="moe"):
        feature_by_name("warp_drive")


@pytest.mark.parametrize(("feature", "absent_in", "present_in"), [
    ("attention_backend", "0.10.0", "0.11.0"),
    ("pipeline_layout", "0.11.0", "0.13.0"),
    ("mtp", "0.11.0", "0.13.0"),
    ("softmax_type", "0.13.0", "0.16.1"),
])
def test_feature_appears(feature, absent_in, present_in, pypi_scans):
    row = row_for_feature(feature_by_name(feature))
    assert evaluate(row, pypi_scans[absent_in]).status == "missing"
    assert evaluate(row, pypi_scans[present_in]).status == "supported"


def test_any_of_accepts_either_generation_of_names(pypi_scans):
    row = row_for_feature(feature_by_name("uneven_pipeline"))
    assert evaluate(row, pypi_scans["0.10.0"]).status == "supported"  # first_pipeline_num_layers
    assert evaluate(row, pypi_scans["0.11.0"]).status == "supported"  # num_layers_in_first_pipeline_stage
