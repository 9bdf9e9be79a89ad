"""One writer discipline: no CLI verb that writes a directory replaces one that is not a checkpoint.

A folder holding only ``thesis.txt`` survives every writer, ``--overwrite`` or not, and no staging
directory is left beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from tests.helpers.tiny import make_hf_checkpoint


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-writers")
    hf = make_hf_checkpoint(root / "hf", seed=5)
    assert main(["convert", str(hf), str(root / "layout"), "--tp", "2", "--no-progress"]) == 0
    assert main(["import-ckpt", str(hf), str(root / "torch_dist"), "--no-progress"]) == 0
    return {"hf": hf, "layout": root / "layout", "torch_dist": root / "torch_dist"}


WRITERS = {
    "convert": lambda s, dst: ["convert", str(s["hf"]), dst, "--no-progress"],
    "convert-torch_dist": lambda s, dst: ["convert", str(s["hf"]), dst, "--format", "torch_dist", "--no-progress"],
    "export": lambda s, dst: ["export", str(s["layout"]), dst, "--no-progress"],
    "import-ckpt": lambda s, dst: ["import-ckpt", str(s["hf"]), dst, "--no-progress"],
    "export-ckpt": lambda s, dst: ["export-ckpt", str(s["torch_dist"]), dst, "--no-progress"],
    "reshard": lambda s, dst: ["reshard", str(s["layout"]), dst, "--tp", "1", "--pp", "1"],
}


@pytest.mark.parametrize("verb", sorted(WRITERS))
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_that_is_not_a_checkpoint_survives_every_writer(
    sources: dict[str, Path], tmp_path: Path, verb: str, overwrite: bool, capsys
) -> None:
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "thesis.txt").write_text("four years of work")
    argv = WRITERS[verb](sources, str(target)) + (["--overwrite"] if overwrite else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert ("does not look like a checkpoint" if overwrite else "already exists") in err
    assert [p.name for p in target.iterdir()] == ["thesis.txt"]
    assert (target / "thesis.txt").read_text() == "four years of work"
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]


def test_import_ckpt_then_export_ckpt_restores_the_checkpoint(sources: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["export-ckpt", str(sources["torch_dist"]), str(tmp_path / "back"), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == \
        (sources["hf"] / "model.safetensors").read_bytes()
