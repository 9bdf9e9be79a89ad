"""GPT-OSS: attention sinks, the clamped SwiGLU with its ``+1``, a biased top-k-then-softmax router, experts
stored stacked (``gate_up_proj`` with gate/up interleaved), alternating sliding/full layers and YaRN, against HF
on CPU (fp32, eager); EP=2 and PP=2 over gloo (slow); the refusals, on 0.16.1 and (subprocess) on 0.12.0, which predates the
features (megatron-core 0.15.0 brought them all).

Measured with MCore 0.16.1 (budget 1e-5): see :data:`MEASURED`. Attention and the experts' layout are exact;
the MoE block differs by rounding only (MCore scales the activation and the ``linear_fc2`` bias by the routing
weight, HF the expert's output), as for Mixtral. HybridModel on 0.19.2 gives the same numbers
(tests/bridge/test_hybrid_releases.py runs every family's representative configs there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import GptOssConfig, GptOssForCausalLM

from bridge.errors import ConfigError, UnsupportedFeatureError
from bridge.inference import forward_logits
from bridge.models.gpt_oss.bridge import GptOssBridge
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, hf_model_logits, make_checkpoint, max_abs_diff, token_ids,
)
from tests.bridge.test_distributed import _torchrun

YARN = dict(rope_type="yarn", rope_theta=150000.0, factor=32.0, beta_fast=32.0, beta_slow=1.0, truncate=False,
            original_max_position_embeddings=128)
TINY = dict(vocab_size=96, hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=5,
            max_position_embeddings=4096, initializer_range=0.2, rope_parameters=YARN)
VARIANTS = {
    # HF's layout: layer 0 sliding, layer 1 full; YaRN without truncation; a limit of 1.0 so the clamps act
    "yarn_clamped": dict(swiglu_limit=1.0),
    # tied embeddings, plain RoPE, full then sliding, top-3 of 4, HF's default limit 7.0
    "tied_rope_top3": dict(tie_word_embeddings=True, num_experts_per_tok=3, layer_types=["full_attention",
                           "sliding_attention"], rope_parameters=dict(rope_type="default", rope_theta=10000.0)),
}
MEASURED = {"yarn_clamped": 2.9e-6, "tied_rope_top3": 2.9e-6}  # max |MCore - HF| logit, MCore 0.16.1


def _checkpoint(name: str, root: Path) -> tuple[dict, Path]:
    cfg = {**TINY, **VARIANTS[name]}
    return cfg, make_checkpoint(root / "hf", GptOssConfig(**cfg), GptOssForCausalLM)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    return (request.param, *_checkpoint(request.param, tmp_path_factory.mktemp(f"gpt_oss-{request.param}")))


@pytest.fixture(scope="module")
def clamped(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _checkpoint("yarn_clamped", tmp_path_factory.mktemp("gpt_oss-features"))


def test_parity_and_bit_exact_round_trip(variant, tmp_path: Path, fresh_parallel_state) -> None:
    name, cfg, path = variant
    bridge, model = build(path)
    mcore = model[0].config
    assert (mcore.softmax_type, mcore.activation_func_clamp_value, mcore.glu_linear_offset) == (
        "learnable", cfg.get("swiglu_limit", 7.0), 1.0)
    assert (mcore.moe_router_topk, mcore.moe_router_pre_softmax, mcore.window_size) == (
        cfg["num_experts_per_tok"], False, (cfg["sliding_window"] - 1, 0))
    ids = token_ids(cfg["vocab_size"])
    assert max_abs_diff(model, path, ids, cfg["vocab_size"]) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids)
    assert sum(".mlp.experts." in n for n in exported) == 4 * cfg["num_hidden_layers"]  # stacked: 4 per layer
    assert ("lm_head.weight" in exported) is not cfg.get("tie_word_embeddings", False)


def test_experts_sinks_and_router_land_where_hf_uses_them(clamped, fresh_parallel_state) -> None:
    cfg, path = clamped
    _, model = build(path)
    hf = load_file(path / "model.safetensors")
    layer = model[0].decoder.layers[1]
    h = "model.layers.1"
    assert torch.equal(layer.self_attention.core_attention.softmax_offset, hf[f"{h}.self_attn.sinks"])
    assert torch.equal(layer.mlp.router.bias, hf[f"{h}.mlp.router.bias"])
    for e in range(cfg["num_local_experts"]):
        expert, w = layer.mlp.experts.local_experts[e], hf[f"{h}.mlp.experts.gate_up_proj"][e]
        assert torch.equal(expert.linear_fc1.weight, torch.cat([w[:, 0::2], w[:, 1::2]], dim=1).T)  # [gate; up]
        assert torch.equal(expert.linear_fc2.weight, hf[f"{h}.mlp.experts.down_proj"][e].T)
        assert torch.equal(expert.linear_fc2.bias, hf[f"{h}.mlp.experts.down_proj_bias"][e])


def _configs(model) -> list:
    return list({id(m.config): m.config for m in model[0].modules() if hasattr(m, "config")}.values())


def test_each_feature_changes_the_answer(clamped, tmp_path: Path, fresh_parallel_state) -> None:
    """Dropping the sinks, the clamp or the +1 moves MCore's logits away from HF's; HF without YaRN, or with the
    window one token off, moves away from MCore's."""
    cfg, path = clamped
    _, model = build(path)
    ids = token_ids(cfg["vocab_size"])
    ours = forward_logits(model, ids, vocab_size=cfg["vocab_size"])
    ref = hf_model_logits(path, ids)
    assert (ours - ref).abs().max() <= PARITY_ATOL
    off = {"activation_func_clamp_value": None, "glu_linear_offset": 0.0}
    for name, value in off.items():  # read at every forward (experts hold config copies: set them all)
        kept = [getattr(c, name) for c in _configs(model)]
        for c in _configs(model):
            setattr(c, name, value)
        assert (forward_logits(model, ids, vocab_size=cfg["vocab_size"]) - ref).abs().max() > 1e-3, name
        for c, v in zip(_configs(model), kept):
            setattr(c, name, v)
    attention = [layer.self_attention.core_attention for layer in model[0].decoder.layers]
    sinks = [a.softmax_offset for a in attention]
    for a in attention:
        a.softmax_offset = None  # the vanilla softmax
    assert (forward_logits(model, ids, vocab_size=cfg["vocab_size"]) - ref).abs().max() > 1e-3, "sinks"
    for a, s in zip(attention, sinks):
        a.softmax_offset = s
    for edit in ({"rope_parameters": {"rope_type": "default", "rope_theta": 150000.0}},
                 {"sliding_window": cfg["sliding_window"] - 1}, {"sliding_window": cfg["sliding_window"] + 1}):
        other = tmp_path / f"hf-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(path, other)
        config = json.loads((other / "config.json").read_text())
        (other / "config.json").write_text(json.dumps({**config, **edit}))
        assert (hf_model_logits(other, ids) - ours).abs().max() > 1e-3, edit


