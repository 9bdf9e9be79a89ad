"""Tiny per-family checkpoints, the family verdict on a refused variant, and the two-process verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig

from bridge.models import FAMILIES
from bridge.registry import registered_bridges
from harness.errors import ProbeError
from harness.probes.payload_families import run_variant
from harness.probes.payload_parallel import judge_layout
from harness.probes.tiny_models import TinyVariant, family_variants, write_checkpoint


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_variants_are_the_bridges_representative_configs_with_distinct_names(family: str) -> None:
    variants = family_variants(family)
    bridge = next(b for b in registered_bridges() if b.family == family)
    assert len(variants) == len(bridge.representative_configs())
    names = [v.name for v in variants]
    assert len(set(names)) == len(names) and names[0] == "v0(base)"
    assert all(name.startswith(f"v{i}(") for i, name in enumerate(names))
    assert all(v.trust_remote_code == (family in {"tiny_gpt", "kimi_k2"}) for v in variants)  # custom code ships


def test_unknown_family_is_a_probe_error() -> None:
    with pytest.raises(ProbeError, match="known: .*llama"):
        family_variants("gpt5")


def test_checkpoints_are_perturbed_buffers_included(tmp_path: Path) -> None:
    variant = family_variants("deepseek_v3")[0]
    tensors = load_file(write_checkpoint(variant, tmp_path / "ds") / "model.safetensors")
    biases = [t for n, t in tensors.items() if n.endswith("e_score_correction_bias")]
    assert biases and all(t.abs().sum() > 0 for t in biases)  # HF initialises them to zeros
    norms = [t for n, t in tensors.items() if n.endswith("layernorm.weight")]
    assert all(not torch.equal(t, torch.ones_like(t)) for t in norms)


def test_tiny_gpt_checkpoints_carry_their_code(tmp_path: Path) -> None:
    path = write_checkpoint(family_variants("tiny_gpt")[0], tmp_path / "tg")
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["TinyGPTForCausalLM"] and "auto_map" in config
    assert sorted(p.name for p in path.glob("*.py")) == ["configuration_tiny_gpt.py", "modeling_tiny_gpt.py"]


def test_a_variant_the_bridge_refuses_fails_with_its_message(tmp_path: Path) -> None:
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, attention_bias=True)
    ok, text, metrics = run_variant(TinyVariant("llama", "v9(attention_bias)", config), tmp_path, seed=0)
    assert not ok and metrics == {}
    assert text.startswith("v9(attention_bias): refused by the bridge: ConfigError: attention_bias=True")


def _rank(rank: int, **extra: object) -> dict:
    return {"rank": rank, "backend": "gloo", "warnings": [], **extra}


def test_layouts_pass_only_with_close_logits_and_a_bit_exact_export() -> None:
    good = [_rank(0, export_bit_exact=True, export_summary="38 tensors bit-exact"),
            _rank(1, max_abs_diff=2e-6, cosine=1.0)]
    row = judge_layout(good, None, tp=1, pp=2, tied=True, seconds=1.0).rows["llama"]
    assert row.status == "passed" and row.details.startswith("TP=1 x PP=2 (tied embeddings) over gloo")
    far = [good[0], _rank(1, max_abs_diff=3e-3, cosine=0.99)]
    assert judge_layout(far, None, tp=1, pp=2, tied=True, seconds=1.0).rows["llama"].status == "failed"
    inexact = [_rank(0, export_bit_exact=False, export_summary="1 different: x"), good[1]]
    assert judge_layout(inexact, None, tp=1, pp=2, tied=True, seconds=1.0).rows["llama"].status == "failed"


def test_layout_errors_name_the_rank_or_the_missing_workers() -> None:
    crashed = [_rank(0, error="RuntimeError: boom (at megatron/core/x.py:1)"), _rank(1, max_abs_diff=0.0, cosine=1.0)]
    row = judge_layout(crashed, None, tp=2, pp=1, tied=False, seconds=1.0).rows["llama"]
    assert row.status == "failed" and "rank 0: RuntimeError: boom" in row.details
    row = judge_layout([_rank(0)], None, tp=2, pp=1, tied=False, seconds=1.0).rows["llama"]
    assert row.status == "failed" and "only 1 of 2 workers reported" in row.details
    row = judge_layout([], "the 2 workers did not finish within 5 s", tp=2, pp=1, tied=False, seconds=5.0).rows["llama"]
    assert row.status == "failed" and row.details.endswith("did not finish within 5 s")
