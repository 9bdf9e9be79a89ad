"""Kimi-K2: a trust_remote_code DeepSeek-V3 registered by architecture string, against HF on CPU (fp32, eager).

Its checkpoints (``harness.probes.fixtures.kimi_k2``) carry ``auto_map`` and their own code files, so
loading one follows :mod:`bridge.trust`: refused unless trusted, and then HF's reference runs the
checkpoint's code. Measured with MCore 0.16.1 (max |logit diff|, budget 1e-5): yarn 2.7e-6, tied 1.9e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import PretrainedConfig

from bridge import AutoBridge
from bridge.errors import ConfigError, TrustRemoteCodeError
from bridge.models.kimi_k2.bridge import ARCHITECTURE, KimiK2Bridge
from harness.probes.fixtures.kimi_k2 import make_kimi_k2_checkpoint
from tests.bridge.models.family_checks import PARITY_ATOL, assert_bit_exact_export, build, max_abs_diff, token_ids
from tests.bridge.test_distributed import _free_port

ROOT = Path(__file__).resolve().parents[3]
VARIANTS = {"yarn": 0, "tied": 1}  # index into KimiK2Bridge.representative_configs()


def _perturb(model: torch.nn.Module) -> None:
    """Every parameter + 0.1 N(0, 1); the routing bias (zeros after init) + 0.5 N(0, 1), so it changes routing."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=gen) * 0.1)
        for name, buf in sorted(model.named_buffers()):
            if name.endswith("e_score_correction_bias"):
                buf.add_(torch.randn(buf.shape, generator=gen) * 0.5)


def _checkpoint(name: str, root: Path) -> tuple[Any, Path]:
    cfg = KimiK2Bridge.representative_configs()[VARIANTS[name]]
    return cfg, make_kimi_k2_checkpoint(root / "hf", cfg, prepare=_perturb)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    return _checkpoint(request.param, tmp_path_factory.mktemp(f"kimi_k2-{request.param}"))


def test_checkpoint_carries_its_code(variant: tuple[Any, Path]) -> None:
    _, path = variant
    saved = json.loads((path / "config.json").read_text())
    assert (saved["architectures"], saved["model_type"]) == ([ARCHITECTURE], "kimi_k2")
    assert saved["auto_map"]["AutoModelForCausalLM"] == "modeling_kimi_k2.KimiK2ForCausalLM"
    assert {"configuration_kimi_k2.py", "modeling_kimi_k2.py"} <= {p.name for p in path.iterdir()}


@pytest.mark.parametrize("trust", [None, False], ids=["default", "explicit-false"])
def test_untrusted_load_is_refused(variant: tuple[Any, Path], trust: bool | None) -> None:
    _, path = variant
    with pytest.raises(TrustRemoteCodeError, match="trust_remote_code=True"):
        AutoBridge.from_hf_pretrained(path, trust_remote_code=trust)


def test_trusted_parity_and_bit_exact_export(variant: tuple[Any, Path], tmp_path: Path, fresh_parallel_state) -> None:
    cfg, path = variant
    bridge, model = build(path, trust_remote_code=True)
    assert type(bridge.bridge) is KimiK2Bridge
    assert type(bridge.hf_config).__name__ == "KimiK2Config"  # the checkpoint's own class
    mcore = model[0].config
    assert (type(mcore).__name__, mcore.moe_router_score_function, mcore.moe_router_enable_expert_bias) == (
        "MLATransformerConfig", "sigmoid", True)
    assert mcore.moe_router_topk_scaling_factor == pytest.approx(2.827)
    ids = token_ids(cfg.vocab_size)
    assert max_abs_diff(model, path, ids, cfg.vocab_size, trust_remote_code=True) <= PARITY_ATOL
    exported = assert_bit_exact_export(bridge, model, path, tmp_path / "out", ids, trust_remote_code=True)
    assert sum(n.endswith("e_score_correction_bias") for n in exported) == cfg.num_hidden_layers - 1


def test_registered_by_string_without_importing_any_modelling_code() -> None:
    assert (KimiK2Bridge.registration, KimiK2Bridge.hf_class) == ("string", None)
    code = ("import sys, bridge.models, bridge.registry as r; "
            f"assert r.bridge_for_architectures([{ARCHITECTURE!r}]).family == 'kimi_k2'; "
            "print(sorted(m for m in sys.modules if m.startswith(('transformers_modules', 'transformers.models.deepseek'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


def test_a_plain_config_builds_the_provider_without_code() -> None:
    """Inspection needs no trust: a PretrainedConfig with Kimi-K2's keys gives the provider."""
    provider = KimiK2Bridge().provider_bridge(KimiK2Bridge.representative_configs()[0])
    o = provider.config_overrides
    assert (provider.num_moe_experts, provider.moe_router_topk, o["moe_layer_freq"], o["rope_type"]) == (
        8, 4, [0, 1, 1], "yarn")
    with pytest.raises(ConfigError, match="Is this checkpoint a KimiK2ForCausalLM"):
        KimiK2Bridge().provider_bridge(PretrainedConfig(architectures=[ARCHITECTURE], hidden_size=64))


@pytest.mark.slow
def test_expert_parallel_ep2_matches_hf_and_exports_bit_exact(tmp_path: Path) -> None:
    """Two gloo ranks (4 experts each), the checkpoint trusted explicitly."""
    _, path = _checkpoint("tied", tmp_path)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={_free_port()}",
           "--master-addr=127.0.0.1", str(ROOT / "scripts" / "parallel_parity.py"), "--hf", str(path), "--ep", "2",
           "--trust-remote-code", "--out-dir", str(tmp_path / "out"), "--report", str(report)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rep = json.loads(report.read_text())
    assert (rep["world_size"], rep["ep"]) == (2, 2)
    assert rep["max_abs_diff"] <= PARITY_ATOL, rep
    assert rep["export_bit_exact"], rep["export_mismatches"]
