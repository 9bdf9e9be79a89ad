"""``bridge/data/field_history.json``: the release span of every ``TransformerConfig`` field.

The bridge reads it (as data) for version-aware errors such as "field X needs
megatron-core >= 0.13.0, installed 0.8.0". Format::

    {"schema_version": 1, "generated_at": "...", "releases": ["0.1.0", ...],
     "renames": {"old": "new"},
     "fields": {"name": {"first": "0.13.0", "last": null, "absent_in": [],
                          "renamed_to": null, "renamed_from": null, "declared_in": "TransformerConfig"}}}

``last`` is the last release that has the field, or null when the newest scanned release
still has it; ``absent_in`` lists releases between ``first`` and ``last`` that lack it.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.cache import atomic_write_text
from harness.renames import Rename

__all__ = ["FIELD_HISTORY_PATH", "build_field_history", "write_field_history"]

FIELD_HISTORY_PATH = Path("bridge/data/field_history.json")


def build_field_history(snapshots: Sequence[tuple[str, dict[str, dict[str, Any]]]],
                        renames: Iterable[Rename]) -> dict[str, Any]:
    """From ``(release, fields)`` snapshots, oldest first (releases without fields included)."""
    releases = [v for v, _ in snapshots]
    rename_map = {r.old: r.new for r in renames}
    reverse = {new: old for old, new in rename_map.items()}
    fields: dict[str, dict[str, Any]] = {}
    for version, snap in snapshots:
        for name, info in snap.items():
            entry = fields.setdefault(name, {"first": version, "seen": []})
            entry["seen"].append(version)
            entry["declared_in"] = info.get("declared_in")
    latest = releases[-1] if releases else None
    out_fields: dict[str, Any] = {}
    for name in sorted(fields):
        seen = fields[name]["seen"]
        span = releases[releases.index(seen[0]): releases.index(seen[-1]) + 1]
        out_fields[name] = {
            "first": seen[0],
            "last": None if seen[-1] == latest else seen[-1],
            "absent_in": [v for v in span if v not in seen],
            "renamed_to": rename_map.get(name),
            "renamed_from": reverse.get(name),
            "declared_in": fields[name]["declared_in"],
        }
    return {
        "schema_version": 1,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "releases": releases,
        "renames": dict(sorted(rename_map.items())),
        "fields": out_fields,
    }


def write_field_history(history: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(history, indent=1) + "\n")
