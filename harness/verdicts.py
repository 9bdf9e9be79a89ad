"""Static verdicts: does a revision provide what a family or feature needs?

=============  ===========================================================================
``supported``  every check holds
``renamed``    only fields are missing, and each has a known or detected other name that
               the revision has (the compat layer translates it)
``missing``    something is absent: ``missing`` lists the exact checks
``error``      the revision could not be read or parsed (``details`` says why)
=============  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.checks import Check, check_satisfied
from harness.introspect import Introspection
from harness.renames import RenameTable
from harness.requirements import Row

__all__ = ["STATUSES", "Verdict", "evaluate"]

STATUSES = ("supported", "renamed", "missing", "error")


@dataclass(frozen=True)
class Verdict:
    status: str
    missing: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    details: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "missing": list(self.missing), "renamed": dict(self.renamed),
                "details": self.details}


def _missing(checks: tuple[Check, ...], intro: Introspection) -> list[Check]:
    return [c for c in checks if not check_satisfied(c, intro)]


def _rename_for(check: Check, intro: Introspection, table: RenameTable) -> str | None:
    if check.kind != "field":
        return None
    fields = intro.config_fields(check.config_class)
    if fields is None:
        return None
    return next((alias for alias in table.aliases(check.name) if alias in fields), None)


def evaluate(row: Row, intro: Introspection, renames: RenameTable | None = None) -> Verdict:
    """The verdict of ``row`` at the revision ``intro`` describes."""
    if intro.error:
        return Verdict("error", details=intro.error)
    table = (renames or RenameTable()).with_pairs(row.renames)
    missing = _missing(row.checks, intro)
    absent_classes = {c.name for c in missing if c.kind == "class"}
    # the fields of an absent config class are implied by the class itself
    missing = [c for c in missing if not (c.kind == "field" and c.config_class in absent_classes)]
    if row.any_of:
        options = [_missing(group, intro) for group in row.any_of]
        missing += min(options, key=len)
    renamed: dict[str, str] = {}
    still: list[str] = []
    for check in missing:
        alias = _rename_for(check, intro, table)
        if alias is None:
            still.append(str(check))
        else:
            renamed[check.name] = alias
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
