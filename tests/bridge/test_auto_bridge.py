"""End to end on CPU: HF Llama -> MCore GPTModel -> logits parity -> HF export, and every error path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bridge import AutoBridge, UnsupportedModelError, WeightMismatchError
from bridge.inference import forward_logits
from tests.helpers.tiny import TINY_LLAMA, hf_logits, make_hf_checkpoint

VOCAB = TINY_LLAMA["vocab_size"]


def _build(path: Path, **provider_fields):
    bridge = AutoBridge.from_hf_pretrained(path)
    provider = bridge.to_megatron_provider()
    provider.tensor_model_parallel_size = 1
    provider.pipeline_model_parallel_size = 1
    for k, v in provider_fields.items():
        setattr(provider, k, v)
    provider.finalize()
    return bridge, provider.provide_distributed_model(wrap_with_ddp=False)


def _all_tensors(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="gqa-untied"),
        pytest.param({"tie_word_embeddings": True}, id="tied"),
        pytest.param({"num_key_value_heads": 4}, id="mha"),
        pytest.param({"num_key_value_heads": 1}, id="mqa"),
        pytest.param({"rope_theta": 500000.0, "max_position_embeddings": 16384,
                      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
                     id="llama3-rope-scaling"),
        pytest.param({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, id="linear-rope-scaling"),
        pytest.param({"head_dim": 32}, id="head-dim-not-hidden-over-heads"),
    ],
)
def test_seed_usage_parity_and_bit_exact_export(tmp_path: Path, overrides: dict) -> None:
    src = make_hf_checkpoint(tmp_path / "hf", **overrides)
    bridge, model = _build(src)
    assert isinstance(model, list) and len(model) == 1

    ids = torch.randint(0, VOCAB, (2, 17), generator=torch.Generator().manual_seed(0))
    ours = forward_logits(model, ids, vocab_size=VOCAB)
    ref = hf_logits(src, ids)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-5

    out = tmp_path / "export"
    bridge.save_hf_pretrained(model, out)
    before, after = _all_tensors(src), _all_tensors(out)
    assert sorted(after) == sorted(before)
    for name, tensor in before.items():
        assert after[name].dtype == tensor.dtype, name
        assert torch.equal(after[name], tensor), name
    # transformers loads the export and gives the same logits
    assert torch.equal(hf_logits(out, ids), ref)


def test_bf16_checkpoint_keeps_dtype_and_bits(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf", dtype=torch.bfloat16)
    bridge, model = _build(src)
    assert next(model[0].parameters()).dtype == torch.bfloat16
    bridge.save_hf_pretrained(model, tmp_path / "out")
    before, after = _all_tensors(src), _all_tensors(tmp_path / "out")
    assert all(after[n].dtype == torch.bfloat16 and torch.equal(after[n], t) for n, t in before.items())


def test_export_is_durable_by_default_and_durable_false_skips_fsync(tmp_path: Path, monkeypatch) -> None:
    import os

    src = make_hf_checkpoint(tmp_path / "hf", dtype=torch.bfloat16)
    bridge, model = _build(src)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    bridge.save_hf_pretrained(model, tmp_path / "durable")
    assert synced  # shards, companions and directories reach the disk before the rename
    synced.clear()
    bridge.save_hf_pretrained(model, tmp_path / "fast", durable=False)
    assert synced == []
    before = _all_tensors(src)
    for out in ("durable", "fast"):  # same bits either way (the writer keeps the stream's tensors uncopied)
        after = _all_tensors(tmp_path / out)
        assert sorted(after) == sorted(before)
        assert all(torch.equal(after[n], t) and after[n].dtype == t.dtype for n, t in before.items())


def test_export_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    bridge, model = _build(src)
    out = tmp_path / "out"
    bridge.save_hf_pretrained(model, out)
    (out / "keep.txt").write_text("precious")
    with pytest.raises(Exception, match="overwrite"):
        bridge.save_hf_pretrained(model, out)
    assert (out / "keep.txt").read_text() == "precious"
    bridge.save_hf_pretrained(model, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "config.json").exists()
    # a directory that is not a checkpoint is never replaced, even with overwrite=True
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(Exception):
        bridge.save_hf_pretrained(model, other, overwrite=True)
    assert (other / "keep.txt").read_text() == "precious"


def _edit_weights(path: Path, edit) -> None:
    f = path / "model.safetensors"
    tensors = load_file(f)
    edit(tensors)
    save_file(tensors, f, metadata={"format": "pt"})


def test_missing_weight_is_an_error_listing_names(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    _edit_weights(src, lambda t: (t.pop("model.layers.1.mlp.up_proj.weight"), t.pop("model.norm.weight")))
    with pytest.raises(WeightMismatchError) as e:
        _build(src)
    msg = str(e.value)
    assert "missing 2" in msg
    assert msg.index("model.layers.1.mlp.up_proj.weight") < msg.index("model.norm.weight")  # sorted


def test_unexpected_weight_is_an_error_listing_names(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    _edit_weights(src, lambda t: t.update({"model.layers.9.extra.weight": torch.zeros(2)}))
    with pytest.raises(WeightMismatchError, match=r"unexpected 1 tensor\(s\): \['model.layers.9.extra.weight'\]"):
        _build(src)


def test_shape_mismatch_is_an_error_naming_the_parameter(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    _edit_weights(src, lambda t: t.update({"model.layers.0.mlp.down_proj.weight": torch.zeros(64, 64)}))
    with pytest.raises(WeightMismatchError, match="decoder.layers.0.mlp.linear_fc2.weight"):
        _build(src)


def test_tied_checkpoint_with_untied_config_reports_lm_head(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf", tie_word_embeddings=True)
    cfg = json.loads((src / "config.json").read_text())
    cfg["tie_word_embeddings"] = False
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightMismatchError, match="lm_head.weight"):
        _build(src)


def test_typo_architecture_is_not_handled(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    cfg = json.loads((src / "config.json").read_text())
    cfg["architectures"] = ["LlamaForCausalLMM"]
    (src / "config.json").write_text(json.dumps(cfg))
    assert AutoBridge.can_handle(src) is False
    with pytest.raises(UnsupportedModelError) as e:
        AutoBridge.from_hf_pretrained(src)
    assert "'LlamaForCausalLM'" in str(e.value) and "closest" in str(e.value)
    assert "LlamaForCausalLM" in AutoBridge.list_supported_models()


def test_debug_logging_shows_every_conversion_task(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    with caplog.at_level(logging.DEBUG, logger="bridge"):
        bridge, model = _build(src)
    tasks = bridge.get_conversion_tasks(model)
    imports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("import ")]
    assert len(imports) == len(tasks) == len(list(model[0].parameters()))
    assert any("linear_qkv" in m and "q_proj" in m for m in imports)


def test_transformer_config_and_tasks(tmp_path: Path) -> None:
    src = make_hf_checkpoint(tmp_path / "hf")
    bridge = AutoBridge.from_hf_pretrained(src)
    cfg = bridge.transformer_config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_query_groups) == (2, 64, 4, 2)
    assert cfg.normalization == "RMSNorm" and cfg.gated_linear_unit
    assert AutoBridge.can_handle(src)
