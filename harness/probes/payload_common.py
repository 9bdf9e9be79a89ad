"""What every probe body shares: row verdicts, the outcome of a test, and the capture of MCore's warnings.

A probe body returns an :class:`Outcome`: one :class:`Row` per matrix row it gives evidence for, plus
notes. :class:`MegatronWarnings` records, while it is active, every ``warnings.warn`` issued from a file
of the ``megatron`` package and every WARNING (or worse) record of a ``megatron.*`` logger (MCore
announces some deprecations, e.g. GPTModel's in 0.19, through logging), deduplicated.
"""

from __future__ import annotations

import logging
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PASSED",
    "FAILED",
    "SKIPPED",
    "MegatronWarnings",
    "Outcome",
    "Row",
    "describe_exception",
    "merge_warnings",
]

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
Metric = float | int | bool | str


@dataclass(frozen=True)
class Row:
    """The verdict of one matrix row (a family or a feature) in one test."""

    status: str
    details: str = ""
    metrics: dict[str, Metric] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.status in (PASSED, FAILED, SKIPPED), self.status

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "details": self.details, "metrics": dict(self.metrics)}


@dataclass(frozen=True)
class Outcome:
    """What a probe body found: its rows, and notes about the run."""

    rows: dict[str, Row]
    notes: tuple[str, ...] = ()
    warnings: tuple[dict[str, Any], ...] = ()  # caught elsewhere (e.g. in worker processes)

    @property
    def status(self) -> str:
        """``failed`` if any row failed, else ``passed`` if any passed, else ``skipped``."""
        statuses = {row.status for row in self.rows.values()}
        if FAILED in statuses:
            return FAILED
        return PASSED if PASSED in statuses else SKIPPED


def describe_exception(exc: BaseException) -> str:
    """``Type: message (at file:line)``, the location being the innermost frame of a real file outside the
    import machinery (so a failing import points at the importing line)."""
    text = f"{type(exc).__name__}: {exc}".strip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<") and "importlib" not in Path(f.filename).parts]
    if frames:
        last = frames[-1]
        text += f" (at {_short_path(last.filename)}:{last.lineno})"
    return text


def _short_path(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("megatron", "bridge", "harness", "transformers", "torch"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor) - 1:])
    return filename


def _from_megatron(filename: str) -> bool:
    return "megatron" in Path(filename).parts


class _LogRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "megatron" or record.name.startswith("megatron."):
            self.records.append(record)


class MegatronWarnings:
    """Context manager recording MCore's warnings (see the module docstring); :meth:`as_json` after exit.

    ``earlier``: a finished recorder whose warnings count as recorded by this one, first (a fork server's
    ``import megatron.core``, done once before its probes fork): :meth:`as_json` then lists what a single
    recorder active over both would have (``warnings.warn`` records before log records)."""

    def __init__(self, earlier: MegatronWarnings | None = None) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self._records: list[warnings.WarningMessage] = []
        self._handler = _LogRecords()
        self._earlier = earlier

    def __enter__(self) -> "MegatronWarnings":
        self._records = self._catcher.__enter__()
        warnings.simplefilter("always")
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._catcher.__exit__(*exc)

    def as_json(self) -> list[dict[str, Any]]:
        """Deduplicated ``{"category", "message", "filename", "lineno"}`` entries, in order of first issue."""
        earlier = self._earlier
        records = [*(earlier._records if earlier else ()), *self._records]
        logged = [*(earlier._handler.records if earlier else ()), *self._handler.records]
        entries = [(w.category.__name__, str(w.message), w.filename, w.lineno)
                   for w in records if _from_megatron(w.filename)]
        entries += [(f"log.{r.levelname}", r.getMessage(), r.pathname, r.lineno) for r in logged]
        return merge_warnings([{"category": category, "message": message, "filename": _short_path(filename),
                                "lineno": int(lineno or 0)} for category, message, filename, lineno in entries])


def merge_warnings(*lists: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The entries of ``lists`` without repeats, in order of first appearance."""
    seen: set[tuple[Any, ...]] = set()
    out: list[dict[str, Any]] = []
    for entries in lists:
        for w in entries:
            key = (w["category"], w["message"], w["filename"], w["lineno"])
            if key not in seen:
                seen.add(key)
                out.append(dict(w))
    return out
