"""The whole cross-version checkpoint grid through ``mcore-compat sweep`` (hours of CPU: slow).

Every grid pair of every family must get a cell; no cell may fail or differ in logits unless migrate-ckpt fixes
it (``loads_after_migrate``); and the probe may give up (``error``) only on a writer whose own save failed, so
a reader-side crash is never hidden behind a writer's. The fast representative is test_ckpt_compat_release.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.matrix import load_matrix
from harness.probes.catalog import family_names
from harness.probes.ckpt_grid import grid_pairs, probe_name
from harness.versions import DYNAMIC_RELEASES

pytestmark = [pytest.mark.slow, pytest.mark.network]


def test_every_grid_cell_is_judged_and_only_a_writers_own_failure_is_an_error(tmp_path: Path) -> None:
    tests = ",".join(probe_name(f) for f in family_names())
    revisions = [f"pypi:{v}" for v in DYNAMIC_RELEASES]
    assert main(["sweep", *revisions, "--tests", tests, "--fresh-matrix", "--out", str(tmp_path),
                 "--no-progress"]) == 0
    cells = {(c["family"], c["writer"], c["reader"]): c for c in load_matrix(tmp_path / "matrix.json").checkpoint_compat}
    expected = {(f, w, r) for f in family_names() for w, r in grid_pairs(f)}
    assert expected - cells.keys() == set()
    broken = {k: c["details"] for k, c in cells.items() if c["verdict"] in ("fails", "logits_differ")}
    assert broken == {}, json.dumps({" ".join(k): v for k, v in sorted(broken.items())}, indent=1)[:4000]
    reader_errors = {k: c["details"] for k, c in cells.items()
                     if c["verdict"] == "error" and "could not write it" not in c["details"]}
    assert reader_errors == {}, json.dumps({" ".join(k): v for k, v in sorted(reader_errors.items())}, indent=1)[:4000]
