"""HF -> torch_dist -> HF in one process (TP = PP = 1): bit-exact export, same logits, Megatron-LM's layout,
the record export needs, and the writer discipline (atomic, never replacing a folder that is not a checkpoint)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from bridge.auto_bridge import AutoBridge
from bridge.errors import CheckpointError
from bridge.megatron_ckpt.layout import RECORD_FILE, TRACKER_FILE

import_ckpt, export_ckpt = AutoBridge.import_ckpt, AutoBridge.export_ckpt

pytestmark = pytest.mark.usefixtures("fresh_parallel_state")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bridge.runtime import reset_model_parallel
    from tests.helpers.tiny import make_hf_checkpoint

    root = tmp_path_factory.mktemp("megatron-ckpt")
    hf = make_hf_checkpoint(root / "hf", seed=4)
    (hf / "tokenizer_config.json").write_text('{"model_max_length": 128}')
    reset_model_parallel()
    out = import_ckpt(hf, root / "mc", offline=False)  # the model-built writer (test_offline_export: the other)
    reset_model_parallel()
    return hf, out


def test_the_layout_is_megatron_lms_with_the_record_and_hf_files_next_to_it(imported) -> None:
    hf, mc = imported
    assert (mc / TRACKER_FILE).read_text() == "0"
    names = sorted(p.name for p in (mc / "iter_0000000").iterdir())
    assert {"metadata.json", "common.pt", ".metadata"} <= set(names) and any(n.endswith(".distcp") for n in names)
    assert json.loads((mc / "iter_0000000" / "metadata.json").read_text())["sharded_backend"] == "torch_dist"
    assert sorted(p.name for p in (mc / "hf").iterdir()) == ["config.json", "generation_config.json",
                                                             "tokenizer_config.json"]
    record = json.loads((mc / RECORD_FILE).read_text())
    import megatron.core

    assert record["mcore_version"] == megatron.core.__version__
    assert record["model_class"] == "gpt" and record["architecture"] == "LlamaForCausalLM"
    assert record["parallel"] == {"tp": 1, "pp": 1, "ep": 1, "world_size": 1}
    assert record["vocab_padding"]["vocab_size"] == 96 and record["vocab_padding"]["padded_vocab_size"] == 96
    assert record["params"]["decoder.layers.self_attention.linear_qkv.weight"]["shape"] == [2, 128, 64]


def test_common_pt_holds_the_args_megatron_lm_reads(imported) -> None:
    from megatron.core import dist_checkpointing

    common = dist_checkpointing.load_common_state_dict(str(imported[1] / "iter_0000000"))
    args = common["args"]
    assert isinstance(args, argparse.Namespace) and common["checkpoint_version"] == 3.0 and common["iteration"] == 0
    assert (args.num_layers, args.hidden_size, args.num_attention_heads, args.num_query_groups) == (2, 64, 4, 2)
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size) == (1, 1)
    assert args.ckpt_format == "torch_dist" and args.swiglu and args.untie_embeddings_and_output_weights
    assert args.padded_vocab_size == 96 and args.no_save_optim and args.no_save_rng


def test_export_is_bit_exact_and_needs_no_other_input(imported, tmp_path: Path) -> None:
    hf, mc = imported
    out = export_ckpt(mc, tmp_path / "back")
    assert (out / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()
    assert json.loads((out / "tokenizer_config.json").read_text()) == {"model_max_length": 128}


def test_load_megatron_model_gives_the_hf_logits(imported) -> None:
    from bridge.inference import forward_logits
    from tests.helpers.tiny import hf_logits

    hf, mc = imported
    model = AutoBridge.from_hf_pretrained(hf).load_megatron_model(mc)
    assert isinstance(model, list) and len(model) == 1
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))
    diff = (forward_logits(model, ids) - hf_logits(hf, ids)).abs().max().item()
    assert diff <= 1e-5


def test_import_ckpt_never_replaces_a_folder_that_is_not_a_checkpoint(imported, tmp_path: Path) -> None:
    target = tmp_path / "thesis"
    target.mkdir()
    (target / "thesis.txt").write_text("four years of work")
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match="does not look like a checkpoint" if overwrite else "already exists"):
            import_ckpt(imported[0], target, overwrite=overwrite)
        with pytest.raises(CheckpointError, match="does not look like a checkpoint" if overwrite else "already exists"):
            export_ckpt(imported[1], target, overwrite=overwrite)
    assert [p.name for p in target.iterdir()] == ["thesis.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]


def test_import_ckpt_over_a_previous_checkpoint_needs_overwrite_and_replaces_it(imported, tmp_path: Path) -> None:
    hf, _ = imported
    import_ckpt(hf, tmp_path / "mc", params_dtype=torch.bfloat16)
    with pytest.raises(CheckpointError, match="already exists"):
        import_ckpt(hf, tmp_path / "mc")
    import_ckpt(hf, tmp_path / "mc", overwrite=True)
    assert json.loads((tmp_path / "mc" / RECORD_FILE).read_text())["provider"]["params_dtype"] == {"dtype": "float32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mc"]


def test_a_moe_model_with_dense_layers_round_trips(tmp_path: Path) -> None:
    """The record's moe_layer_freq (a 0/1 list) comes back as a list: JSON has no tuples, and MCore reads a tuple as
    no list, so the loading model was all-MoE and asked for stacked keys the checkpoint never had (found on
    DeepSeek-V3, whose first block is dense)."""
    from bridge.parity import compare_checkpoints
    from bridge.runtime import reset_model_parallel
    from harness.probes.tiny_models import family_variants, write_checkpoint

    variant = family_variants("deepseek_v3")[0]
    hf = write_checkpoint(variant, tmp_path / "hf", seed=0)
    mc = import_ckpt(hf, tmp_path / "mc")
    assert json.loads((mc / RECORD_FILE).read_text())["provider"]["moe_layer_freq"] == [0, 1, 1]
    reset_model_parallel()
    comparison = compare_checkpoints(hf, export_ckpt(mc, tmp_path / "back"))
    assert comparison.bit_exact, (comparison.missing, comparison.unexpected, comparison.different)
