"""harness.renames: renames found in the real releases, and detection rules on synthetic data."""

from __future__ import annotations

from harness.renames import KNOWN_RENAMES, Rename, RenameTable, detect_renames
from harness.scanning import release_snapshots


def test_real_rename_between_0_10_and_0_11_is_detected(pypi_scans):
    snaps = release_snapshots(list(pypi_scans.values()))
    found = {(r.old, r.new, r.release) for r in detect_renames(snaps)}
    assert found == {
        ("first_pipeline_num_layers", "num_layers_in_first_pipeline_stage", "0.11.0"),
        ("last_pipeline_num_layers", "num_layers_in_last_pipeline_stage", "0.11.0"),
    }  # and nothing else: 0.17.0's removals (moe_extended_tp, ...) are not renames
    assert {(r.old, r.new) for r in KNOWN_RENAMES} >= {(o, n) for o, n, _ in found}


def field(type_: str = "int", default: str | None = "0") -> dict:
    return {"type": type_, "default": default, "default_factory": None}


def test_detection_needs_same_type_default_and_similar_name():
    before = {"keep": field(), "ffn_size": field("int", "4"), "dropout_p": field("float", "0.1"),
              "old_flag": field("bool", "False")}
    after = {"keep": field(), "ffn_hidden_size": field("int", "4"), "attention_dropout": field("float", "0.0"),
             "unrelated_switch": field("bool", "False")}
    found = detect_renames([("1", before), ("2", after)])
    assert [(r.old, r.new, r.source) for r in found] == [("ffn_size", "ffn_hidden_size", "detected")]


def test_optional_and_plain_type_count_as_same():
    found = detect_renames([("1", {"first_stage_layers": field("int", "None")}),
                            ("2", {"layers_in_first_stage": field("Optional[int]", "None")})])
    assert [(r.old, r.new) for r in found] == [("first_stage_layers", "layers_in_first_stage")]


def test_one_to_one_best_match():
    found = detect_renames([("1", {"a_first_layers": field(), "a_last_layers": field()}),
                            ("2", {"b_first_layers": field(), "b_last_layers": field()})])
    assert {(r.old, r.new) for r in found} == {("a_first_layers", "b_first_layers"),
                                               ("a_last_layers", "b_last_layers")}


def test_alias_chains_both_ways():
    table = RenameTable([Rename("a", "b"), Rename("b", "c")])
    assert table.aliases("a") == ["b", "c"]
    assert table.aliases("c") == ["b", "a"]
    assert table.with_pairs([("d", "c")]).aliases("d") == ["c", "b", "a"]
