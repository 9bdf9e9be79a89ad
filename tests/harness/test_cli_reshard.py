"""`mcore-compat reshard` wires bridge.parallel.reshard to the CLI: bit-exact, atomic, clear errors."""

from __future__ import annotations

from pathlib import Path

import torch

from bridge.parallel.layout_io import load_full_state, save_layout
from bridge.parallel.state import layout_for, split_full_state
from harness.cli import main


def _full() -> tuple[dict[str, torch.Tensor], dict[str, tuple[str, dict]]]:
    g = torch.Generator().manual_seed(0)
    full = {
        "embedding.word_embeddings.weight": torch.randn(100, 8, generator=g),
        "decoder.layers.0.mlp.linear_fc1.weight": torch.randn(32, 8, generator=g),
        "decoder.layers.0.mlp.linear_fc2.weight": torch.randn(8, 16, generator=g),
        "decoder.layers.1.mlp.linear_fc1.weight": torch.randn(32, 8, generator=g),
        "decoder.layers.1.mlp.linear_fc2.weight": torch.randn(8, 16, generator=g),
        "decoder.final_layernorm.weight": torch.randn(8, generator=g),
        "output_layer.weight": torch.randn(100, 8, generator=g),
    }
    kinds = {n: ("gated", {}) if "fc1" in n else ("row", {}) if "fc2" in n else ("replicated", {}) for n in full}
    for n in ("embedding.word_embeddings.weight", "output_layer.weight"):
        kinds[n] = ("vocab", {"divisible_by": 4})
    return full, kinds


def test_reshard_cli_round_trip(tmp_path: Path, capsys) -> None:
    full, kinds = _full()
    shards = split_full_state(full, kinds, tp=2, pp=2)
    save_layout(tmp_path / "a", shards, layout_for(full, kinds, tp=2, pp=2))
    assert main(["reshard", str(tmp_path / "a"), str(tmp_path / "b"), "--tp", "1", "--pp", "1"]) == 0
    assert "TP=1, PP=1" in capsys.readouterr().out
    _, back = load_full_state(tmp_path / "b")
    assert sorted(back) == sorted(full)
    assert all(torch.equal(back[n], t) for n, t in full.items())


def test_reshard_cli_bad_layout_is_exit_1_and_writes_nothing(tmp_path: Path, capsys) -> None:
    full, kinds = _full()
    save_layout(tmp_path / "a", split_full_state(full, kinds, tp=1, pp=1), layout_for(full, kinds, tp=1, pp=1))
    assert main(["reshard", str(tmp_path / "a"), str(tmp_path / "b"), "--tp", "1", "--pp", "3"]) == 1
    assert "error" in capsys.readouterr().err  # errors go to stderr, as convert's and export's do
    assert not (tmp_path / "b").exists()
