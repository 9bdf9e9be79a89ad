"""The TinyGPT trust_remote_code fixture: its code runs only when trusted, it loads through
``transformers``, and it computes exactly what a Llama with the same weights computes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.probes.fixtures.tiny_gpt import (
    CONFIG_MODULE,
    MODELING_MODULE,
    TinyGPTSpec,
    llama_config,
    llama_state_dict,
    make_custom_checkpoint,
    spec_from_config,
    tiny_gpt_state_dict,
)

# Two variants: GQA with an untied head, and MHA with tied embeddings.
VARIANTS = {
    "gqa": {"seed": 0},
    "tied-mha": {"seed": 3, "num_kv_heads": 4, "tie_word_embeddings": True, "rope_theta": 500.0},
}

# Run in a fresh interpreter: transformers caches dynamic modules per process (and under
# HF_MODULES_CACHE, pointed at a temporary folder here), so in-process loads could reuse code.
_LOADER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    out = {}
    for name, ckpt, sentinel in json.loads(sys.argv[1]):
        try:
            AutoModelForCausalLM.from_pretrained(ckpt, trust_remote_code=False)
            refused = None
        except ValueError as exc:
            refused = str(exc)
        ran_untrusted = os.path.exists(sentinel)
        model = AutoModelForCausalLM.from_pretrained(ckpt, trust_remote_code=True).eval()
        ids = torch.randint(0, model.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
        mask = torch.ones_like(ids)
        mask[1, 7:] = 0  # right padding on the second row
        with torch.no_grad():
            logits = model(ids).logits
            masked = model(ids, attention_mask=mask).logits
        save_file({"ids": ids, "mask": mask, "logits": logits, "masked": masked}, os.path.join(ckpt, "..", name + ".out"))
        out[name] = {
            "refused": refused,
            "ran_untrusted": ran_untrusted,
            "sentinel": open(sentinel).read().split(),
            "class": type(model).__name__,
            "module": type(model).__module__,
            "tied": model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr(),
        }
    print(json.dumps(out))
    """
)


def _load_in_subprocess(root: Path) -> dict[str, dict]:
    """Generate every variant under ``root`` and load it in one fresh interpreter (~10 s)."""
    jobs, absent_after_generation = [], {}
    for name, overrides in VARIANTS.items():
        sentinel = root / f"{name}.sentinel"
        ckpt = make_custom_checkpoint(root / name, sentinel=sentinel, **overrides)
        absent_after_generation[name] = not sentinel.exists()
        jobs.append([name, str(ckpt), str(sentinel)])
    env = {**os.environ, "HF_MODULES_CACHE": str(root / "modules"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOADER, json.dumps(jobs)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in VARIANTS:
        results[name]["absent_after_generation"] = absent_after_generation[name]
        results[name]["dir"] = root / name
        results[name]["out"] = load_file(str(root / f"{name}.out"))
    return results


def test_trusted_load_runs_code_and_matches_llama(tmp_path: Path) -> None:
    """One test (not one per variant) so that parallel workers start the subprocess once."""
    loaded = _load_in_subprocess(tmp_path)
    for name in VARIANTS:
        _check_code_runs_only_when_trusted(loaded[name])
        _check_logits_equal_llama(loaded[name])


def _check_code_runs_only_when_trusted(result: dict) -> None:
    assert result["absent_after_generation"]
    assert result["refused"] is not None and "trust_remote_code" in result["refused"]
    assert not result["ran_untrusted"]
    assert set(result["sentinel"]) == {CONFIG_MODULE, MODELING_MODULE}
    assert result["class"] == "TinyGPTForCausalLM"
    assert result["module"].startswith("transformers_modules.")  # the checkpoint's own code


def _check_logits_equal_llama(result: dict) -> None:
    from transformers import LlamaForCausalLM

    ckpt: Path = result["dir"]
    spec = spec_from_config(json.loads((ckpt / "config.json").read_text()))
    assert result["tied"] is spec.tie_word_embeddings
    llama = LlamaForCausalLM(llama_config(spec)).eval()
    llama.load_state_dict(llama_state_dict(load_file(str(ckpt / "model.safetensors")), spec), strict=True)
    out = result["out"]
    with torch.no_grad():
        expected = llama(out["ids"]).logits
        expected_masked = llama(out["ids"], attention_mask=out["mask"]).logits
    assert expected.abs().max() > 0.1  # not a degenerate comparison
    assert (out["logits"] - expected).abs().max().item() <= 1e-5
    valid = out["mask"].bool()
    assert (out["masked"][valid] - expected_masked[valid]).abs().max().item() <= 1e-5
    # Sensitivity: swapping the fused QKV's k and v blocks breaks the equivalence.
    q_rows, kv_rows = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
    sd = {k: v.clone() for k, v in llama.state_dict().items()}
    k, v = sd["model.layers.0.self_attn.k_proj.weight"], sd["model.layers.0.self_attn.v_proj.weight"]
    sd["model.layers.0.self_attn.k_proj.weight"], sd["model.layers.0.self_attn.v_proj.weight"] = v, k
    llama.load_state_dict(sd)
    with torch.no_grad():
        assert (llama(out["ids"]).logits - out["logits"]).abs().max().item() > 1e-3
    assert q_rows + 2 * kv_rows == load_file(str(ckpt / "model.safetensors"))["blocks.0.attn.qkv.weight"].shape[0]


def test_checkpoint_files(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    ckpt = make_custom_checkpoint(tmp_path / "c", sentinel=sentinel, num_layers=3)
    config = json.loads((ckpt / "config.json").read_text())
    assert config["architectures"] == ["TinyGPTForCausalLM"] and config["model_type"] == "tiny_gpt"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_tiny_gpt.TinyGPTConfig",
        "AutoModelForCausalLM": "modeling_tiny_gpt.TinyGPTForCausalLM",
    }
    assert not any("sentinel" in key for key in config)  # the path lives only in the code
    for module in (CONFIG_MODULE, MODELING_MODULE):
        assert repr(str(sentinel)) in (ckpt / f"{module}.py").read_text()
    tensors = load_file(str(ckpt / "model.safetensors"))
    spec = spec_from_config(config)
    assert spec == TinyGPTSpec(num_layers=3)
    assert sorted(tensors) == sorted(tiny_gpt_state_dict(spec))
    assert "blocks.2.mlp.w12.weight" in tensors and "lm_head.weight" in tensors
    assert not sentinel.exists()


def test_weights_depend_on_seed_only() -> None:
    spec = TinyGPTSpec()
    a, b, c = tiny_gpt_state_dict(spec, seed=0), tiny_gpt_state_dict(spec, seed=0), tiny_gpt_state_dict(spec, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["wte.weight"], c["wte.weight"])
    assert "lm_head.weight" not in tiny_gpt_state_dict(TinyGPTSpec(tie_word_embeddings=True))


@pytest.mark.parametrize("bad", [{"num_heads": 3}, {"num_kv_heads": 3}, {"hidden_size": 36, "num_heads": 4, "num_kv_heads": 4}])
def test_invalid_shapes_are_refused(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ValueError, match="TinyGPT|RoPE"):
        make_custom_checkpoint(tmp_path, sentinel=tmp_path / "s", **bad)


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown TinyGPT config fields"):
        make_custom_checkpoint(tmp_path, sentinel=tmp_path / "s", n_layer=2)