@pytest.mark.parametrize("overrides, match", [
    (dict(swiglu_alpha=1.5), "quick_gelu"),
    (dict(attention_bias=False), "attention_bias=False"),
    (dict(num_experts_per_tok=1), "num_experts_per_tok=1"),
    (dict(rope_parameters={**YARN, "attention_factor": 2.0}), "attention_factor"),
])
def test_unrepresentable_configs_are_refused(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GptOssBridge().provider_bridge(GptOssConfig(**{**TINY, **overrides}))


def test_tensor_parallelism_is_refused_with_the_reason() -> None:
    provider = GptOssBridge().provider_bridge(GptOssConfig(**TINY))
    provider.tensor_model_parallel_size = 2
    with pytest.raises(UnsupportedFeatureError, match="expert_tensor_parallel_size=1.*use TP=1"):
        provider.finalize()


@pytest.mark.slow  # two torchrun workers: 64-80 s on the shared 2-core box (load 8-12)
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    """Two gloo ranks with two experts each: each imports its experts' slices of the stacked tensors, and the
    export stacks all four back (ExpertStacker on rank 0)."""
    path = make_checkpoint(tmp_path / "hf", GptOssConfig(**TINY), GptOssForCausalLM)
    rep = _torchrun(path, 1, 1, tmp_path / "out", ep=2)
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]


@pytest.mark.slow
def test_pipeline_parallel_pp2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "hf", GptOssConfig(**{**TINY, **VARIANTS["tied_rope_top3"]}), GptOssForCausalLM)
    rep = _torchrun(path, 1, 2, tmp_path / "out")
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]


# -- other releases (subprocesses with the release first on PYTHONPATH; tests/helpers/hybrid_runs.py) --------------

def _on_release(spec: str, tmp_path: Path, model_classes: str) -> dict[str, dict]:
    from tests.bridge.test_hybrid_releases import _release, run_families

    report = run_families(_release(spec), tmp_path, model_classes=model_classes, families=("gpt_oss",))
    assert report["mcore_version"] == spec.removeprefix("pypi:")
    return {f"{r['requested']}/{r['variant'].split('(')[0]}": r for r in report["variants"]}


_REFUSAL_SCRIPT = """
import json, sys
from transformers import GptOssConfig
from bridge.errors import UnsupportedFeatureError
from bridge.models.gpt_oss.bridge import GptOssBridge
out = {}
for i, config in enumerate(GptOssBridge.representative_configs()):
    try:
        GptOssBridge().provider_bridge(config).finalize()
        out[i] = "built"
    except UnsupportedFeatureError as exc:
        out[i] = f"UnsupportedFeatureError: {exc}"
print(json.dumps(out))
"""


@pytest.mark.network
def test_refused_with_the_release_on_0_14() -> None:
    """0.14.0, the last release without the features: each representative config refused before building, naming
    what is missing (YaRN only where the config uses it) and the release that brings it."""
    import subprocess
    import sys

    from tests.bridge.test_hybrid_releases import ROOT, _env, _release

    proc = subprocess.run([sys.executable, "-c", _REFUSAL_SCRIPT], env=_env(_release("pypi:0.14.0")), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(rows) == ["0", "1"]
    for key, text in rows.items():
        assert text.startswith("UnsupportedFeatureError: GPT-OSS needs attention sinks"), text
        assert "megatron-core 0.14.0 lacks" in text and "megatron-core>=0.15.0" in text, text
        assert ("'yarn_rope'" in text) is (key == "0"), text  # the second config uses plain RoPE


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("spec, model_classes", [("pypi:0.15.0", "auto"), ("pypi:0.18.2", "auto,hybrid")])
def test_parity_and_export_on_other_releases(spec: str, model_classes: str, tmp_path: Path) -> None:
    """0.15.0, the first release with every feature (GPTModel), and 0.18.2 (GPTModel and HybridModel); 0.19.2 runs in
    the default suite with every family (tests/bridge/test_hybrid_releases.py)."""
    rows = _on_release(spec, tmp_path, model_classes)
    assert len(rows) == 2 * len(model_classes.split(","))
    for r in rows.values():
        assert r["passed"] and r["export_bit_exact"] and r["max_abs_diff"] <= PARITY_ATOL, r
