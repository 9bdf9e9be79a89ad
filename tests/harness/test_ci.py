"""harness.ci: which probe outcomes count as a family breaking between the pinned and the new commit.

The inputs are probe results as the runner returns them (plain data); the real probes run in
tests/harness/test_run.py (slow) and in `mcore-compat run`.
"""

from __future__ import annotations

from harness.ci import GATING_TESTS, dynamic_breaks
from harness.probes.runner import ProbeResult

BASE, NEW = "git:aaaa", "git:bbbb"
FAMILIES = ("llama", "qwen2")
KINDS = {"llama": "family", "qwen2": "family", "gqa": "feature"}


def result(spec: str, test: str, status: str, rows: dict | None = None, details: str = "") -> ProbeResult:
    return ProbeResult(spec=spec, test=test, status=status, rows=rows or {}, details=details)


def row(status: str, details: str = "") -> dict:
    return {"status": status, "details": details, "metrics": {}}


def breaks(*results: ProbeResult, declared: dict | None = None) -> list[tuple[str, str, str, str]]:
    found = dynamic_breaks(results, BASE, NEW, families=FAMILIES, kinds=KINDS, declared_rows=declared or {})
    return sorted((b.row, b.kind, b.check, b.reason) for b in found)


def test_a_row_that_passed_and_now_fails_breaks_with_the_target_reason():
    assert breaks(
        result(BASE, "family:llama", "passed", {"llama": row("passed")}),
        result(NEW, "family:llama", "failed", {"llama": row("failed", "logits differ: max 3e-1\nat layer 2")}),
    ) == [("llama", "family", "dynamic:family:llama", "at layer 2")]


def test_only_passed_to_bad_counts():
    unchanged = breaks(
        result(BASE, "family:llama", "failed", {"llama": row("failed", "already broken")}),
        result(NEW, "family:llama", "failed", {"llama": row("failed", "still broken")}),
        result(BASE, "family:qwen2", "skipped", {"qwen2": row("skipped")}),
        result(NEW, "family:qwen2", "failed", {"qwen2": row("failed")}),
    )
    assert unchanged == []
    assert breaks(result(BASE, "family:llama", "passed", {"llama": row("passed")}),
                  result(NEW, "family:llama", "skipped", {"llama": row("skipped")})) == []


def test_a_crash_without_rows_breaks_the_rows_the_catalog_declares():
    found = breaks(
        result(BASE, "features", "passed", {"gqa": row("passed")}),
        result(NEW, "features", "timeout", details="no result after 180s"),
        declared={"features": ("gqa",)},
    )
    assert found == [("gqa", "feature", "dynamic:features", "no result after 180s")]


def test_a_test_run_at_one_revision_only_is_not_compared():
    assert breaks(result(NEW, "family:llama", "failed", {"llama": row("failed")})) == []


def test_import_breaking_breaks_every_family():
    assert "import" in GATING_TESTS
    found = breaks(
        result(BASE, "import", "passed", {"transformer_config": row("passed")}),
        result(NEW, "import", "error", details="ImportError: cannot import name 'GPTModel'"),
        declared={"import": ("transformer_config",)},
    )
    reason = "ImportError: cannot import name 'GPTModel'"
    assert found == sorted([("transformer_config", "feature", "dynamic:import", reason),
                            *((f, "family", "dynamic:import", reason) for f in FAMILIES)])


def _partial(*running: str) -> dict:
    names = ("v0(base)", "v1(tie_word_embeddings)", "v2(rope_parameters)")
    return {"status": "partial", "details": "d", "variants": {
        n: {"status": "supported" if n in running else "missing", "missing": [] if n in running else ["x"]}
        for n in names}}


def test_a_partial_family_breaks_when_a_variant_that_ran_stops_running():
    from harness.ci import static_breaks
    from harness.matrix import Matrix

    def matrix(before: dict, after: dict) -> Matrix:
        m = Matrix(rows=[{"name": "llama", "kind": "family", "description": ""}],
                   revisions=[{"spec": "a"}, {"spec": "b"}])
        m.cells = {("llama", "a"): before, ("llama", "b"): after}
        return m

    base = _partial("v0(base)", "v1(tie_word_embeddings)")
    (brk,) = static_breaks(matrix(base, _partial("v1(tie_word_embeddings)")), "a", "b")
    assert brk.row == "llama" and brk.reason.startswith("variants that ran no longer run: v0(base)")
    (brk,) = static_breaks(matrix(base, {"status": "missing", "details": "missing 1: x"}), "a", "b")
    assert "v0(base), v1(tie_word_embeddings)" in brk.reason
    assert static_breaks(matrix(base, _partial("v0(base)", "v1(tie_word_embeddings)", "v2(rope_parameters)")),
                         "a", "b") == []
    assert static_breaks(matrix(base, {"status": "supported", "details": ""}), "a", "b") == []
