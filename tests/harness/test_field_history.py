"""harness.field_history: spans, gaps and renames; and the committed bridge/data file."""

from __future__ import annotations

import json

from harness.field_history import FIELD_HISTORY_PATH, build_field_history
from harness.renames import Rename
from harness.versions import RELEASES, project_root


def f() -> dict:
    return {"type": "int", "default": "0", "declared_in": "TransformerConfig"}


def test_spans_gaps_and_renames():
    snaps = [("0.1.0", {}), ("0.2.0", {"a": f(), "old": f()}), ("0.3.0", {"a": f(), "new": f()}),
             ("0.4.0", {"new": f()}), ("0.5.0", {"a": f(), "new": f()})]
    hist = build_field_history(snaps, [Rename("old", "new", "0.3.0")])
    assert hist["releases"] == ["0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0"]
    assert hist["fields"]["a"] == {"first": "0.2.0", "last": None, "absent_in": ["0.4.0"], "renamed_to": None,
                                   "renamed_from": None, "declared_in": "TransformerConfig"}
    assert hist["fields"]["old"]["last"] == "0.2.0" and hist["fields"]["old"]["renamed_to"] == "new"
    assert hist["fields"]["new"]["renamed_from"] == "old"
    assert hist["renames"] == {"old": "new"}


def test_committed_field_history_is_consistent():
    path = project_root() / FIELD_HISTORY_PATH
    data = json.loads(path.read_text())
    assert data["releases"] == list(RELEASES)
    fields = data["fields"]
    assert fields["attention_backend"]["first"] == "0.11.0" and fields["attention_backend"]["last"] is None
    assert fields["moe_extended_tp"]["last"] == "0.16.1"
    assert fields["first_pipeline_num_layers"]["renamed_to"] == "num_layers_in_first_pipeline_stage"
    assert fields["tensor_model_parallel_size"]["declared_in"] == "ModelParallelConfig"
