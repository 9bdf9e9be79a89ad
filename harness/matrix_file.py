"""matrix.json on disk (schema 2): shared tables of repeated values, one entry per line.

The probes report the same few warnings (and the same provenance stamps) in hundreds of cells, so
the file stores each distinct value once, in ``data["tables"][name]``, and entries refer to it by
index; :func:`pack_entry` and :func:`unpack_entry` are the pair (the in-memory
:class:`harness.matrix.Matrix` only ever holds the expanded values). What is interned, in a
revision or a cell (``*`` is a platform)::

    provenance                    -> index into tables["provenance"]
    dynamic.*.provenance          -> index into tables["provenance"]
    dynamic.*.warnings[i]         -> index into tables["warnings"]

Values are compared as JSON with their key order, so unpacking gives back every cell's list
exactly (order, duplicates and keys included). :func:`dumps` writes every list item of the top
level (and of ``tables``) on its own line: a cell is one greppable, diffable line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import HarnessError

__all__ = ["TABLES", "Tables", "dumps", "pack_entry", "unpack_entry"]

TABLES = ("warnings", "provenance")
"""The tables of a schema-2 matrix.json, in file order."""

_REGENERATE = "regenerate it with `mcore-compat matrix` (it keeps the probe results of the matrix.json it replaces)"


@dataclass
class Tables:
    """The interning tables: each distinct value once (mutable while packing)."""

    values: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in TABLES})
    _index: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def intern(self, table: str, value: Any) -> int:
        """The index of ``value`` in ``table`` (appended when new)."""
        key = (table, json.dumps(value))
        if key not in self._index:
            self._index[key] = len(self.values[table])
            self.values[table].append(value)
        return self._index[key]

    def lookup(self, table: str, index: Any, where: str) -> Any:
        """A fresh copy of entry ``index`` of ``table``; HarnessError when there is none."""
        entries = self.values[table]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(entries):
            raise HarnessError(
                f"{where}: expected an index into tables[{table!r}] (0..{len(entries) - 1}), found {index!r}; "
                f"the file is damaged, {_REGENERATE}"
            )
        return _copy(entries[index])

    def to_json(self) -> dict[str, list[Any]]:
        return {name: list(self.values[name]) for name in TABLES}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Tables:
        """Raises HarnessError unless ``data`` maps every table name to a list."""
        if not isinstance(data, Mapping) or not all(isinstance(data.get(name), list) for name in TABLES):
            raise HarnessError(
                f"{where}: expected \"tables\" with the lists {list(TABLES)}, found "
                f"{sorted(data) if isinstance(data, Mapping) else type(data).__name__}; {_REGENERATE}"
            )
        return cls(values={name: list(data[name]) for name in TABLES})


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (entries must not share objects: merging edits a cell's provenance in place)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def pack_entry(entry: Mapping[str, Any], tables: Tables) -> dict[str, Any]:
    """``entry`` (a revision or a cell) with its provenances and warnings replaced by indices into ``tables``."""
    out = dict(entry)
    if "provenance" in out:
        out["provenance"] = tables.intern("provenance", out["provenance"])
    if isinstance(out.get("dynamic"), Mapping):
        out["dynamic"] = {platform: _pack_dynamic(dyn, tables) for platform, dyn in out["dynamic"].items()}
    return out


def _pack_dynamic(dyn: Any, tables: Tables) -> Any:
    if not isinstance(dyn, Mapping):
        return dyn
    out = dict(dyn)
    if "provenance" in out:
        out["provenance"] = tables.intern("provenance", out["provenance"])
    if isinstance(out.get("warnings"), list):
        out["warnings"] = [tables.intern("warnings", w) for w in out["warnings"]]
    return out


def unpack_entry(entry: Mapping[str, Any], tables: Tables, where: str) -> dict[str, Any]:
    """The inverse of :func:`pack_entry`; HarnessError on an index that ``tables`` lacks."""
    out = dict(entry)
    if "provenance" in out:
        out["provenance"] = tables.lookup("provenance", out["provenance"], f"{where}: provenance")
    if isinstance(out.get("dynamic"), Mapping):
        out["dynamic"] = {platform: _unpack_dynamic(dyn, tables, f"{where}: {platform}")
                          for platform, dyn in out["dynamic"].items()}
    return out


def _unpack_dynamic(dyn: Any, tables: Tables, where: str) -> Any:
    if not isinstance(dyn, Mapping):
        return dyn
    out = dict(dyn)
    if "provenance" in out:
        out["provenance"] = tables.lookup("provenance", out["provenance"], f"{where}: provenance")
    if "warnings" in out:
        if not isinstance(out["warnings"], list):
            raise HarnessError(f"{where}: expected \"warnings\" to be a list of indices, found "
                               f"{type(out['warnings']).__name__}; the file is damaged, {_REGENERATE}")
        out["warnings"] = [tables.lookup("warnings", i, f"{where}: warnings") for i in out["warnings"]]
    return out


def dumps(data: Mapping[str, Any]) -> str:
    """JSON text of a packed matrix: top-level keys one per line, each list item (and table entry) on its own line."""
    def block(value: Any, pad: str) -> str:
        if isinstance(value, list) and value:
            return "[\n" + ",\n".join(f"{pad} {json.dumps(v)}" for v in value) + f"\n{pad}]"
        if isinstance(value, Mapping) and value and all(isinstance(v, list) for v in value.values()):
            return "{\n" + ",\n".join(f"{pad} {json.dumps(k)}: {block(v, pad + ' ')}" for k, v in value.items()) \
                + f"\n{pad}}}"
        return json.dumps(value)

    return "{\n" + ",\n".join(f" {json.dumps(k)}: {block(v, ' ')}" for k, v in data.items()) + "\n}\n"
