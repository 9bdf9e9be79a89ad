"""migrate-ckpt under the installed megatron-core: key renames as a property-tested pair, the key diff, the
writer discipline, and the errors that name both releases and the first differing key.

The migration between releases that differ (a GPT-layout checkpoint of 0.16.1 into 0.19.2's HybridModel) runs in
tests/harness/probes/test_ckpt_compat_release.py, as the checkpoint probe's cell does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import compat
from bridge.auto_bridge import AutoBridge
from bridge.errors import CheckpointError
from bridge.megatron_ckpt.keys import KeyDiff, key_diff
from bridge.megatron_ckpt.migrate import KEY_RENAMES, KeyRename, migrate_checkpoint, to_new_key, to_old_key

pytestmark = pytest.mark.usefixtures("fresh_parallel_state")
INSTALLED = str(compat.installed_version())
SEGMENTS = ("decoder", "layers", "final_layernorm", "final_norm", "self_attention", "linear_qkv", "weight", "0", "mlp",
            "kv_layernorm", "linear_kv_up_proj", "layer_norm_weight")


def storage_keys(*, min_parts: int = 1, max_parts: int = 6) -> st.SearchStrategy[str]:
    """Dotted storage keys from MCore-like segments (renamed fragments included)."""
    return st.lists(st.sampled_from(SEGMENTS), min_size=min_parts, max_size=max_parts).map(".".join)


@settings(max_examples=200, deadline=None)
@given(storage_keys())
def test_a_renamed_key_renames_back(key: str) -> None:
    old_layout = to_old_key(key)  # a key as the old layout names it
    assert to_old_key(to_new_key(old_layout)) == old_layout
    assert all(r.new not in old_layout for r in KEY_RENAMES)


def test_the_rename_table_moves_gpts_final_norm_to_the_hybrid_name() -> None:
    assert to_new_key("decoder.final_layernorm.weight") == "decoder.final_norm.weight"
    assert to_old_key("decoder.final_norm.weight") == "decoder.final_layernorm.weight"
    assert to_new_key("a.b.", (KeyRename("a.", "x.", "test"),)) == "x.b."


def test_the_rename_table_moves_mlas_kv_norm_into_the_up_projection_as_019_asks() -> None:
    old = "decoder.layers.0.self_attention.kv_layernorm.weight"  # DeepSeek-V2 written by 0.14-0.18
    assert to_new_key(old) == "decoder.layers.0.self_attention.linear_kv_up_proj.layer_norm_weight"
    assert to_old_key(to_new_key(old)) == old


def test_the_first_difference_ignores_extra_state_and_says_which_kind() -> None:
    diff = KeyDiff(missing=("a._extra_state", "b.weight"), unexpected=("c.weight",), shapes=(("d", (2,), (3,)),))
    assert diff.first() == "missing 'b.weight' (and 0 more)"
    assert KeyDiff(shapes=(("d", (2,), (3,)),)).first() == "shape of 'd': stored [2], expected [3]"
    assert KeyDiff(missing=("a._extra_state",)).first() == "" and not KeyDiff().first()
    assert diff.extra_state_notes() == ["1 _extra_state entries absent from the checkpoint, e.g. 'a._extra_state'"]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bridge.runtime import reset_model_parallel
    from tests.helpers.tiny import make_hf_checkpoint

    root = tmp_path_factory.mktemp("migrate")
    hf = make_hf_checkpoint(root / "hf", seed=6)
    reset_model_parallel()
    out = AutoBridge.import_ckpt(hf, root / "mc", durable=False, offline=False)
    reset_model_parallel()
    return hf, out


def test_the_written_checkpoint_holds_exactly_what_the_model_asks_for(written) -> None:
    hf, mc = written
    model = AutoBridge.from_hf_pretrained(hf).load_megatron_model(mc)
    diff = key_diff(mc / "iter_0000000", {"model": model[0].sharded_state_dict()})
    assert diff.tensors_only().empty, diff


def test_migrating_to_the_installed_release_moves_nothing_and_keeps_the_logits(written, tmp_path: Path) -> None:
    from bridge.inference import forward_logits
    from tests.helpers.tiny import hf_logits

    hf, mc = written
    done = migrate_checkpoint(mc, tmp_path / "out", to_release=INSTALLED, durable=False)
    assert (done.writer, done.release, done.retargeted, done.interop) == (INSTALLED, INSTALLED, 0, False)
    assert json.loads((tmp_path / "out" / "mcore_compat.json").read_text())["mcore_version"] == INSTALLED
    model = AutoBridge.from_hf_pretrained(hf).load_megatron_model(tmp_path / "out")
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))
    assert (forward_logits(model, ids) - hf_logits(hf, ids)).abs().max().item() <= 1e-5


def test_it_runs_only_under_the_target_release(written, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=rf"--to 0\.19\.2 runs under megatron-core 0\.19\.2, but this process "
                                              rf"has {INSTALLED}"):
        migrate_checkpoint(written[1], tmp_path / "out", to_release="0.19.2")
    assert not (tmp_path / "out").exists()


def test_it_never_replaces_a_directory_and_leaves_the_source_alone(written, tmp_path: Path) -> None:
    before = sorted(p.relative_to(written[1]) for p in written[1].rglob("*"))
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.txt").write_text("four years")
    with pytest.raises(CheckpointError, match="already exists and is not empty"):
        migrate_checkpoint(written[1], tmp_path / "thesis", to_release=INSTALLED)
    assert (tmp_path / "thesis" / "thesis.txt").read_text() == "four years"
    assert sorted(p.relative_to(written[1]) for p in written[1].rglob("*")) == before


def test_a_break_it_cannot_map_names_both_releases_and_the_first_differing_key(written, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(written[1], src)
    record = json.loads((src / "mcore_compat.json").read_text())
    record["provider"]["ffn_hidden_size"] += 8  # the recorded model now asks for wider MLP tensors than are stored
    (src / "mcore_compat.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as info:
        migrate_checkpoint(src, tmp_path / "out", to_release=INSTALLED)
    text = str(info.value)
    assert f"written by megatron-core {INSTALLED} (gpt) and cannot be migrated to megatron-core {INSTALLED}" in text
    assert "first differing key: shape of 'decoder.layers.mlp.linear_fc" in text and "stored [" in text
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_the_writers_record_is_refused(written, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(written[1], src)
    (src / "mcore_compat.json").unlink()
    with pytest.raises(CheckpointError, match="has no mcore_compat.json: migrate-ckpt needs the writer's record"):
        migrate_checkpoint(src, tmp_path / "out", to_release=INSTALLED)
