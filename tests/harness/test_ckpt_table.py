"""The checkpoint table: ckpt_compat probe results -> matrix.checkpoint_compat -> matrix.json, MD and HTML.

Synthetic probe results (the rows the payload writes), so these run in milliseconds; the real cells come from
tests/harness/probes/test_ckpt_compat_release.py and the slow grid.
"""

from __future__ import annotations

import json

from harness.ckpt_table import cells_from_result, merge_cells
from harness.matrix import Matrix, merge_matrices
from harness.probes.ckpt_grid import probe_name, row_name, row_status, writers_for
from harness.probes.fold import carry_dynamic, fold_results
from harness.probes.runner import ProbeResult
from harness.render.checkpoint_compat import CKPT_STYLE, checkpoint_grids, render_checkpoint_html
from harness.render.html import render_html
from harness.render.markdown import render_matrix_markdown

FAILS = {"verdict": "fails", "details": "CheckpointError: lacks ['decoder.final_norm.weight']",
         "first_difference": "missing 'decoder.final_norm.weight' (and 0 more)",
         "bridge": {"verdict": "fails", "details": "lacks decoder.final_norm.weight"},
         "mcore": {"verdict": "loads", "details": "max |logits - HF| 0.00e+00", "max_abs_diff": 0.0}}
LOADS = {"verdict": "loads", "details": "max |logits - HF| 0.00e+00",
         "bridge": {"verdict": "loads", "details": "", "max_abs_diff": 0.0},
         "mcore": {"verdict": "loads", "details": "", "max_abs_diff": 0.0},
         "hybrid_interop": {"verdict": "loads_with_warnings", "details": "log.WARNING: load_common is deprecated"},
         "hybrid_migrate": {"verdict": "loads_after_migrate", "details": "native HybridModel load: missing "
                            "'decoder.final_norm.weight'; after migrate-ckpt --model-class hybrid: loads"}}


def _result(family: str, reader: str, cells: dict[str, dict], status: str = "passed") -> ProbeResult:
    rows = {row_name(family, w): {"status": row_status(c["verdict"]), "details": c["details"],
                                  "metrics": {"verdict": c["verdict"], "cell": json.dumps(c), "duration_s": 1.5}}
            for w, c in cells.items()}
    return ProbeResult(f"pypi:{reader}", probe_name(family), status, rows=rows,
                       meta={"mcore_version": reader, "device": "cpu"})


def test_a_result_gives_one_cell_per_writer_with_its_paths_and_first_difference() -> None:
    cells = cells_from_result(_result("llama", "0.19.2", {"0.16.1": FAILS, "0.19.2": LOADS}), platform="cpu")
    by_writer = {c["writer"]: c for c in cells}
    assert set(by_writer) == {"0.16.1", "0.19.2"} and {c["reader"] for c in cells} == {"0.19.2"}
    assert by_writer["0.16.1"]["verdict"] == "fails"
    assert by_writer["0.16.1"]["first_difference"].startswith("missing 'decoder.final_norm.weight'")
    assert by_writer["0.16.1"]["mcore"] == {"verdict": "loads", "details": "max |logits - HF| 0.00e+00",
                                            "max_abs_diff": 0.0}
    assert by_writer["0.19.2"]["hybrid_interop"]["verdict"] == "loads_with_warnings"
    assert cells_from_result(ProbeResult("pypi:0.19.2", "family:llama", "passed"), platform="cpu") == []


def test_a_probe_that_timed_out_is_an_error_in_every_cell_of_its_column() -> None:
    result = ProbeResult("pypi:0.12.0", probe_name("qwen3_moe"), "timeout", details="timed out after 3600s",
                         meta={"mcore_version": "0.12.0"})
    cells = cells_from_result(result, platform="cpu")
    assert [c["writer"] for c in cells] == list(writers_for("qwen3_moe", "0.12.0"))
    assert {c["verdict"] for c in cells} == {"error"} and "timed out" in cells[0]["details"]


