"""The cross-version checkpoint grid: which (writer, reader) pairs each family gets, and the row names."""

from __future__ import annotations

import pytest

from harness.errors import ProbeError
from harness.probes.ckpt_grid import (
    CELL_VERDICTS, FULL_TRIANGLE, grid_pairs, parse_row, parse_test, row_name, row_status, probe_name, writers_for,
)
from harness.versions import DYNAMIC_RELEASES, version_key

N = len(DYNAMIC_RELEASES)
LATEST = DYNAMIC_RELEASES[-1]


@pytest.mark.parametrize("family", FULL_TRIANGLE)
def test_dense_and_moe_families_get_the_full_upper_triangle(family: str) -> None:
    pairs = grid_pairs(family)
    assert len(pairs) == N * (N + 1) // 2
    assert all(version_key(w) <= version_key(r) for w, r in pairs)
    assert (DYNAMIC_RELEASES[0], LATEST) in pairs and (DYNAMIC_RELEASES[3], DYNAMIC_RELEASES[7]) in pairs


def test_other_families_get_adjacent_pairs_each_release_to_the_latest_and_the_diagonal() -> None:
    pairs = set(grid_pairs("gemma3"))
    adjacent = set(zip(DYNAMIC_RELEASES, DYNAMIC_RELEASES[1:]))
    to_latest = {(w, LATEST) for w in DYNAMIC_RELEASES}
    diagonal = {(r, r) for r in DYNAMIC_RELEASES}
    assert pairs == adjacent | to_latest | diagonal
    assert (DYNAMIC_RELEASES[0], DYNAMIC_RELEASES[2]) not in pairs


def test_writers_for_a_reader_are_oldest_first_and_never_newer() -> None:
    assert writers_for("llama", DYNAMIC_RELEASES[0]) == (DYNAMIC_RELEASES[0],)
    assert writers_for("gemma3", DYNAMIC_RELEASES[5]) == (DYNAMIC_RELEASES[4], DYNAMIC_RELEASES[5])
    assert writers_for("gemma3", LATEST) == DYNAMIC_RELEASES
    with pytest.raises(ProbeError, match="expected a release among"):
        writers_for("llama", "0.7.0")


def test_row_and_test_names_round_trip() -> None:
    assert parse_test(probe_name("qwen3_moe")) == "qwen3_moe"
    assert parse_row(row_name("qwen3_moe", "0.16.1")) == ("qwen3_moe", "0.16.1")
    assert parse_test("family:llama") is None and parse_row("llama") is None and parse_row("ckpt_compat:llama") is None


def test_verdicts_map_to_row_statuses_with_not_run_never_a_failure() -> None:
    assert {v: row_status(v) for v in CELL_VERDICTS} == {
        "loads": "passed", "loads_with_warnings": "passed", "loads_after_migrate": "passed",
        "logits_differ": "failed", "fails": "failed", "not_run": "skipped", "error": "failed"}
    with pytest.raises(ProbeError):
        row_status("fine")
