"""Upstream ``main`` as a first-class revision: resolved to one commit, labelled ``main@<sha>``, and
compared with the newest release (which fields, ``GPTModel`` parameters and rows changed).

The commit is resolved once (``git:<sha>``, never ``git:main``), so every job of a fanned-out sweep
and every report names the same tree even when main moves during the run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.diff import diff_introspections
from harness.introspect import Introspection
from harness.renames import RenameTable
from harness.requirements import Row
from harness.revisions import Revision, resolve_revision
from harness.versions import version_key

__all__ = ["MAIN_REF", "changes_since_release", "label_main", "main_label", "newest_release", "resolve_main"]

MAIN_REF = "main"


def resolve_main(repo: str | None, *, cache_dir: Path | None = None, ref: str = MAIN_REF) -> Revision:
    """``ref`` (default ``main``) of ``repo`` (None: the submodule) as a ``git:<sha>`` revision.

    Raises:
        RevisionError: the repository is unreachable or has no such branch (with the closest refs).
    """
    rev = resolve_revision(f"git:{ref}", repo=repo, cache_dir=cache_dir)
    assert rev.commit is not None, rev
    return replace(rev, spec=f"git:{rev.commit}", ref=rev.commit)


def main_label(commit: str, ref: str = MAIN_REF) -> str:
    """The column label of a main commit: ``main@1a2b3c4`` (``dev@1a2b3c4`` for a branch ``dev``; a ref that is
    itself a commit, as CI passes the one it resolved first, labels as main)."""
    name = MAIN_REF if re.fullmatch(r"[0-9a-f]{7,40}", ref) else ref
    return f"{name}@{commit[:7]}"


def newest_release(intros: Sequence[Introspection]) -> Introspection | None:
    """The readable ``pypi:`` revision with the highest version (None: none)."""
    released = [i for i in intros if i.revision.kind == "pypi" and not i.error and i.revision.version]
    return max(released, key=lambda i: version_key(str(i.revision.version)), default=None)


def changes_since_release(release: Introspection, main: Introspection, rows: Sequence[Row],
                          renames: RenameTable | None = None) -> dict[str, Any]:
    """What a bridge user sees change from ``release`` to ``main``: fields, classes, ``GPTModel`` parameters,
    layer specs and the rows (families, features) whose verdict changed."""
    diff = diff_introspections(release, main, rows, renames)
    tc = diff["transformer_config"]
    return {
        "since": release.revision.spec,
        "since_version": release.revision.version,
        "fields_added": sorted(tc["added"]),
        "fields_removed": sorted(tc["removed"]),
        "defaults_changed": sorted(tc["default_changed"]),
        "classes_changed": {cls: {"added": sorted(ch["added"]), "removed": sorted(ch["removed"])}
                            for cls, ch in diff["subclasses"].items() if ch["added"] or ch["removed"]},
        "gpt_model_params_added": sorted(diff["gpt_model_params"]["added"]),
        "gpt_model_params_removed": sorted(diff["gpt_model_params"]["removed"]),
        "layer_specs_added": sorted(diff["layer_specs"]["added"]),
        "layer_specs_removed": sorted(diff["layer_specs"]["removed"]),
        "rows": [{"row": v["row"], "kind": v["kind"], "from": v["from"]["status"], "to": v["to"]["status"],
                  "details": v["to"]["details"]} for v in diff["verdicts"]],
    }


def label_main(revisions: list[dict[str, Any]], main: Revision, changes: dict[str, Any] | None,
               ref: str = MAIN_REF) -> None:
    """Give the matrix's entry of ``main`` its label (``main@<sha>``) and its changes since the newest release."""
    for entry in revisions:
        if entry["spec"] == main.spec:
            entry["label"] = main_label(str(main.commit), ref)
            if changes is not None:
                entry["changes_since_release"] = changes
