"""harness.probes.fold and explanations, with harness.matrix's merge: probe results next to static verdicts,
agreement per platform and over platforms, known disagreements explained, CPU and GPU files merged."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.matrix import Matrix, load_matrix, merge_matrices
from harness.probes.explanations import EXPLANATIONS, explain
from harness.probes.fold import carry_dynamic, cell_status, fold_results, rows_for_test
from harness.probes.runner import ProbeResult

VERSIONS = ("0.13.0", "0.16.1", "0.17.0")
STATIC = {  # row -> static status at each of VERSIONS
    "llama": ("supported", "supported", "supported"),
    "mistral": ("supported", "supported", "supported"),
    "gqa": ("supported", "supported", "supported"),
    "mtp": ("missing", "supported", "supported"),
}
DEPRECATED = {"category": "DeprecationWarning", "message": "x is deprecated", "filename": "megatron/core/a.py",
              "lineno": 3}


def static_matrix() -> Matrix:
    m = Matrix()
    m.revisions = [{"spec": f"pypi:{v}", "kind": "pypi", "version": v, "commit": None, "error": None, "notes": []}
                   for v in VERSIONS]
    m.rows = [{"name": r, "kind": "family" if r in ("llama", "mistral") else "feature", "description": r}
              for r in STATIC]
    for row, statuses in STATIC.items():
        for v, status in zip(VERSIONS, statuses):
            m.cells[(row, f"pypi:{v}")] = {"status": status, "missing": [], "renamed": {}, "details": "",
                                           "provenance": {"source": "static"}}
    return m


def result(version: str, test: str, status: str, rows: dict[str, tuple[str, str]] | None = None, *,
           details: str = "", warnings: list[dict[str, Any]] | None = None, **meta: Any) -> ProbeResult:
    return ProbeResult(
        f"pypi:{version}", test, status,
        rows={r: {"status": s, "details": d, "metrics": {}} for r, (s, d) in (rows or {}).items()},
        warnings=list(warnings or []), details=details, duration_s=1.0,
        meta={"device": "cpu", "python": "3.11.7", "mcore_version": version, "outside_python_range": False, **meta},
    )


WINDOW_REFUSED = ("UnsupportedFeatureError: window_size=(7, 0) (sliding-window attention) needs a local "
                  "DotProductAttention")

CPU_RESULTS = [
    result("0.16.1", "family:llama", "passed", {"llama": ("passed", "logits match")}, warnings=[DEPRECATED]),
    result("0.16.1", "features", "passed", {"gqa": ("passed", ""), "mtp": ("passed", "")},
           warnings=[DEPRECATED, DEPRECATED]),
    result("0.13.0", "family:mistral", "failed", {"mistral": ("failed", WINDOW_REFUSED)}),
    result("0.16.1", "family:mistral", "failed", {"mistral": ("failed", "logits differ by 0.3")}),
    result("0.13.0", "features", "passed", {"mtp": ("passed", ""), "gqa": ("skipped", "not on CPU")}),
    result("0.17.0", "family:llama", "error", details="import failed: SyntaxError: invalid syntax (a.py, line 3)",
           outside_python_range=True, revision_notes=["outside declared Python range (requires >=3.12)"]),
]


def test_fold_compares_each_cell_with_its_static_verdict():
    static = static_matrix()
    m = fold_results(static, CPU_RESULTS, platform="cpu")
    assert "dynamic" not in static.cell("llama", "pypi:0.16.1")  # the input is not modified

    llama = m.cell("llama", "pypi:0.16.1")
    assert llama["dynamic"]["cpu"]["status"] == "passed" and llama["agreement"] == "agree"
    assert llama["dynamic"]["cpu"]["tests"] == {"family:llama": {"status": "passed", "details": "logits match"}}
    assert llama["dynamic"]["cpu"]["warnings"] == [DEPRECATED]

    window = m.cell("mistral", "pypi:0.13.0")
    assert window["agreement"] == "explained" and "sliding-window attention" in window["explanation"]
    assert m.cell("mistral", "pypi:0.16.1")["agreement"] == "disagree"  # no entry covers 0.16.1
    assert m.cell("mtp", "pypi:0.13.0")["agreement"] == "disagree"  # static missing, yet it works
    assert m.cell("gqa", "pypi:0.13.0")["dynamic"]["cpu"]["status"] == "skipped"
    assert "agreement" not in m.cell("gqa", "pypi:0.13.0")  # nothing to compare

    error = m.cell("llama", "pypi:0.17.0")  # no rows in the result: the catalog's rows of the test
    assert error["dynamic"]["cpu"]["status"] == "error" and error["dynamic"]["cpu"]["outside_python_range"]
    assert error["agreement"] == "explained" and "Python range" in error["explanation"]

    rev = next(r for r in m.revisions if r["spec"] == "pypi:0.16.1")["dynamic"]["cpu"]
    assert rev["tests"]["family:mistral"]["status"] == "failed" and rev["warnings"] == [DEPRECATED]
    assert rev["python"] == "3.11.7" and rev["provenance"]["platform"] == "cpu"
    assert next(r for r in m.revisions if r["spec"] == "pypi:0.17.0")["dynamic"]["cpu"]["outside_python_range"]


def test_unknown_revisions_and_rows_are_added():
    m = fold_results(static_matrix(), [result("0.19.2", "recipes", "passed", {"qwen3": ("passed", "")})],
                     platform="gpu")
    assert m.revisions[-1]["spec"] == "pypi:0.19.2" and m.rows[-1] == {
        "name": "qwen3", "kind": "probe", "description": "a row only the dynamic probes report"}
    cell = m.cell("qwen3", "pypi:0.19.2")
    assert cell["status"] == "unchecked" and cell["dynamic"]["gpu"]["status"] == "passed" and "agreement" not in cell
    with pytest.raises(HarnessError, match="expected platform"):
        fold_results(static_matrix(), [], platform="tpu")


def test_folded_matrix_round_trips_and_bad_dynamic_is_refused(tmp_path):
    m = fold_results(static_matrix(), CPU_RESULTS, platform="cpu")
    path = tmp_path / "matrix.json"
    m.save(path)
    back = load_matrix(path)
    assert back.to_json() == json.loads(path.read_text())
    assert back.cell("mistral", "pypi:0.13.0") == m.cell("mistral", "pypi:0.13.0")
    data = json.loads(path.read_text())
    data["cells"][0]["dynamic"] = ["cpu"]
    path.write_text(json.dumps(data))
    with pytest.raises(HarnessError, match="expected \"dynamic\" to map a platform"):
        load_matrix(path)


def test_merge_keeps_cpu_and_gpu_and_recomputes_agreement():
    cpu = fold_results(static_matrix(), CPU_RESULTS, platform="cpu")
    gpu = fold_results(static_matrix(), [
        result("0.16.1", "family:llama", "failed", {"llama": ("failed", "NCCL logits differ")}, device="cuda"),
        result("0.16.1", "family:mistral", "passed", {"mistral": ("passed", "")}, device="cuda"),
    ], platform="gpu")
    merged = merge_matrices([("cpu.json", cpu), ("gpu.json", gpu)])
    llama = merged.cell("llama", "pypi:0.16.1")
    assert set(llama["dynamic"]) == {"cpu", "gpu"}
    assert llama["dynamic"]["cpu"]["agreement"] == "agree" and llama["dynamic"]["gpu"]["agreement"] == "disagree"
    assert llama["agreement"] == "disagree"  # the most alarming platform
    assert llama["dynamic"]["gpu"]["provenance"]["merged_from"] == "gpu.json"
    assert merged.cell("mistral", "pypi:0.13.0")["dynamic"].keys() == {"cpu"}  # only the CPU file has it
    rev = next(r for r in merged.revisions if r["spec"] == "pypi:0.16.1")
    assert set(rev["dynamic"]) == {"cpu", "gpu"}
    assert merge_matrices([("gpu.json", gpu), ("cpu.json", cpu)]).cell("llama", "pypi:0.16.1")["dynamic"].keys() \
        == {"cpu", "gpu"}

    # a later static-only file keeps the probes and re-judges them against its verdict
    rescanned = static_matrix()
    rescanned.cells[("mistral", "pypi:0.16.1")]["status"] = "missing"
    again = merge_matrices([("merged.json", merged), ("static.json", rescanned)])
    mistral = again.cell("mistral", "pypi:0.16.1")
    assert mistral["status"] == "missing" and set(mistral["dynamic"]) == {"cpu", "gpu"}
    assert mistral["dynamic"]["cpu"]["agreement"] == "agree" and mistral["agreement"] == "disagree"  # gpu passed


def test_cell_status_precedence_and_rows_of_tests():
    assert cell_status(["passed", "failed", "error"]) == "failed"
    assert cell_status(["passed", "timeout"]) == "timeout"
    assert cell_status(["skipped", "passed"]) == "passed"
    assert cell_status(["skipped"]) == cell_status([]) == "skipped"
    assert rows_for_test("family:qwen3") == ("qwen3",)
    assert "transformer_config" in rows_for_test("import")


def test_explanations_cover_only_their_cells():
    mistral = dict(row="mistral", static="supported", dynamic="failed", platform="cpu", details=WINDOW_REFUSED)
    assert explain(version="0.12.3", **mistral) is EXPLANATIONS[0]
    assert explain(version="0.15.0", **mistral) is None
    assert explain(version=None, **mistral) is None  # an unknown version is outside a bounded range
    assert explain(version="0.12.3", **{**mistral, "details": "logits differ"}) is None
    assert explain(version="0.12.3", **{**mistral, "dynamic": "passed"}) is None
    assert explain(version="0.14.0", **{**mistral, "row": "qwen3_moe"}) is EXPLANATIONS[0]
    assert explain(version="0.14.0", **{**mistral, "row": "qwen2"}) is None
    gemma = explain(row="gemma", version="0.16.1", static="supported", dynamic="failed", platform="gpu",
                    details="Gemma2ForCausalLM: soft-capping is not supported")
    assert gemma is not None and "Gemma 2" in gemma.reason
    q_lora = dict(row="deepseek_v3", static="supported", dynamic="failed", platform="gpu",
                  details="v1(n_group,q_lora_rank): refused by the bridge: UnsupportedFeatureError: "
                          "q_lora_rank=None (no query LoRA): megatron-core 0.19.2 builds MLA's linear_q_proj ...")
    assert "mla_plain_q_proj" in explain(version="0.19.2", **q_lora).reason
    assert explain(version="0.18.2", **q_lora) is None  # before 0.19 the variant must pass
    assert explain(version="0.19.2", **{**q_lora, "details": "v0(base): max_abs_diff 3e-2"}) is None
    te = dict(row="te_extensions", static="supported", dynamic="failed", platform="cpu",
              details="module:megatron.core.extensions.transformer_engine: ModuleNotFoundError: "
                      "No module named 'transformer_engine' (at megatron/core/extensions/transformer_engine.py:11)")
    assert "Transformer Engine" in explain(version="0.12.3", **te).reason
    assert explain(version="0.13.0", **te) is None  # guarded from 0.13: a failure there is news
    assert explain(row="gqa", version="0.17.0", static="supported", dynamic="error", platform="cpu",
                   details="import failed: SyntaxError: x", outside_python_range=False) is None


def test_carry_dynamic_keeps_probe_results_against_new_static_verdicts():
    folded = merge_matrices([("cpu.json", fold_results(static_matrix(), CPU_RESULTS, platform="cpu")),
                             ("gpu.json", fold_results(static_matrix(), [
                                 result("0.19.2", "recipes", "passed", {"qwen3": ("passed", "")})], platform="gpu"))])
    fresh = static_matrix()  # a new static scan: mtp is found at 0.13.0 now, and 0.17.0 is no longer scanned
    fresh.cells[("mtp", "pypi:0.13.0")]["status"] = "supported"
    fresh.revisions = [r for r in fresh.revisions if r["spec"] != "pypi:0.17.0"]
    fresh.cells = {k: c for k, c in fresh.cells.items() if k[1] != "pypi:0.17.0"}
    fresh.revisions.append({"spec": "pypi:0.19.2", "kind": "pypi", "version": "0.19.2", "commit": None,
                            "error": None, "notes": []})

    kept, carried = carry_dynamic(fresh, folded)
    assert "dynamic" not in fresh.cell("llama", "pypi:0.16.1")  # the input is not modified
    for key, cell in folded.cells.items():
        if cell.get("dynamic") and key[1] != "pypi:0.17.0":
            assert kept.cells[key]["dynamic"] == cell["dynamic"] or key == ("mtp", "pypi:0.13.0")
    assert kept.cell("mtp", "pypi:0.13.0")["agreement"] == "agree"  # was a disagreement under the old verdict
    assert kept.cell("mistral", "pypi:0.13.0")["agreement"] == "explained"
    assert kept.cell("qwen3", "pypi:0.19.2")["status"] == "unchecked" and kept.rows[-1]["kind"] == "probe"
    assert next(r for r in kept.revisions if r["spec"] == "pypi:0.16.1")["dynamic"]["cpu"]["warnings"] == [DEPRECATED]
    assert ("llama", "pypi:0.17.0") not in kept.cells
    assert carried.revisions == {"cpu": 2, "gpu": 1} and carried.dropped == ("pypi:0.17.0",)
    assert carried.cells == sum(1 for k, c in folded.cells.items() if c.get("dynamic") and k[1] != "pypi:0.17.0")
    assert "dropped those of 1 revision(s) not in this matrix: pypi:0.17.0" in carried.summary()
    assert carry_dynamic(fresh, static_matrix())[1].summary() == "no probe results"


def test_a_sweep_of_some_tests_adds_to_the_revision_record():
    old = ProbeResult("pypi:0.19.2", "family:llama", "passed", meta={"mcore_version": "0.19.2"},
                      warnings=[{"category": "DeprecationWarning", "message": "old"}])
    first = fold_results(Matrix(), [old], platform="cpu")
    again = fold_results(first, [ProbeResult("pypi:0.19.2", "hybrid:llama", "passed",
                                             meta={"mcore_version": "0.19.2"})], platform="cpu")
    (rev,) = again.revisions
    assert set(rev["dynamic"]["cpu"]["tests"]) == {"family:llama", "hybrid:llama"}
    assert rev["dynamic"]["cpu"]["warnings"] == [{"category": "DeprecationWarning", "message": "old"}]
    first.revisions[0]["dynamic"]["cpu"]["transformers"] = "5.24.0"
    newer = fold_results(first, [ProbeResult("pypi:0.19.2", "hybrid:llama", "passed",
                                             meta={"mcore_version": "0.19.2", "transformers": "5.25.0"})],
                         platform="cpu")
    record = newer.revisions[0]["dynamic"]["cpu"]
    assert set(record["tests"]) == {"family:llama", "hybrid:llama"} and record["transformers"] == "5.25.0"
    assert "family:llama (1 tests) ran with transformers 5.24.0" in record["notes"]
    other = fold_results(first, [ProbeResult("pypi:0.19.2", "hybrid:llama", "passed",
                                             meta={"mcore_version": "0.19.2", "python": "3.12.1"})], platform="cpu")
    assert set(other.revisions[0]["dynamic"]["cpu"]["tests"]) == {"hybrid:llama"}  # another Python: replaced


def test_a_partial_cell_is_judged_by_which_variants_failed():
    m = static_matrix()
    cell = m.cells[("llama", "pypi:0.13.0")]
    cell.update(status="partial", variants={"v0(base)": {"status": "supported", "missing": [], "renamed": {}},
                                            "v1(rope)": {"status": "missing", "missing": ["field:x"], "renamed": {}}})

    def probe(v0: bool, v1: bool) -> ProbeResult:
        r = result("0.13.0", "family:llama", "failed", {"llama": ("failed", "1/2 variants pass")})
        r.rows["llama"]["metrics"].update({"v0.passed": v0, "v1.passed": v1, "v0.max_abs_diff": 0.0})
        return r

    expected = fold_results(m, [probe(True, False)], platform="cpu").cells[("llama", "pypi:0.13.0")]
    assert expected["dynamic"]["cpu"]["variants"] == {"v0": "passed", "v1": "failed"}
    assert expected["agreement"] == "agree"
    swapped = fold_results(m, [probe(False, True)], platform="cpu").cells[("llama", "pypi:0.13.0")]
    assert swapped["dynamic"]["cpu"]["status"] == "failed" and swapped["agreement"] == "disagree"
