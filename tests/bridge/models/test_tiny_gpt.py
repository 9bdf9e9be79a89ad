"""TinyGPT, the trust_remote_code family: its checkpoint code runs only when trusted, on every path.

Each checkpoint's code files append to their own *sentinel* file when imported, so "the code never
ran" is checked directly. Trusted, the family converts with logits parity against the HF custom model
and exports bit-exactly, custom code files included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import PretrainedConfig

from bridge import AutoBridge
from bridge.errors import TrustRemoteCodeError
from bridge.models.tiny_gpt.bridge import TinyGPTBridge
from bridge.trust import SAFE_REPOS, is_safe_repo
from tests.bridge.models.family_checks import (
    PARITY_ATOL, assert_bit_exact_export, build, max_abs_diff, token_ids,
)
from harness.probes.fixtures.tiny_gpt import ARCHITECTURE, CONFIG_MODULE, MODELING_MODULE, make_custom_checkpoint

VOCAB = 128  # TinyGPTSpec default
CODE_FILES = (f"{CONFIG_MODULE}.py", f"{MODELING_MODULE}.py")


@pytest.fixture(scope="module")
def untrusted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(checkpoint, sentinel)``; nothing in this module may trust this checkpoint."""
    root = tmp_path_factory.mktemp("tiny_gpt_untrusted")
    sentinel = root / "sentinel.txt"
    return make_custom_checkpoint(root / "tiny_gpt_never_trusted", sentinel=sentinel, seed=1), sentinel


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def trusted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tied = request.param
    root = tmp_path_factory.mktemp(f"tiny_gpt_trusted_{'tied' if tied else 'untied'}")
    sentinel = root / "sentinel.txt"
    path = make_custom_checkpoint(root / f"tiny_gpt_trusted_{int(tied)}", sentinel=sentinel, seed=2,
                                  tie_word_embeddings=tied)
    return path, sentinel


def _config_dict(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


@pytest.mark.parametrize("trust", [None, False], ids=["default", "explicit-false"])
def test_untrusted_load_is_refused_before_any_code_runs(untrusted: tuple[Path, Path], trust: bool | None) -> None:
    path, sentinel = untrusted
    with pytest.raises(TrustRemoteCodeError) as info:
        AutoBridge.from_hf_pretrained(path, trust_remote_code=trust)
    assert isinstance(info.value, ValueError)
    assert "trust_remote_code=True" in str(info.value)  # says how to enable it
    assert not sentinel.exists()


def test_inspection_paths_run_no_code(untrusted: tuple[Path, Path]) -> None:
    path, sentinel = untrusted
    assert AutoBridge.can_handle(path)
    assert ARCHITECTURE in AutoBridge.list_supported_models()
    # a plain config with the same keys: provider, MCore config and an (unloaded) model, no checkpoint code
    config = PretrainedConfig(**_config_dict(path))
    bridge = AutoBridge.from_hf_config(config)
    assert isinstance(bridge.bridge, TinyGPTBridge)
    provider = bridge.to_megatron_provider(load_weights=False)
    assert (provider.num_layers, provider.num_attention_heads, provider.num_query_groups) == (2, 4, 2)
    assert bridge.transformer_config.ffn_hidden_size == 96
    provider.finalize()
    assert len(provider.provide_distributed_model()) == 1
    assert not sentinel.exists()


def test_local_directory_named_like_a_safe_hub_id_is_not_trusted(
    untrusted: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``nvidia/...`` on disk is a local path: transformers would load it, whatever the Hub holds."""
    import shutil

    path, sentinel = untrusted
    (tmp_path / "nvidia").mkdir()
    shutil.copytree(path, tmp_path / "nvidia" / "tiny-gpt")
    monkeypatch.chdir(tmp_path)
    assert not is_safe_repo("nvidia/tiny-gpt", None)
    with pytest.raises(TrustRemoteCodeError):
        AutoBridge.from_hf_pretrained("nvidia/tiny-gpt")
    assert not sentinel.exists()


def test_safe_orgs_are_trusted_for_hub_ids_only(tmp_path: Path) -> None:
    for org in sorted(SAFE_REPOS):
        assert is_safe_repo(f"{org}/tiny-gpt", None), org
        assert not is_safe_repo(str(tmp_path / org / "tiny-gpt"), None), org
        assert not is_safe_repo(f"{org}/tiny-gpt", False), org
    assert not is_safe_repo("someone-else/tiny-gpt", None)
    assert is_safe_repo("someone-else/tiny-gpt", True)


def test_trusted_parity_and_bit_exact_export(trusted: tuple[Path, Path], tmp_path: Path) -> None:
    path, sentinel = trusted
    bridge, model = build(path, trust_remote_code=True)
    assert CONFIG_MODULE in sentinel.read_text().split()  # the checkpoint's config class was used
    ids = token_ids(VOCAB)
    diff = max_abs_diff(model, path, ids, VOCAB, trust_remote_code=True)
    assert diff <= PARITY_ATOL
    out = tmp_path / "export"
    exported = assert_bit_exact_export(bridge, model, path, out, ids, trust_remote_code=True)
    assert ("lm_head.weight" in exported) is not _config_dict(path)["tie_word_embeddings"]
    for name in CODE_FILES:  # custom code travels with the export, unchanged
        assert (out / name).read_bytes() == (path / name).read_bytes()
    exported_config = _config_dict(out)
    assert exported_config["architectures"] == [ARCHITECTURE]
    assert exported_config["auto_map"] == _config_dict(path)["auto_map"]


def test_fused_tensors_are_regrouped_not_copied(trusted: tuple[Path, Path]) -> None:
    """``attn.qkv`` is [all q; all k; all v]; MCore's linear_qkv is per query group [q, q, k, v] x 2."""
    from safetensors.torch import load_file

    path, _ = trusted
    _, model = build(path, trust_remote_code=True)
    hf = load_file(path / "model.safetensors")["blocks.0.attn.qkv.weight"]
    ours = model[0].decoder.layers[0].self_attention.linear_qkv.weight.detach()
    d = 16
    q, k, v = hf.split([4 * d, 2 * d, 2 * d])
    expected = torch.cat([torch.cat([q[g * 2 * d:(g + 1) * 2 * d], k[g * d:(g + 1) * d], v[g * d:(g + 1) * d]])
                          for g in range(2)])
    assert torch.equal(ours, expected) and not torch.equal(ours, hf)
