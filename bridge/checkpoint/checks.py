"""Compare the tensors a checkpoint holds with the tensors a model expects, reporting every difference at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["WeightReport", "compare_weights"]

_MAX_LISTED = 20

Expected = Mapping[str, tuple[Sequence[int], torch.dtype | None]]


@dataclass(frozen=True)
class WeightReport:
    """Sorted disagreements between found and expected tensors.

    ``wrong_shape`` and ``wrong_dtype`` hold ``(name, expected, found)`` triples.
    """

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    wrong_shape: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    wrong_dtype: tuple[tuple[str, torch.dtype, torch.dtype], ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape or self.wrong_dtype)

    def describe(self, subject: str) -> str:
        """A message naming every problem (up to 20 per kind), sorted by tensor name, with a fix."""
        counts = [
            f"{len(self.missing)} missing",
            f"{len(self.unexpected)} unexpected",
            f"{len(self.wrong_shape)} wrongly shaped",
        ]
        if self.wrong_dtype:
            counts.append(f"{len(self.wrong_dtype)} of the wrong dtype")
        lines = [f"{subject} does not match the expected weights: {', '.join(counts)}."]
        sections = [
            ("missing (expected, not in the checkpoint)", [f"{n}" for n in self.missing]),
            ("unexpected (in the checkpoint, not expected)", [f"{n}" for n in self.unexpected]),
            ("wrong shape", [f"{n}: expected {list(e)}, found {list(f)}" for n, e, f in self.wrong_shape]),
            ("wrong dtype", [f"{n}: expected {e}, found {f}" for n, e, f in self.wrong_dtype]),
        ]
        for title, items in sections:
            if not items:
                continue
            lines.append(f"{title}:")
            lines.extend(f"  - {item}" for item in items[:_MAX_LISTED])
            if len(items) > _MAX_LISTED:
                lines.append(f"  ... and {len(items) - _MAX_LISTED} more")
        lines.append(
            "Fix: check that the checkpoint belongs to this architecture and config (hidden size, layer count, "
            "vocabulary), or that the bridge's mapping table names these tensors."
        )
        return "\n".join(lines)


def compare_weights(
    found: Mapping[str, tuple[Sequence[int], torch.dtype]], expected: Expected, *, check_dtype: bool = False
) -> WeightReport:
    """Compare ``found`` tensors with ``expected`` ones; dtypes only when ``check_dtype`` and not ``None``."""
    wrong_shape = []
    wrong_dtype = []
    for name in sorted(set(found) & set(expected)):
        want_shape, want_dtype = expected[name]
        have_shape, have_dtype = found[name]
        if tuple(want_shape) != tuple(have_shape):
            wrong_shape.append((name, tuple(want_shape), tuple(have_shape)))
        if check_dtype and want_dtype is not None and want_dtype != have_dtype:
            wrong_dtype.append((name, want_dtype, have_dtype))
    return WeightReport(
        missing=tuple(sorted(set(expected) - set(found))),
        unexpected=tuple(sorted(set(found) - set(expected))),
        wrong_shape=tuple(wrong_shape),
        wrong_dtype=tuple(wrong_dtype),
    )
