"""``GPTModelProvider``: validation and locking, TransformerConfig fields by attribute, pure kwargs,
and building this rank's chunks on a CPU machine."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import compat
from bridge.errors import BridgeError, ConfigError, ParallelLayoutError
from bridge.providers import GPTModelProvider

REPO = Path(__file__).resolve().parents[2]


def tiny(**kw) -> GPTModelProvider:
    base = dict(num_layers=2, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4, num_query_groups=2,
                vocab_size=50, seq_length=32)
    return GPTModelProvider(**{**base, **kw})


# -- finalize validates and locks ----------------------------------------------------------------

def test_finalize_locks_every_kind_of_attribute():
    p = tiny()
    p.attention_softmax_in_fp32 = True
    assert p.finalize() is p and p.finalized
    assert p.finalize() is p  # idempotent
    for name, value in [("hidden_size", 128), ("attention_softmax_in_fp32", False),
                        ("recompute_granularity", "full"), ("tensor_model_parallel_size", 2)]:
        with pytest.raises(ConfigError, match=rf"cannot set {name!r}.*finalized.*dataclasses.replace"):
            setattr(p, name, value)
    assert (p.hidden_size, p.attention_softmax_in_fp32, p.tensor_model_parallel_size) == (32, True, 1)
    assert "recompute_granularity" not in p.config_overrides


def test_replace_gives_an_unlocked_copy():
    p = tiny().finalize()
    q = dataclasses.replace(p, hidden_size=64)
    assert not q.finalized and q.hidden_size == 64 and p.hidden_size == 32
    q.num_layers = 4
    q.finalize()
    assert p.num_layers == 2


def test_replace_copy_does_not_share_overrides_with_the_locked_original():
    p = tiny()
    p.attention_softmax_in_fp32 = True
    p.finalize()
    q = dataclasses.replace(p)
    assert q.attention_softmax_in_fp32 is True
    q.recompute_granularity = "selective"
    assert "recompute_granularity" not in p.config_overrides  # p is locked: it cannot change


def test_a_failed_finalize_leaves_the_provider_editable():
    p = tiny(tensor_model_parallel_size=3)
    with pytest.raises(ParallelLayoutError):
        p.finalize()
    assert not p.finalized
    p.tensor_model_parallel_size = 2
    assert p.finalize().finalized


# -- validation messages -------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(groups=st.integers(2, 12), extra=st.integers(1, 11))
def test_heads_not_a_multiple_of_groups(groups, extra):
    heads = groups * 2 + (extra % groups or 1)
    with pytest.raises(ConfigError) as exc:
        tiny(num_attention_heads=heads, num_query_groups=groups, hidden_size=heads * 4).finalize()
    assert f"num_attention_heads ({heads})" in str(exc.value) and f"num_query_groups ({groups})" in str(exc.value)


@settings(max_examples=40, deadline=None)
@given(groups=st.integers(1, 16), tp=st.integers(2, 16))
def test_tp_must_divide_query_groups_and_the_message_lists_valid_values(groups, tp):
    p = tiny(num_attention_heads=groups * 2, num_query_groups=groups, hidden_size=groups * 8,
             ffn_hidden_size=720720, tensor_model_parallel_size=tp)  # 720720 = lcm(1..16): FFN never objects
    if groups % tp == 0:
        p.finalize()
        return
    with pytest.raises(ParallelLayoutError) as exc:
        p.finalize()
    valid = [d for d in range(1, groups + 1) if groups % d == 0]
    msg = str(exc.value)
    assert f"tensor_model_parallel_size={tp}" in msg and f"num_query_groups={groups}" in msg and str(valid) in msg


@pytest.mark.parametrize("layers, pp", [(3, 2), (5, 4), (2, 3)])
def test_pp_must_divide_layers(layers, pp):
    with pytest.raises(ParallelLayoutError) as exc:
        tiny(num_layers=layers, pipeline_model_parallel_size=pp).finalize()
    assert str(layers) in str(exc.value) and f"pp={pp}" in str(exc.value)
    tiny(num_layers=layers * pp, pipeline_model_parallel_size=pp).finalize()


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="'swish2'.*silu"):
        tiny(activation="swish2").finalize()


# -- any TransformerConfig field by attribute ----------------------------------------------------

OVERRIDES = {
    "attention_softmax_in_fp32": True,
    "apply_residual_connection_post_layernorm": True,
    "recompute_granularity": "full",
    "recompute_method": "uniform",
    "recompute_num_layers": 1,
    "softmax_scale": 0.125,
    "calculate_per_token_loss": True,
    "test_mode": True,
}


def test_transformer_config_fields_set_by_attribute_flow_through_unchanged():
    fields = compat.config_fields()
    chosen = {k: v for k, v in OVERRIDES.items() if k in fields}
    assert len(chosen) >= 4, "the installed TransformerConfig lacks the fields this test exercises"
    p = tiny()
    for name, value in chosen.items():
        setattr(p, name, value)
        assert getattr(p, name) == value
    assert p.config_overrides == chosen
    kwargs = p.transformer_config_kwargs()
    cfg = p.transformer_config()
    for name, value in chosen.items():
        assert kwargs[name] == value and getattr(cfg, name) == value, name


def test_an_override_beats_the_providers_own_value():
    p = tiny()
    assert p.transformer_config_kwargs()["masked_softmax_fusion"] is False
    p.masked_softmax_fusion = True
    assert p.transformer_config_kwargs()["masked_softmax_fusion"] is True


@pytest.mark.parametrize("name, closest", [
    ("recompute_granularty", "recompute_granularity"),
    ("attention_softmax_in_fp23", "attention_softmax_in_fp32"),
    ("hiden_size", "hidden_size"),
])
def test_unknown_field_is_an_error_naming_the_closest_fields(name, closest):
    p = tiny()
    with pytest.raises(ConfigError) as exc:
        setattr(p, name, 1)
    assert repr(name) in str(exc.value) and repr(closest) in str(exc.value)
    assert p.config_overrides == {} and name not in p.__dict__
    with pytest.raises(AttributeError):
        getattr(p, name)


def test_unknown_field_without_a_close_match_says_so():
    with pytest.raises(ConfigError, match="no field has a similar name"):
        tiny().zzqqxxyy = 1


# -- pure kwargs ---------------------------------------------------------------------------------

def test_kwargs_are_fresh_and_deterministic():
    p = tiny(num_moe_experts=4, moe_ffn_hidden_size=16)
    a = p.transformer_config_kwargs()
    a["hidden_size"] = -1
    b = p.transformer_config_kwargs()
    assert b["hidden_size"] == 32 and b == p.transformer_config_kwargs()
    assert (b["num_moe_experts"], b["moe_ffn_hidden_size"], b["num_query_groups"], b["kv_channels"]) == (4, 16, 2, 8)
    g = p.gpt_model_kwargs()
    assert g["vocab_size"] == p.padded_vocab_size == 50 and g == p.gpt_model_kwargs()  # HF's vocabulary: no padding


@pytest.mark.parametrize(
    ("fields", "padded", "reason"),
    [
        ({}, 50, "none"),  # Megatron-Bridge's default: should_pad_vocab=False
        ({"tensor_model_parallel_size": 2}, 50, "none"),
        ({"vocab_size": 51, "tensor_model_parallel_size": 2}, 52, "tensor_parallel"),  # TP requires it
        ({"should_pad_vocab": True}, 128, "requested"),  # MCore's rule: a multiple of 128 x TP
        ({"should_pad_vocab": True, "make_vocab_size_divisible_by": 8, "tensor_model_parallel_size": 2}, 64,
         "requested"),
    ],
)
def test_vocab_is_padded_only_when_asked_or_when_tp_requires_it(fields, padded, reason, caplog):
    p = tiny(num_query_groups=2)
    for name, value in fields.items():
        setattr(p, name, value)
    assert p.gpt_model_kwargs()["vocab_size"] == p.padded_vocab_size == padded
    assert p.vocab_padding.reason == reason
    with caplog.at_level("INFO", logger="bridge"):
        p.finalize()
    said = [r.getMessage() for r in caplog.records if r.name == "bridge.providers"]
    assert (reason != "none") == any("vocabulary padded from" in m for m in said), said


_PURITY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from bridge.providers import GPTModelProvider

    p = GPTModelProvider(num_moe_experts=4, window_size=(8, 0))
    kw = p.transformer_config_kwargs()
    p.gpt_model_kwargs(); p.layer_spec_kwargs(); p.padded_vocab_size
    print(json.dumps({"keys": len(kw), "megatron": sorted(m for m in sys.modules if m.split(".")[0] == "megatron")}))
    """
)


