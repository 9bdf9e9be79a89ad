"""``bridge.models._common.require_features``: a release-aware refusal naming every missing compat feature, what
the family uses it for, and the release that brings the fields behind them (per the field history)."""

from __future__ import annotations

import pytest

from bridge import compat
from bridge.errors import UnsupportedFeatureError
from bridge.models._common import require_features


@pytest.fixture
def features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(compat.FEATURES, "zz_absent_a", lambda: False)
    monkeypatch.setitem(compat.FEATURES, "zz_absent_b", lambda: False)
    monkeypatch.setitem(compat.FEATURES, "zz_present", lambda: True)


NEEDS = {"zz_absent_a": "the A piece", "zz_present": "the present piece", "zz_absent_b": "the B piece"}


def test_nothing_missing_is_no_error(features: None) -> None:
    require_features("Fam", {"zz_present": "the present piece"}, fields=("softmax_type",))


def test_every_missing_feature_and_the_newest_first_release_are_named(features: None) -> None:
    # glu_linear_offset and softmax_type arrived in 0.15.0, num_moe_experts long before: the newest wins
    with pytest.raises(UnsupportedFeatureError) as exc:
        require_features("Fam", NEEDS, fields=("num_moe_experts", "softmax_type", "glu_linear_offset"))
    msg = str(exc.value)
    assert msg.startswith("Fam needs the A piece; the B piece, which megatron-core "), msg
    assert "present piece" not in msg and "['zz_absent_a', 'zz_absent_b']" in msg
    assert str(compat.installed_version()) in msg and "pip install 'megatron-core>=0.15.0'" in msg


def test_fields_the_history_does_not_know_leave_the_plain_advice(features: None) -> None:
    with pytest.raises(UnsupportedFeatureError, match=r"lacks .*Upgrade megatron-core\.$"):
        require_features("Fam", NEEDS, fields=("zz_field_from_nowhere",))
