"""When each row (feature or family) appears and disappears across releases, from a matrix."""

from __future__ import annotations

from dataclasses import dataclass

from harness.matrix import Matrix

__all__ = ["Availability", "availability"]

_AVAILABLE = ("supported", "renamed")


@dataclass(frozen=True)
class Availability:
    """``first``: first release where the row is available; ``removed_in``: releases where it
    stops being available (after being available in the previous release); ``returned_in``:
    releases where it comes back; ``latest``: whether the newest scanned release has it."""

    row: str
    kind: str
    description: str
    first: str | None
    removed_in: tuple[str, ...]
    returned_in: tuple[str, ...]
    latest: bool


def availability(matrix: Matrix, kinds: tuple[str, ...] = ("feature",)) -> list[Availability]:
    """One :class:`Availability` per row of the given kinds, over the matrix's releases."""
    releases = matrix.released()
    out: list[Availability] = []
    for row in matrix.rows:
        if row["kind"] not in kinds:
            continue
        first: str | None = None
        removed: list[str] = []
        returned: list[str] = []
        previous = False
        for rev in releases:
            cell = matrix.cell(row["name"], rev["spec"])
            now = bool(cell and cell["status"] in _AVAILABLE)
            if now and first is None:
                first = rev["version"]
            elif now and not previous and first is not None:
                returned.append(rev["version"])
            elif previous and not now:
                removed.append(rev["version"])
            previous = now
        out.append(Availability(row["name"], row["kind"], row.get("description", ""), first,
                                tuple(removed), tuple(returned), previous))
    return out
