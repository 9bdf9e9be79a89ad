"""HF config validation (issue 14): every size a positive integer, every divisibility holds, checked before anything
is built, at every entry point (local directory, from_hf_config, ModelConfig, offline convert), and the error names
the field, its value and the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.auto_bridge import AutoBridge
from bridge.config.flagships import FLAGSHIPS
from bridge.errors import ConfigError
from bridge.models.hf_validation import AT_MOST, COUNTS, MULTIPLES, SIZES, hf_config_problems, validate_hf_config
from bridge.registry import registered_bridges
from tests.helpers.tiny import TINY_LLAMA, make_hf_checkpoint

#: A config setting every field the rules read, valid (MoE and MLA fields included).
FULL = {
    **TINY_LLAMA, "head_dim": 16, "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4,
    "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "n_group": 2,
    "topk_group": 1, "decoder_sparse_step": 1, "q_lora_rank": 8, "kv_lora_rank": 4, "qk_rope_head_dim": 2,
    "qk_nope_head_dim": 2, "v_head_dim": 4, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
    "ffn_hidden_size": 128, "n_shared_experts": 0, "first_k_dense_replace": 0, "max_window_layers": 0,
    "sliding_window": 0,
}


def test_the_full_config_is_valid_and_sets_every_field_a_rule_reads() -> None:
    assert hf_config_problems(FULL) == []
    read = set(SIZES) | set(COUNTS) | {f for r in (*MULTIPLES, *AT_MOST) for f in (r.small, r.large)}
    assert read <= set(FULL)


def test_every_family_config_and_flagship_is_valid() -> None:
    configs = [cfg for b in registered_bridges() for cfg in b.representative_configs()]
    assert configs and all(hf_config_problems(cfg) == [] for cfg in configs)
    assert all(hf_config_problems(dict(cfg)) == [] for cfg in FLAGSHIPS.values())


@pytest.mark.parametrize("field", SIZES)
@pytest.mark.parametrize("bad", [0, -4, "8", 8.0, True], ids=["zero", "negative", "string", "float", "bool"])
def test_each_size_must_be_a_positive_integer(field: str, bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        validate_hf_config({**FULL, field: bad}, source="/ckpt/config.json")
    message = str(info.value)
    assert f"{field}={bad!r} must be a positive integer" in message
    assert message.startswith("/ckpt/config.json:") and "Fix this field in /ckpt/config.json" in message


@pytest.mark.parametrize("field", COUNTS)
def test_each_count_may_be_zero_but_not_negative(field: str) -> None:
    assert hf_config_problems({**FULL, field: 0}) == []
    assert hf_config_problems({**FULL, field: -1}) == [f"{field}=-1 must be a non-negative integer"]


def test_unset_fields_are_not_checked() -> None:
    assert hf_config_problems({"vocab_size": 10, "head_dim": None}) == []


@pytest.mark.parametrize("rel", MULTIPLES, ids=lambda r: f"{r.large}-by-{r.small}")
def test_each_divisibility_must_hold(rel) -> None:
    small = FULL[rel.small]
    bad = {**FULL, rel.large: small * 3 + 1}
    if rel.unless:
        bad[rel.unless] = None
    problems = hf_config_problems(bad)
    assert any(p.startswith(f"{rel.large}={small * 3 + 1} must be a multiple of {rel.small}={small}")
               for p in problems), problems
    if rel.unless:  # e.g. hidden_size need not divide by the heads when head_dim is given
        assert not any(f"must be a multiple of {rel.small}" in p for p in hf_config_problems({**bad, rel.unless: 8}))


@pytest.mark.parametrize("rel", AT_MOST, ids=lambda r: f"{r.small}-at-most-{r.large}")
def test_each_upper_bound_must_hold(rel) -> None:
    problems = hf_config_problems({**FULL, rel.small: FULL[rel.large] + 1})
    assert f"{rel.small}={FULL[rel.large] + 1} must be at most {rel.large}={FULL[rel.large]}" in " ".join(problems)


def test_every_broken_rule_is_reported_at_once() -> None:
    problems = hf_config_problems({**FULL, "vocab_size": 0, "num_key_value_heads": 3, "num_experts_per_tok": 9})
    assert len(problems) == 5, problems  # vocab; kv heads; top-k over 3 expert counts


# -- entry points --------------------------------------------------------------------------------------------


def _bad_checkpoint(tmp_path: Path, **fields: object) -> Path:
    src = make_hf_checkpoint(tmp_path / "hf")
    cfg = src / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), **fields}))
    return src


def test_a_local_directory_with_zero_heads_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    src = _bad_checkpoint(tmp_path, num_attention_heads=0)
    with pytest.raises(ConfigError, match=r"num_attention_heads=0 must be a positive integer") as info:
        AutoBridge.from_hf_pretrained(src)  # transformers itself would raise ZeroDivisionError
    assert str(src / "config.json") in str(info.value)
    assert not AutoBridge.can_handle(src)


def test_from_hf_config_validates_the_object_and_names_its_file(tmp_path: Path) -> None:
    from transformers import AutoConfig

    src = make_hf_checkpoint(tmp_path / "hf")
    config = AutoConfig.from_pretrained(src)
    config.num_key_value_heads = 3
    with pytest.raises(ConfigError, match=r"num_attention_heads=4 must be a multiple of num_key_value_heads=3") as e:
        AutoBridge.from_hf_config(config)
    assert str(src / "config.json") in str(e.value)
    config.num_key_value_heads = 2
    assert AutoBridge.from_hf_config(config).bridge.architecture == "LlamaForCausalLM"


def test_model_config_validates_a_dict_before_transformers_parses_it() -> None:
    from bridge.config.model import ModelConfig

    with pytest.raises(ConfigError, match=r"the config dict given: .*hidden_size=-64 must be a positive integer"):
        ModelConfig(hf_config={**TINY_LLAMA, "architectures": ["LlamaForCausalLM"], "hidden_size": -64})


def test_offline_convert_refuses_the_config_before_writing(tmp_path: Path, capsys) -> None:
    from harness.cli import main

    src = _bad_checkpoint(tmp_path, num_hidden_layers=0)
    assert main(["convert", str(src), str(tmp_path / "m"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "num_hidden_layers=0 must be a positive integer" in err and str(src / "config.json") in err
    assert not (tmp_path / "m").exists()


def test_a_hub_id_is_validated_from_its_cached_config_json(tmp_path: Path, monkeypatch) -> None:
    from tests.helpers.hub_cache import add_to_hub_cache

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = add_to_hub_cache(cache, "acme/broken", _bad_checkpoint(tmp_path, num_key_value_heads=3))
    with pytest.raises(ConfigError, match=r"num_attention_heads=4 must be a multiple of num_key_value_heads=3") as e:
        AutoBridge.from_hf_pretrained("acme/broken")
    assert str(snapshot / "config.json") in str(e.value)
