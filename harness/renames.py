"""Field renames of ``TransformerConfig``: the known ones (data) and detection across releases.

A rename is detected between consecutive snapshots when a field disappears while a new one
appears with the same default and the same type (``Optional[X]`` and ``X`` count as the
same) and a similar name (character similarity, or the old name's words all reappearing).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["KNOWN_RENAMES", "Rename", "RenameTable", "detect_renames", "name_similarity"]


@dataclass(frozen=True)
class Rename:
    """``old`` became ``new`` in release ``release`` (the first one with ``new``)."""

    old: str
    new: str
    release: str | None = None
    source: str = "known"  # "known" | "detected"

    def to_json(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "release": self.release, "source": self.source}


KNOWN_RENAMES: tuple[Rename, ...] = (
    Rename("bias_gelu_fusion", "bias_activation_fusion", "0.5.0"),
    Rename("first_pipeline_num_layers", "num_layers_in_first_pipeline_stage", "0.11.0"),
    Rename("last_pipeline_num_layers", "num_layers_in_last_pipeline_stage", "0.11.0"),
)
"""Renames confirmed in the released sources (each is also what detection finds)."""

_OPTIONAL = re.compile(r"^Optional\[(.*)\]$")


def _norm_type(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.replace(" ", "")
    match = _OPTIONAL.match(text)
    if match:
        return match.group(1)
    parts = [p for p in text.split("|") if p != "None"]
    return "|".join(parts)


def name_similarity(a: str, b: str) -> float:
    """Max of character similarity and the share of the shorter name's words found in the other."""
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    wa, wb = set(a.split("_")), set(b.split("_"))
    words = len(wa & wb) / min(len(wa), len(wb)) if wa and wb else 0.0
    return max(ratio, words)


def detect_renames(
    snapshots: Sequence[tuple[str, dict[str, dict[str, Any]]]], *, min_similarity: float = 0.6
) -> list[Rename]:
    """Renames between consecutive ``(release, fields)`` snapshots (oldest first)."""
    found: list[Rename] = []
    for (_, before), (release, after) in zip(snapshots, snapshots[1:]):
        removed = [f for f in before if f not in after]
        added = [f for f in after if f not in before]
        scored = []
        for old in removed:
            for new in added:
                same = (_norm_type(before[old].get("type")) == _norm_type(after[new].get("type"))
                        and before[old].get("default") == after[new].get("default")
                        and before[old].get("default_factory") == after[new].get("default_factory"))
                score = name_similarity(old, new)
                if same and score >= min_similarity:
                    scored.append((score, difflib.SequenceMatcher(None, old, new).ratio(), old, new))
        used_old: set[str] = set()
        used_new: set[str] = set()
        for _, _, old, new in sorted(scored, reverse=True):
            if old not in used_old and new not in used_new:
                used_old.add(old)
                used_new.add(new)
                found.append(Rename(old, new, release, "detected"))
    return found


class RenameTable:
    """All renames the verdicts may use: names that denote the same field across releases."""

    def __init__(self, renames: Iterable[Rename] = KNOWN_RENAMES) -> None:
        self.renames: list[Rename] = []
        seen: set[tuple[str, str]] = set()
        for r in renames:
            if (r.old, r.new) not in seen:
                seen.add((r.old, r.new))
                self.renames.append(r)

    def with_pairs(self, pairs: Iterable[tuple[str, str]]) -> RenameTable:
        """A table extended with ``(name_used, other_name)`` pairs (a family's own renames)."""
        extra = [Rename(other, used, None, "family") for used, other in pairs]
        return RenameTable([*self.renames, *extra])

    def aliases(self, name: str) -> list[str]:
        """Every other name of ``name`` (following chains both ways), nearest first."""
        out: list[str] = []
        frontier = [name]
        while frontier:
            current = frontier.pop(0)
            for r in self.renames:
                for a, b in ((r.old, r.new), (r.new, r.old)):
                    if a == current and b != name and b not in out:
                        out.append(b)
                        frontier.append(b)
        return out

    def as_dict(self) -> dict[str, str]:
        """``{old: new}``."""
        return {r.old: r.new for r in self.renames}
