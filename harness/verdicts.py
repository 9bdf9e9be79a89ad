"""Static verdicts: does a revision provide what a family or feature needs?

=============  ===========================================================================
``supported``  every check holds
``renamed``    only fields are missing, and each has a known or detected other name that
               the revision has (the compat layer translates it)
``partial``    a family with variants (its bridge's representative configs): some variants
               run (supported or renamed), others lack something; ``variants`` says which
``missing``    something is absent: ``missing`` lists the exact checks
``error``      the revision could not be read or parsed (``details`` says why)
=============  ===========================================================================

A ``partial`` cell keeps ``missing`` (every check some variant lacks) and adds
``variants``: ``{name: {"status": "supported"|"renamed"|"missing", "missing": [...],
"renamed": {...}}}``, in the family's variant order.

A row about a model class (a family on ``GPTModel`` or ``HybridModel``, the ``gpt_model`` feature) gets
``deprecated``, the notice the revision's source gives for that class (0.19's ``GPTModel IS DEPRECATED ...``),
whatever its status: deprecated is a marker on the verdict, not a status (the class still works).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.checks import Check, check_satisfied
from harness.introspect import MODEL_CLASS_PATHS, Introspection
from harness.renames import RenameTable
from harness.requirements import Row

__all__ = ["RUNS", "STATUSES", "Verdict", "evaluate", "judge_checks"]

STATUSES = ("supported", "renamed", "partial", "missing", "error")

RUNS = ("supported", "renamed")
"""Statuses under which a row (or a variant) runs at a revision."""


@dataclass(frozen=True)
class Verdict:
    status: str
    missing: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    details: str = ""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    deprecated: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "missing": list(self.missing), "renamed": dict(self.renamed),
                               "details": self.details}
        if self.variants:
            out["variants"] = {name: dict(v) for name, v in self.variants.items()}
        if self.deprecated:
            out["deprecated"] = self.deprecated
        return out


def _module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _missing(checks: Sequence[Check], intro: Introspection) -> list[Check]:
    return [c for c in checks if not check_satisfied(c, intro)]


def _rename_for(check: Check, intro: Introspection, table: RenameTable) -> str | None:
    if check.kind != "field":
        return None
    fields = intro.config_fields(check.config_class)
    if fields is None:
        return None
    return next((alias for alias in table.aliases(check.name) if alias in fields), None)


def judge_checks(checks: Sequence[Check], intro: Introspection, table: RenameTable,
                 any_of: Sequence[Sequence[Check]] = ()) -> tuple[list[str], dict[str, str]]:
    """``(checks still missing, {field: the other name this revision has})`` of one set of checks."""
    missing = _missing(checks, intro)
    absent_classes = {c.name for c in missing if c.kind == "class"}
    hybrid_absent = Check("module", _module_of(MODEL_CLASS_PATHS["HybridModel"])) in missing
    # the fields of an absent config class (the parameters of an absent HybridModel) are implied by it
    missing = [c for c in missing if not (c.kind == "field" and c.config_class in absent_classes)
               and not (c.kind == "hybrid_param" and hybrid_absent)]
    if any_of:
        options = [_missing(group, intro) for group in any_of]
        missing += min(options, key=len)
    renamed: dict[str, str] = {}
    still: list[str] = []
    for check in missing:
        alias = _rename_for(check, intro, table)
        if alias is None:
            still.append(str(check))
        else:
            renamed[check.name] = alias
    return still, renamed


def _status(still: Sequence[str], renamed: dict[str, str]) -> str:
    return "missing" if still else "renamed" if renamed else "supported"


def _partial(row: Row, intro: Introspection, table: RenameTable, still: list[str],
             renamed: dict[str, str]) -> Verdict | None:
    """The ``partial`` verdict of a family whose variants do not all run here (None: none runs)."""
    per = {v.name: judge_checks(v.checks, intro, table) for v in row.variants}
    runs = [name for name, (s, _) in per.items() if not s]
    if not runs:
        return None
    blocked = [f"{name} needs {', '.join(s)}" for name, (s, _) in per.items() if s]
    details = f"{len(runs)}/{len(per)} variants run ({', '.join(runs)}); " + "; ".join(blocked)
    variants = {name: {"status": _status(s, r), "missing": list(s), "renamed": dict(r)} for name, (s, r) in per.items()}
    return Verdict("partial", tuple(still), renamed, details, variants)


def evaluate(row: Row, intro: Introspection, renames: RenameTable | None = None) -> Verdict:
    """The verdict of ``row`` at the revision ``intro`` describes (with the model class's deprecation notice)."""
    verdict = _judge(row, intro, renames)
    cls = intro.model_class(row.model_class_name) if row.model_class_name and not intro.error else None
    if cls and cls.get("deprecation"):
        return dataclasses.replace(verdict, deprecated=str(cls["deprecation"]))
    return verdict


def _judge(row: Row, intro: Introspection, renames: RenameTable | None) -> Verdict:
    if intro.error:
        return Verdict("error", details=intro.error)
    table = (renames or RenameTable()).with_pairs(row.renames)
    still, renamed = judge_checks(row.checks, intro, table, row.any_of)
    if still and row.variants:
        partial = _partial(row, intro, table, still, renamed)
        if partial is not None:
            return partial
    if still:
        details = f"missing {len(still)}: {', '.join(still)}"
        if renamed:
            details += "; renamed: " + ", ".join(f"{k} -> {v}" for k, v in renamed.items())
        return Verdict("missing", tuple(still), renamed, details)
    if renamed:
        pairs = ", ".join(f"{k} is {v} here" for k, v in renamed.items())
        return Verdict("renamed", (), renamed, f"renamed fields: {pairs}")
    total = len(row.checks) + (min(len(g) for g in row.any_of) if row.any_of else 0)
    return Verdict("supported", details=f"all {total} checks hold")
