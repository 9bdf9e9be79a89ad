"""harness.matrix and harness.availability: build, JSON round trip, merge, error cells."""

from __future__ import annotations

import json

import pytest

from bridge.requirements import Requirements
from harness.availability import availability
from harness.errors import HarnessError
from harness.features import feature_by_name
from harness.matrix import SCHEMA_VERSION, Matrix, build_matrix, load_matrix, merge_matrices
from harness.requirements import requirement_rows


@pytest.fixture(scope="module")
def rows():
    family = Requirements(family="demo", config_fields=frozenset({"num_layers", "attention_backend"}))
    return requirement_rows([family], [feature_by_name("mtp"), feature_by_name("moe")])


@pytest.fixture(scope="module")
def matrix(pypi_scans, introspector, synthetic_repo, rows):
    broken = introspector.introspect("git:broken", repo=str(synthetic_repo))
    intros = [*pypi_scans.values(), broken]
    return build_matrix(intros, rows)


def test_cells_and_revisions(matrix, release_repo):
    assert [r["name"] for r in matrix.rows] == ["demo", "mtp", "moe"]
    assert matrix.cell("demo", "pypi:0.10.0")["status"] == "missing"
    assert matrix.cell("demo", "pypi:0.10.0")["missing"] == ["field:attention_backend"]
    assert matrix.cell("demo", "pypi:0.11.0")["status"] == "supported"
    rev = next(r for r in matrix.revisions if r["spec"] == "pypi:0.13.0")
    assert rev["commit"] == "c550cf6c41c31cd3ec72e05c25ea0c979f2b6631" and rev["version"] == "0.13.0"


def test_unparsable_revision_is_an_error_column(matrix):
    cell = matrix.cell("moe", "git:broken")
    assert cell["status"] == "error" and "transformer_config.py" in cell["details"]
    assert next(r for r in matrix.revisions if r["spec"] == "git:broken")["error"]


def test_json_round_trip(matrix, tmp_path):
    matrix.save(tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["tool"] == "mcore-compat"
    assert {"row", "revision", "status", "missing", "renamed", "details", "provenance"} <= set(data["cells"][0])
    again = load_matrix(tmp_path / "m.json")
    assert again.to_json() == matrix.to_json()


def test_other_schema_is_refused(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"schema_version": 99, "tool": "mcore-compat", "cells": []}))
    with pytest.raises(HarnessError, match="schema_version"):
        load_matrix(tmp_path / "m.json")
    (tmp_path / "n.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "fields": {}}))
    with pytest.raises(HarnessError, match="written by mcore-compat"):
        load_matrix(tmp_path / "n.json")


def test_merge_later_wins_and_keeps_provenance(matrix):
    other = Matrix.from_json(matrix.to_json())
    other.cells[("moe", "pypi:0.10.0")] = {"status": "fail", "missing": [], "renamed": {},
                                           "details": "probe failed", "provenance": {"source": "gpu-run"}}
    other.revisions.append({"spec": "pypi:0.19.2", "kind": "pypi", "version": "0.19.2", "commit": None,
                            "error": None, "notes": []})
    other.cells[("moe", "pypi:0.19.2")] = {"status": "supported", "missing": [], "renamed": {},
                                           "details": "", "provenance": {"source": "static"}}
    merged = merge_matrices([("a.json", matrix), ("b.json", other)])
    assert merged.cell("moe", "pypi:0.10.0")["status"] == "fail"
    assert merged.cell("moe", "pypi:0.10.0")["provenance"] == {"source": "gpu-run", "merged_from": "b.json"}
    assert merged.cell("mtp", "pypi:0.10.0")["provenance"]["merged_from"] == "b.json"
    assert [r["spec"] for r in merged.revisions][-1] == "pypi:0.19.2"
    reverse = merge_matrices([("b.json", other), ("a.json", matrix)])
    assert reverse.cell("moe", "pypi:0.10.0")["status"] == "supported"
    assert reverse.cell("moe", "pypi:0.19.2")["provenance"]["merged_from"] == "b.json"  # only b has it


def test_availability_first_release_and_disappearance(matrix):
    found = {a.row: a for a in availability(matrix, ("feature", "family"))}
    assert found["mtp"].first == "0.13.0" and found["mtp"].removed_in == () and found["mtp"].latest
    assert found["demo"].first == "0.11.0"
    m = Matrix.from_json(matrix.to_json())
    m.cells[("mtp", "pypi:0.16.1")] = {**m.cells[("mtp", "pypi:0.16.1")], "status": "missing"}
    again = {a.row: a for a in availability(m)}["mtp"]
    assert again.removed_in == ("0.16.1",) and again.returned_in == ("0.17.0",)
