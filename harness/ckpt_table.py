"""The checkpoint table of the matrix: "checkpoint written by X, read by Y", from ``ckpt_compat`` probe results.

``matrix.checkpoint_compat`` (``"checkpoint_compat"`` in ``matrix.json``) is a list of cells::

    {"family", "writer", "reader", "platform", "verdict", "details", "first_difference"?,
     "bridge"?: {"verdict", "details", "max_abs_diff"?}, "mcore"?: {...}, "hybrid_interop"?: {...},
     "hybrid_migrate"?: {...}, "migrated"?: {...}, "duration_s", "provenance"}

``verdict`` is one of :data:`harness.probes.ckpt_grid.CELL_VERDICTS`. A probe that ran reports one row per
writer (:func:`~harness.probes.ckpt_grid.row_name`) carrying the cell as JSON in its metrics; a probe that
crashed or timed out gives an ``error`` cell for every writer the grid pairs with that reader. A cell is
keyed by (family, writer, reader, platform); a later result replaces an earlier one.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable
from typing import Any

from harness.probes.ckpt_grid import CELL_VERDICTS, parse_row, parse_test, writers_for
from harness.versions import DYNAMIC_RELEASES, version_key

__all__ = ["cell_key", "cells_from_result", "merge_cells", "sorted_cells"]

_PATH_KEYS = ("verdict", "details", "max_abs_diff")


def cell_key(cell: dict[str, Any]) -> tuple[str, str, str, str]:
    return (cell["family"], cell["writer"], cell["reader"], cell.get("platform", "cpu"))


_CACHE_PATH = re.compile(r"(?:/[^\s/'\"]+)*/ckpt_compat/\.?[^\s/'\"]+")
_TMP_PATH = re.compile(r"/tmp/[^\s/'\"]+")


def _short(text: Any) -> str:
    """Details without the cache's staging paths (``.../ckpt_compat/.0.12.1-llama-<key>.<tmp>/mc`` -> ``<entry>/mc``)."""
    return _TMP_PATH.sub("<tmp>", _CACHE_PATH.sub("<entry>", str(text)))


def _path(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict) or entry.get("verdict") not in CELL_VERDICTS:
        return None
    out = {k: entry[k] for k in _PATH_KEYS if k in entry}
    if "details" in out:
        out["details"] = _short(out["details"])[:600]
    return out


def _from_row(family: str, writer: str, reader: str, row: dict[str, Any]) -> dict[str, Any]:
    metrics = row.get("metrics") or {}
    try:
        body = json.loads(metrics.get("cell", "{}"))
    except ValueError:
        body = {}
    verdict = metrics.get("verdict") if metrics.get("verdict") in CELL_VERDICTS else "error"
    cell: dict[str, Any] = {"family": family, "writer": writer, "reader": reader, "verdict": verdict,
                            "details": _short(body.get("details", row.get("details", "")))[:600]}
    if body.get("first_difference"):
        cell["first_difference"] = str(body["first_difference"])
    for name in ("bridge", "mcore", "hybrid_interop", "hybrid_migrate", "migrated"):
        path = _path(body.get(name))
        if path is not None:
            cell[name] = path
    if "duration_s" in metrics:
        cell["duration_s"] = metrics["duration_s"]
    return cell


def cells_from_result(result: Any, *, platform: str, stamp: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The cells one ``ckpt_compat:<family>`` :class:`~harness.probes.runner.ProbeResult` gives (none for
    another test)."""
    family = parse_test(result.test)
    if family is None:
        return []
    reader = str(result.meta.get("mcore_version") or result.spec.partition(":")[2])
    reader = reader.split("+")[0]
    stamp = stamp or {"source": "probes", "platform": platform, "generated_at":
                      _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    cells = []
    for row, entry in (result.rows or {}).items():
        parsed = parse_row(row)
        if parsed and parsed[0] == family and isinstance(entry, dict):
            cells.append(_from_row(family, parsed[1], reader, entry))
    if not cells and result.status in ("error", "timeout", "failed"):
        writers = writers_for(family, reader) if reader in DYNAMIC_RELEASES else ()
        cells = [{"family": family, "writer": w, "reader": reader, "verdict": "error",
                  "details": f"the probe did not judge it ({result.status}): {result.details}"[:600]} for w in writers]
    if not cells and result.status == "skipped":
        writers = writers_for(family, reader) if reader in DYNAMIC_RELEASES else ()
        cells = [{"family": family, "writer": w, "reader": reader, "verdict": "not_run",
                  "details": f"not run: {result.details}"[:600]} for w in writers]
    for cell in cells:
        cell["platform"] = platform
        cell["provenance"] = dict(stamp)
    return cells


def sorted_cells(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """By family, then reader, then writer (releases in version order), then platform."""
    return sorted(cells, key=lambda c: (c["family"], version_key(c["reader"]), version_key(c["writer"]),
                                        c.get("platform", "cpu")))


def merge_cells(old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with ``new`` laid over it, cell by cell (:func:`cell_key`)."""
    merged = {cell_key(c): c for c in old}
    merged.update({cell_key(c): c for c in new})
    return sorted_cells(merged.values())
