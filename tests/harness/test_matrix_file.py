"""harness.matrix_file: the schema-2 tables (pack_entry / unpack_entry as a pair), the file layout,
schema-1 files still loading, damaged indices refused, and a size guard on a synthetic matrix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.matrix import SCHEMA_VERSION, Matrix, load_matrix
from harness.matrix_file import TABLES, Tables, pack_entry, unpack_entry

_TEXT = st.text(alphabet="abcdeé✅ \"\\\n", max_size=12)


def warnings_lists(*, max_distinct: int = 4, max_size: int = 8) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Lists drawn from a few distinct warnings (so repeats are common), some with the same keys in another order."""
    one = st.fixed_dictionaries({"category": st.sampled_from(["UserWarning", "DeprecationWarning"]),
                                 "message": _TEXT, "filename": _TEXT, "lineno": st.integers(0, 3)})
    reordered = one.map(lambda w: dict(reversed(list(w.items()))))
    return st.lists(st.one_of(one, reordered), min_size=1, max_size=max_distinct).flatmap(
        lambda pool: st.lists(st.sampled_from(pool), max_size=max_size))


def entries(*, max_platforms: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """A cell or revision as the matrix holds it: maybe a provenance, maybe dynamic entries per platform."""
    provenances = st.dictionaries(st.sampled_from(["source", "platform", "merged_from"]), _TEXT, max_size=3)
    dynamic = st.fixed_dictionaries({"status": st.sampled_from(["passed", "failed"])},
                                    optional={"warnings": warnings_lists(), "provenance": provenances})
    return st.fixed_dictionaries(
        {"status": st.sampled_from(["supported", "missing"])},
        optional={"provenance": provenances,
                  "dynamic": st.dictionaries(st.sampled_from(["cpu", "gpu"]), dynamic, max_size=max_platforms)})


def _exact(value: Any) -> str:
    """JSON text keeping key order: equal only if the structures match key for key, in order."""
    return json.dumps(value)


@given(batch=st.lists(entries(), max_size=6))
def test_unpack_inverts_pack_exactly(batch):
    tables = Tables()
    packed = [pack_entry(e, tables) for e in batch]
    data = json.loads(json.dumps(tables.to_json()))  # through the file's text
    again = Tables.from_json(data, "test")
    assert [_exact(unpack_entry(json.loads(json.dumps(p)), again, "test")) for p in packed] == [_exact(e) for e in batch]
    for name in TABLES:  # each distinct value once
        texts = [_exact(v) for v in data[name]]
        assert len(texts) == len(set(texts))


def _synthetic(n_rows: int = 30, n_revs: int = 20, n_warnings: int = 12) -> Matrix:
    """A matrix whose every cell was probed on cpu and gpu and reports the same long warnings."""
    warnings = [{"category": "DeprecationWarning", "message": f"option {i} is deprecated and will be removed " * 4,
                 "filename": f"megatron/core/module_{i}.py", "lineno": i} for i in range(n_warnings)]
    m = Matrix()
    m.revisions = [{"spec": f"pypi:0.{v}.0", "kind": "pypi", "version": f"0.{v}.0", "commit": None, "error": None,
                    "notes": [], "dynamic": {p: {"tests": {}, "warnings": warnings, "provenance": {"source": "probes"}}
                                             for p in ("cpu", "gpu")}} for v in range(n_revs)]
    m.rows = [{"name": f"row{r}", "kind": "feature", "description": ""} for r in range(n_rows)]
    for r in range(n_rows):
        for v in range(n_revs):
            m.cells[(f"row{r}", f"pypi:0.{v}.0")] = {
                "status": "supported", "missing": [], "renamed": {}, "details": "",
                "provenance": {"source": "static", "generated_at": "2026-01-01T00:00:00+00:00", "tool_version": "0"},
                "dynamic": {p: {"status": "passed", "details": "1 test(s) passed", "warnings": warnings[v % 3:],
                                "provenance": {"source": "probes", "platform": p}} for p in ("cpu", "gpu")},
            }
    return m


def test_warnings_round_trip_through_the_file(tmp_path):
    m = _synthetic(n_rows=4, n_revs=5)
    m.cells[("row0", "pypi:0.1.0")]["dynamic"]["cpu"]["warnings"].append(dict(m.revisions[0]["dynamic"]["cpu"]
                                                                              ["warnings"][0]))  # a repeat
    path = tmp_path / "matrix.json"
    m.save(path)
    back = load_matrix(path)
    for key, cell in m.cells.items():
        for platform, dyn in cell["dynamic"].items():
            assert _exact(back.cells[key]["dynamic"][platform]["warnings"]) == _exact(dyn["warnings"])
    assert back.revisions == m.revisions and back.cells == m.cells
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert len(data["tables"]["warnings"]) == 12 and len(data["tables"]["provenance"]) == 4
    assert all(isinstance(i, int) for c in data["cells"] for d in c["dynamic"].values() for i in d["warnings"])
    line = next(x for x in path.read_text().splitlines() if '"row": "row1", "revision": "pypi:0.2.0"' in x)
    assert json.loads(line.rstrip(",")) == data["cells"][7]  # one cell, one line


def test_loaded_entries_share_nothing():
    back = Matrix.from_json(_synthetic(n_rows=2, n_revs=2).to_json())
    a, b = back.cells[("row0", "pypi:0.0.0")], back.cells[("row1", "pypi:0.0.0")]
    a["provenance"]["merged_from"] = "x.json"
    a["dynamic"]["cpu"]["warnings"][0]["lineno"] = 99
    assert "merged_from" not in b["provenance"] and b["dynamic"]["cpu"]["warnings"][0]["lineno"] == 0


def test_size_guard_on_a_synthetic_matrix():
    """Each distinct warning and provenance is stored once: the file stays near its size without warnings."""
    m = _synthetic()
    text = m.dumps()
    refs = sum(len(d["warnings"]) for c in m.cells.values() for d in c["dynamic"].values()) \
        + sum(len(d["warnings"]) for r in m.revisions for d in r["dynamic"].values())
    bare = Matrix.from_json(m.to_json())
    for entry in [*bare.cells.values(), *bare.revisions]:
        for dyn in entry["dynamic"].values():
            dyn["warnings"] = []
    distinct = len(json.dumps(m.revisions[0]["dynamic"]["cpu"]["warnings"]))
    assert len(text) <= len(bare.dumps()) + distinct + 4 * refs  # an index is at most 4 characters (", 11")
    inline = len(json.dumps({**m.to_json(), "cells": [{"row": r, "revision": s, **c} for (r, s), c in m.cells.items()]}))
    assert len(text) * 10 < inline  # schema 1 repeated every warning in every cell


def test_schema_1_files_still_load(tmp_path):
    m = _synthetic(n_rows=2, n_revs=2)
    v1 = {"schema_version": 1, "tool": "mcore-compat", "tool_version": "0", "generated_at": "",
          "revisions": m.revisions, "rows": m.rows, "renames": [],
          "cells": [{"row": r, "revision": s, **c} for (r, s), c in m.cells.items()]}
    (tmp_path / "old.json").write_text(json.dumps(v1, indent=1))
    back = load_matrix(tmp_path / "old.json")
    assert back.cells == m.cells and back.revisions == m.revisions
    back.save(tmp_path / "new.json")
    assert json.loads((tmp_path / "new.json").read_text())["schema_version"] == 2
    assert load_matrix(tmp_path / "new.json").cells == m.cells


@pytest.mark.parametrize("damage, match", [
    (lambda d: d["cells"][0]["dynamic"]["cpu"]["warnings"].append(12), r"tables\['warnings'\] \(0..11\), found 12"),
    (lambda d: d["cells"][1].update(provenance="0"), r"index into tables\['provenance'\].*found '0'"),
    (lambda d: d["tables"].pop("warnings"), r"expected \"tables\" with the lists"),
    (lambda d: d.pop("tables"), r"expected \"tables\" with the lists"),
])
def test_damaged_files_are_refused_with_the_fix(tmp_path, damage, match):
    data = _synthetic(n_rows=2, n_revs=2).to_json()
    damage(data)
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(HarnessError, match=match) as exc:
        load_matrix(tmp_path / "m.json")
    assert "regenerate it with `mcore-compat matrix`" in str(exc.value)
