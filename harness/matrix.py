"""The compatibility matrix: rows (families, features) x revisions; JSON is the source of truth.

Schema (``schema_version`` 2)::

    {"schema_version": 2, "tool": "mcore-compat", "tool_version": "...", "generated_at": "ISO",
     "revisions": [{"spec", "kind", "version", "commit", "error", "notes"}],
     "rows": [{"name", "kind", "description", "model_class"?, "variants"?}],
     "renames": [{"old", "new", "release", "source"}],
     "cells": [{"row", "revision", "status", "missing", "renamed", "details", "deprecated"?, "provenance"}],
     "checkpoint_compat"?: [{"family", "writer", "reader", "verdict", ...}],   (harness.ckpt_table)
     "tables": {"warnings": [...], "provenance": [...]}}

A row's ``model_class`` (``gpt`` / ``hybrid``) says which MCore model class a family row (``llama``,
``hybrid:llama``) or feature row is about; a cell's ``deprecated`` is that class's deprecation notice at the
revision (:mod:`harness.verdicts`). Both keys are optional: files without them load (a family row without
``model_class`` is a GPTModel row).

In the file, every ``provenance`` and every probe warning is an index into ``tables`` (each
distinct value stored once; :mod:`harness.matrix_file`); in memory (:class:`Matrix`) they are the
values themselves. Schema 1 files (values inline, no ``tables``) still load.

Cells are keyed by ``(row, revision spec)``; merging several files lets the later file win
per cell, and each cell keeps the ``provenance`` (file / run) it came from.

Dynamic probes (:mod:`harness.probes.fold`) add optional keys, per platform (``cpu``, ``gpu``):
``cell["dynamic"][platform]`` (the probe verdict, its tests and warnings), ``cell["agreement"]``
(``agree`` / ``disagree`` / ``explained``, over every platform; :mod:`harness.agreement`) with
``cell["explanation"]``, and
``revision["dynamic"][platform]`` (versions, test statuses, warnings, timing). A cell that only
the probes report has the static status ``unchecked``. Merging keeps every platform: the
``dynamic`` entries are merged per platform (a later file wins for the platforms it has).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agreement import reassess_cell
from harness.cache import atomic_write_text
from harness.ckpt_table import merge_cells
from harness.errors import HarnessError
from harness.introspect import Introspection
from harness.matrix_file import Tables, pack_entry, unpack_entry
from harness.matrix_file import dumps as dumps_file
from harness.renames import KNOWN_RENAMES, Rename, RenameTable
from harness.requirements import Row
from harness.verdicts import evaluate
from harness.versions import version_key

__all__ = [
    "READABLE_SCHEMAS",
    "SCHEMA_VERSION",
    "Matrix",
    "build_matrix",
    "load_matrix",
    "merge_matrices",
    "tool_version",
]

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
"""Schema versions :meth:`Matrix.from_json` reads (1: values inline; 2: with ``tables``)."""


def tool_version() -> str:
    try:
        return importlib.metadata.version("mcore-compat")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class Matrix:
    """In-memory matrix (mutable while being built or merged; serialise with :meth:`to_json`)."""

    revisions: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    renames: list[dict[str, Any]] = field(default_factory=list)
    generated_at: str = field(default_factory=_now)
    tool_version: str = field(default_factory=tool_version)
    checkpoint_compat: list[dict[str, Any]] = field(default_factory=list)
    """Cross-version checkpoint cells (written by X, read by Y): :mod:`harness.ckpt_table`."""

    def cell(self, row: str, spec: str) -> dict[str, Any] | None:
        return self.cells.get((row, spec))

    def to_json(self) -> dict[str, Any]:
        """The file's JSON (schema :data:`SCHEMA_VERSION`): provenances and warnings as indices into ``tables``.

        Cells are written in row order, then revision order, however the matrix was assembled (a merge of
        per-revision files writes the same file as one sweep over every revision)."""
        tables = Tables()
        revisions = [pack_entry(r, tables) for r in self.revisions]
        cells = [pack_entry({"row": r, "revision": s, **c}, tables) for (r, s), c in self._ordered_cells()]
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": "mcore-compat",
            "tool_version": self.tool_version,
            "generated_at": self.generated_at,
            "revisions": revisions,
            "rows": self.rows,
            "renames": self.renames,
            "cells": cells,
            **({"checkpoint_compat": [pack_entry(c, tables) for c in self.checkpoint_compat]}
               if self.checkpoint_compat else {}),
            "tables": tables.to_json(),
        }

    def _ordered_cells(self) -> list[tuple[tuple[str, str], dict[str, Any]]]:
        rows = {r["name"]: i for i, r in enumerate(self.rows)}
        revs = {r["spec"]: i for i, r in enumerate(self.revisions)}
        return sorted(self.cells.items(), key=lambda kv: (rows.get(kv[0][0], len(rows)), revs.get(kv[0][1], len(revs))))

    @classmethod
    def from_json(cls, data: dict[str, Any], *, origin: str | None = None) -> Matrix:
        """Raises HarnessError on a file of another schema (or with indices its tables lack)."""
        where = origin or "matrix"
        if not isinstance(data, dict) or data.get("tool") != "mcore-compat" or not isinstance(data.get("cells"), list):
            raise HarnessError(
                f"{where}: expected a matrix JSON written by mcore-compat (with \"tool\" and "
                f"\"cells\"), found {type(data).__name__} with keys {sorted(data)[:6] if isinstance(data, dict) else []}"
            )
        version = data.get("schema_version")
        if version not in READABLE_SCHEMAS:
            raise HarnessError(
                f"{where}: expected matrix JSON with schema_version in {READABLE_SCHEMAS}, found {version!r}; "
                "regenerate it with `mcore-compat matrix` (static verdicts) and `mcore-compat sweep` (probes)"
            )
        tables = Tables.from_json(data.get("tables"), where) if version >= 2 else None

        def expand(entry: dict[str, Any], what: str) -> dict[str, Any]:
            _check_dynamic(entry.get("dynamic"), what)
            return unpack_entry(entry, tables, what) if tables is not None else entry

        cells = {}
        for c in data.get("cells", []):
            body = {k: v for k, v in c.items() if k not in ("row", "revision")}
            cells[(c["row"], c["revision"])] = expand(body, f"{where}: cell {c.get('row')} @ {c.get('revision')}")
        revisions = [expand(rev, f"{where}: revision {rev.get('spec')}") for rev in data.get("revisions", [])]
        checkpoint = [expand(c, f"{where}: checkpoint cell {c.get('family')} {c.get('writer')} -> {c.get('reader')}")
                      for c in data.get("checkpoint_compat", [])]
        return cls(revisions=revisions, rows=list(data.get("rows", [])),
                   cells=cells, renames=list(data.get("renames", [])),
                   generated_at=data.get("generated_at", ""), tool_version=data.get("tool_version", ""),
                   checkpoint_compat=checkpoint)

    def dumps(self) -> str:
        """The text of matrix.json (one revision, row, rename, cell or table entry per line)."""
        return dumps_file(self.to_json())

    def save(self, path: Path) -> None:
        atomic_write_text(path, self.dumps())

    def released(self) -> list[dict[str, Any]]:
        """Revisions with a plain release version and no error, by version (one per version)."""
        best: dict[str, dict[str, Any]] = {}
        for r in self.revisions:
            v = r.get("version")
            if r.get("error") or not v or not all(p.isdigit() for p in v.split(".")):
                continue
            if v not in best or r.get("kind") == "pypi":
                best[v] = r
        return [best[v] for v in sorted(best, key=version_key)]


def _check_dynamic(dynamic: Any, where: str) -> None:
    """Raise HarnessError unless ``dynamic`` is absent or ``{platform: {"status"?...}}``."""
    if dynamic is None:
        return
    if not isinstance(dynamic, dict) or not all(isinstance(v, dict) for v in dynamic.values()):
        raise HarnessError(
            f"{where}: expected \"dynamic\" to map a platform (cpu, gpu) to an object, found "
            f"{type(dynamic).__name__ if not isinstance(dynamic, dict) else sorted(dynamic)}; regenerate it with "
            "`mcore-compat sweep`"
        )


def _merge_dynamic(old: dict[str, Any] | None, new: dict[str, Any], origin: str) -> dict[str, Any]:
    """``new`` with ``dynamic`` merged per platform onto ``old``'s (new wins per platform)."""
    merged = dict(new)
    platforms = dict((old or {}).get("dynamic") or {})
    for platform, entry in (new.get("dynamic") or {}).items():
        prov = dict(entry.get("provenance") or {})
        prov["merged_from"] = origin
        platforms[platform] = {**entry, "provenance": prov}
    if platforms:
        merged["dynamic"] = platforms
    return merged