def test_kwargs_need_no_megatron_import():
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    out = subprocess.run([sys.executable, "-c", _PURITY_SCRIPT], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["keys"] > 20
    assert result["megatron"] == [], f"transformer_config_kwargs() imported {result['megatron']}"


# -- building on CPU -----------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: CUDA machines use NCCL")
def test_provide_distributed_model_initialises_gloo_and_returns_chunks(fresh_parallel_state, monkeypatch):
    import torch.distributed as dist
    from megatron.core.models.gpt import GPTModel

    for var in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    if dist.is_initialized():  # prove that the provider starts one itself
        dist.destroy_process_group()
    p = tiny()
    p.attention_softmax_in_fp32 = True
    seen: list[list[torch.nn.Module]] = []
    p.register_pre_wrap_hook(lambda chunks: seen.append(list(chunks)) or chunks)
    chunks = p.provide_distributed_model(wrap_with_ddp=False)
    assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 1
    assert isinstance(chunks, list) and len(chunks) == 1 and isinstance(chunks[0], GPTModel)
    assert seen == [chunks]
    assert p.finalized
    model = chunks[0]
    assert model.config.attention_softmax_in_fp32 is True
    assert model.embedding.word_embeddings.weight.shape == (p.padded_vocab_size, 32)
    assert len(model.decoder.layers) == 2
    assert all(t.device.type == "cpu" for t in model.parameters())


def test_a_world_too_small_for_the_layout_is_refused(fresh_parallel_state):
    with pytest.raises(ParallelLayoutError, match="torchrun --nproc-per-node=2"):
        tiny(tensor_model_parallel_size=2).provide_distributed_model()


def test_errors_share_the_bridge_root():
    assert issubclass(ConfigError, BridgeError) and issubclass(ParallelLayoutError, BridgeError)


def test_subclass_fields_are_provider_fields_not_transformer_config_fields() -> None:
    import dataclasses as _dc

    from bridge.providers import GPTModelProvider as _Base

    @_dc.dataclass
    class _WithExtra(_Base):
        embedding_multiplier: float = 1.0

    p = _WithExtra()
    p.embedding_multiplier = 2.0
    assert p.embedding_multiplier == 2.0
    assert "embedding_multiplier" not in p.config_overrides
