"""The cross-version checkpoint grid: which (writer release X, reader release Y) pairs ``ckpt_compat`` probes.

A checkpoint of a family is written once per writer release (:mod:`harness.probes.ckpt_store`) and read by
every reader release the grid pairs it with. The probe test ``ckpt_compat:<family>`` runs at the reader
revision Y and reads the checkpoints of every writer :func:`writers_for` names, one row per writer
(:func:`row_name`), so one subprocess per (reader, family) covers its whole column.

=====================  ==============================================================================
``FULL_TRIANGLE``      llama (dense) and qwen3_moe (MoE): every X <= Y
every other family     adjacent releases (X, next X), each release to the latest, and X to itself (the
                       writer's own release: a cross-version break is told apart from a broken writer)
=====================  ==============================================================================

The releases are :data:`harness.versions.DYNAMIC_RELEASES` (the one list of installable releases the
probes run against, 0.8.0 onward). Cheap to import: no MCore, no bridge.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import ProbeError
from harness.versions import DYNAMIC_RELEASES, version_key

__all__ = [
    "CELL_VERDICTS",
    "FULL_TRIANGLE",
    "LOADED_VERDICTS",
    "TEST_PREFIX",
    "grid_pairs",
    "parse_row",
    "parse_test",
    "row_name",
    "row_status",
    "probe_name",
    "writers_for",
]

TEST_PREFIX = "ckpt_compat"
FULL_TRIANGLE = ("llama", "qwen3_moe")
"""Families probed over the full upper triangle (each release to itself and every later one)."""

CELL_VERDICTS = ("loads", "loads_with_warnings", "loads_after_migrate", "logits_differ", "fails", "not_run", "error")
"""What a cell says, best first. ``not_run``: the writer (or reader) release cannot build the family (not a
failure); ``error``: the probe itself could not judge the cell (a crashed writer, a timeout)."""
LOADED_VERDICTS = ("loads", "loads_with_warnings", "loads_after_migrate")


def _check_release(release: str, releases: Sequence[str]) -> None:
    if release not in releases:
        raise ProbeError(f"expected a release among {releases[0]}..{releases[-1]}, found {release!r}")


def writers_for(family: str, reader: str, releases: Sequence[str] = DYNAMIC_RELEASES) -> tuple[str, ...]:
    """The writer releases whose checkpoint of ``family`` the reader release ``reader`` loads, oldest first."""
    _check_release(reader, releases)
    ordered = sorted(releases, key=version_key)
    i = ordered.index(reader)
    if family in FULL_TRIANGLE:
        return tuple(ordered[: i + 1])
    if reader == ordered[-1]:
        return tuple(ordered)
    return tuple(ordered[max(i - 1, 0): i + 1])


def grid_pairs(family: str, releases: Sequence[str] = DYNAMIC_RELEASES) -> tuple[tuple[str, str], ...]:
    """Every ``(writer, reader)`` pair of ``family``, by reader then writer."""
    ordered = sorted(releases, key=version_key)
    return tuple((w, r) for r in ordered for w in writers_for(family, r, ordered))


def probe_name(family: str) -> str:
    return f"{TEST_PREFIX}:{family}"


def parse_test(name: str) -> str | None:
    """The family of a ``ckpt_compat:<family>`` test name, else None."""
    kind, sep, family = name.partition(":")
    return family if sep and kind == TEST_PREFIX and family else None


def row_name(family: str, writer: str) -> str:
    """The result row of one cell at the reader: ``ckpt_compat:<family>@<writer>``."""
    return f"{TEST_PREFIX}:{family}@{writer}"


def parse_row(row: str) -> tuple[str, str] | None:
    """``(family, writer)`` of a :func:`row_name`, else None."""
    family = parse_test(row.partition("@")[0])
    writer = row.partition("@")[2]
    return (family, writer) if family and writer else None


def row_status(verdict: str) -> str:
    """The probe row status (``passed`` / ``failed`` / ``skipped``) a cell verdict maps to."""
    if verdict not in CELL_VERDICTS:
        raise ProbeError(f"expected a cell verdict in {CELL_VERDICTS}, found {verdict!r}")
    if verdict in LOADED_VERDICTS:
        return "passed"
    return "skipped" if verdict == "not_run" else "failed"