def test_fold_puts_checkpoint_cells_in_their_own_table_and_json_round_trips() -> None:
    family = ProbeResult("pypi:0.19.2", "family:llama", "passed",
                         rows={"llama": {"status": "passed", "details": "ok"}}, meta={"mcore_version": "0.19.2"})
    folded = fold_results(Matrix(), [family, _result("llama", "0.19.2", {"0.16.1": FAILS})], platform="cpu")
    assert [r["name"] for r in folded.rows] == ["llama"]  # no ckpt_compat:* row in the main grid
    assert len(folded.checkpoint_compat) == 1 and folded.checkpoint_compat[0]["provenance"]["source"] == "probes"
    again = Matrix.from_json(json.loads(folded.dumps()))
    assert again.checkpoint_compat == folded.checkpoint_compat
    assert "checkpoint_compat" not in Matrix().to_json()  # files without cells keep their old shape


def test_merges_and_regenerated_matrices_keep_the_cells_later_results_winning() -> None:
    old = fold_results(Matrix(), [_result("llama", "0.19.2", {"0.16.1": FAILS, "0.19.2": LOADS})], platform="cpu")
    new = fold_results(Matrix(), [_result("llama", "0.19.2", {"0.16.1": LOADS})], platform="cpu")
    merged = merge_matrices([("old", old), ("new", new)])
    assert {c["writer"]: c["verdict"] for c in merged.checkpoint_compat} == {"0.16.1": "loads", "0.19.2": "loads"}
    kept, _ = carry_dynamic(Matrix(), old)
    assert kept.checkpoint_compat == old.checkpoint_compat
    assert merge_cells(old.checkpoint_compat, []) == old.checkpoint_compat


def _grid_matrix() -> Matrix:
    return fold_results(Matrix(), [
        _result("llama", "0.18.2", {"0.18.2": LOADS}),
        _result("llama", "0.19.2", {"0.16.1": FAILS, "0.19.2": LOADS}),
        _result("qwen3_moe", "0.19.2", {"0.19.2": {"verdict": "not_run", "details": "writer refused"}}),
    ], platform="cpu")


def test_markdown_shows_a_grid_per_family_with_its_own_legend_and_the_first_difference() -> None:
    text = render_matrix_markdown(_grid_matrix())
    section = text[text.index("## Checkpoint: written by X, read by Y"):]
    for verdict, (symbol, _, _) in CKPT_STYLE.items():
        assert f"{symbol} {verdict}:" in section  # the table's own legend
    llama = section[section.index("### llama (cpu)"):section.index("### qwen3_moe")]
    assert "| written by \\ read by | 0.18.2 | 0.19.2 |" in llama
    assert "| **0.16.1** |   | ❌ |" in llama and "| **0.18.2** | ✅ |   |" in llama and "| **0.19.2** |   | ✅ |" in llama
    assert "- llama 0.16.1 → 0.19.2: ❌ fails: first difference: missing 'decoder.final_norm.weight'" in section
    assert "| llama | 0.19.2 | 0.19.2 | ⚠️ loads_with_warnings |" in section  # the interop verdict
    assert "| 🔧 loads_after_migrate | native HybridModel load: missing" in section
    assert "| **0.19.2** | · |" in section  # not run, not a failure


def test_html_renders_cells_with_verdicts_and_details_and_nothing_without_cells() -> None:
    matrix = _grid_matrix()
    section = render_checkpoint_html(matrix)
    assert 'id="checkpoint-compat"' in section and section.count('class="cell ckpt"') == 4
    assert 'data-status="fails"' in section and "missing &#x27;decoder.final_norm.weight&#x27;" in section
    assert section in render_html(matrix)
    assert render_checkpoint_html(Matrix()) == "" and [g.family for g in checkpoint_grids(matrix)] == [
        "llama", "qwen3_moe"]


def test_details_lose_the_caches_staging_paths() -> None:
    crashed = {"verdict": "error", "details": "megatron-core 0.12.1 could not write it: CheckpointError: writing the "
               "torch_dist checkpoint /root/.cache/mcore-compat/ckpt_compat/.0.12.1-llama-2796.wcq/mc failed"}
    (cell,) = cells_from_result(_result("llama", "0.12.3", {"0.12.1": crashed}), platform="cpu")
    assert cell["details"] == ("megatron-core 0.12.1 could not write it: CheckpointError: writing the torch_dist "
                               "checkpoint <entry>/mc failed")