def _revision_entry(intro: Introspection) -> dict[str, Any]:
    rev = intro.revision
    return {"spec": rev.spec, "kind": rev.kind, "version": rev.version, "commit": rev.commit,
            "error": intro.error, "notes": list(intro.notes)}


def _row_entry(row: Row) -> dict[str, Any]:
    """A row of the file; a family with variants lists each variant's checks (what ``partial`` cells and
    ``mcore-compat check`` are judged from)."""
    entry: dict[str, Any] = {"name": row.name, "kind": row.kind, "description": row.description}
    if row.model_class:
        entry["model_class"] = row.model_class
    if row.variants:
        entry["variants"] = {v.name: [str(c) for c in v.checks] for v in row.variants}
    return entry


def build_matrix(intros: Sequence[Introspection], rows: Sequence[Row],
                 renames: Iterable[Rename] = (), *, provenance: str = "static") -> Matrix:
    """Evaluate every row at every revision."""
    table = RenameTable([*KNOWN_RENAMES, *renames])
    matrix = Matrix()
    stamp = {"source": provenance, "generated_at": matrix.generated_at, "tool_version": matrix.tool_version}
    matrix.revisions = [_revision_entry(i) for i in intros]
    matrix.rows = [_row_entry(r) for r in rows]
    matrix.renames = [r.to_json() for r in table.renames]
    for row in rows:
        for intro in intros:
            verdict = evaluate(row, intro, table)
            matrix.cells[(row.name, intro.revision.spec)] = {**verdict.to_json(), "provenance": stamp}
    return matrix


