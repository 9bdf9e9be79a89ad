"""What changed for bridge users between two revisions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.introspect import Introspection
from harness.renames import RenameTable
from harness.requirements import Row
from harness.verdicts import evaluate

__all__ = ["diff_introspections"]


def _field_changes(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def default(f: dict[str, Any]) -> str | None:
        return f["default"] if f.get("default") is not None else (
            f"factory:{f['default_factory']}" if f.get("default_factory") else None)

    return {
        "added": [f for f in b if f not in a],
        "removed": [f for f in a if f not in b],
        "default_changed": {f: {"from": default(a[f]), "to": default(b[f])}
                            for f in b if f in a and default(a[f]) != default(b[f])},
        "type_changed": {f: {"from": a[f]["type"], "to": b[f]["type"]}
                         for f in b if f in a and a[f]["type"] != b[f]["type"]},
        "declared_in_changed": {f: {"from": a[f].get("declared_in"), "to": b[f].get("declared_in")}
                                for f in b if f in a and a[f].get("declared_in") != b[f].get("declared_in")},
    }


def _added_removed(a: Sequence[str], b: Sequence[str]) -> dict[str, list[str]]:
    return {"added": [x for x in b if x not in a], "removed": [x for x in a if x not in b]}


def diff_introspections(a: Introspection, b: Introspection, rows: Sequence[Row] = (),
                        renames: RenameTable | None = None) -> dict[str, Any]:
    """A JSON-able report of the differences from ``a`` to ``b``."""
    out: dict[str, Any] = {
        "from": {**a.revision.to_json(), "error": a.error},
        "to": {**b.revision.to_json(), "error": b.error},
    }
    out["transformer_config"] = _field_changes(a.transformer_config, b.transformer_config)
    classes = sorted(set(a.subclasses) | set(b.subclasses))
    out["subclasses"] = {
        c: _field_changes(a.subclasses.get(c, {}), b.subclasses.get(c, {}))
        for c in classes if a.subclasses.get(c) != b.subclasses.get(c)
    }
    out["gpt_model_params"] = _added_removed(a.gpt_model_params, b.gpt_model_params)
    specs = _added_removed(list(a.layer_specs), list(b.layer_specs))
    specs["params_changed"] = {
        f: _added_removed(a.layer_specs[f], b.layer_specs[f])
        for f in b.layer_specs if f in a.layer_specs and a.layer_specs[f] != b.layer_specs[f]
    }
    out["layer_specs"] = specs
    out["modules"] = {
        "named": {k: {"from": a.modules.get(k), "to": b.modules.get(k)}
                  for k in sorted(set(a.modules) | set(b.modules)) if a.modules.get(k) != b.modules.get(k)},
        **_added_removed(sorted(a.module_index), sorted(b.module_index)),
    }
    changes = []
    for row in rows:
        va, vb = evaluate(row, a, renames), evaluate(row, b, renames)
        if (va.status, va.missing, va.renamed) != (vb.status, vb.missing, vb.renamed):
            changes.append({"row": row.name, "kind": row.kind, "from": va.to_json(), "to": vb.to_json()})
    out["verdicts"] = changes
    return out