def load_matrix(path: Path) -> Matrix:
    """Raises HarnessError when the file is unreadable or not a matrix."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise HarnessError(f"cannot read matrix {path}: {exc}; expected a matrix.json file") from exc
    return Matrix.from_json(data, origin=str(path))


def merge_matrices(matrices: Sequence[tuple[str, Matrix]]) -> Matrix:
    """Merge ``(origin, matrix)`` pairs in order: later cells win, revisions/rows are unioned.

    Each merged cell's ``provenance`` records the origin it was taken from. ``dynamic`` entries of
    cells and revisions are merged per platform (CPU results from one file, GPU from another both
    stay; a later file wins for a platform both have), and the cell's agreement is recomputed.
    """
    out = Matrix()
    rev_index: dict[str, int] = {}
    row_index: dict[str, int] = {}
    renames: dict[tuple[str, str], dict[str, Any]] = {}
    for origin, m in matrices:
        for rev in m.revisions:
            if rev["spec"] in rev_index:
                i = rev_index[rev["spec"]]
                out.revisions[i] = _merge_dynamic(out.revisions[i], rev, origin)
            else:
                rev = _merge_dynamic(None, rev, origin)
                rev_index[rev["spec"]] = len(out.revisions)
                out.revisions.append(rev)
        for row in m.rows:
            if row["name"] in row_index:
                out.rows[row_index[row["name"]]] = row
            else:
                row_index[row["name"]] = len(out.rows)
                out.rows.append(row)
        for r in m.renames:
            renames[(r["old"], r["new"])] = r
        for key, cell in m.cells.items():
            prov = dict(cell.get("provenance") or {})
            prov["merged_from"] = origin
            out.cells[key] = _merge_dynamic(out.cells.get(key), {**cell, "provenance": prov}, origin)
    out.renames = list(renames.values())
    for _, m in matrices:
        out.checkpoint_compat = merge_cells(out.checkpoint_compat, m.checkpoint_compat)
    revs = {r["spec"]: r for r in out.revisions}
    for (row, spec), cell in out.cells.items():
        if cell.get("dynamic"):  # the static verdict may have changed
            reassess_cell(row, revs.get(spec, {"spec": spec}), cell)
    return out
