"""``export_ckpt`` without a model and ``import_ckpt``'s offline route: for every family, the HF checkpoint
exported straight from the records equals the model-built export (tensors, dtypes, files, ``config.json``),
and an offline import loads to the model-built import's tensors; what needs a model falls back to it, or is
refused with ``offline=True``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bridge.auto_bridge import AutoBridge
from bridge.errors import CheckpointError, ConfigError, UnsupportedFeatureError
from bridge.megatron_ckpt.api import load_checkpoint_model
from bridge.megatron_ckpt.offline import LAYER_KEY_RENAMES
from bridge.megatron_ckpt.offline_export import PARAM_OF_LAYER_KEY, export_dtype
from bridge.runtime import reset_model_parallel
from harness.probes.tiny_models import _bridges_by_family, family_variants, write_checkpoint

pytestmark = pytest.mark.usefixtures("fresh_parallel_state")

FAMILIES = sorted(_bridges_by_family())
#: The default suite's cases (dense GQA, tied + norm offset, qkv bias, fused qkv/gate-up, MoE fallback); every
#: family runs under -m slow.
FAST = {"llama", "gemma", "qwen2", "phi3", "qwen3_moe"}


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def _loaded(path: Path, trust: bool) -> dict[str, torch.Tensor]:
    reset_model_parallel()
    state = load_checkpoint_model(path, open_bridge=AutoBridge.from_hf_pretrained,
                                  trust_remote_code=trust or None).model[0].state_dict()
    reset_model_parallel()
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def _stored(path: Path) -> dict[str, tuple]:
    """Sharded key -> (global shape, dtype) of every tensor the checkpoint's DCP index holds."""
    from torch.distributed.checkpoint import FileSystemReader

    meta = FileSystemReader(str(path / "iter_0000000")).read_metadata().state_dict_metadata
    return {k: (tuple(v.size), v.properties.dtype) for k, v in meta.items() if hasattr(v, "chunks")}


def _record(path: Path) -> dict:
    return json.loads((path / "mcore_compat.json").read_text())


@pytest.mark.parametrize("family", [pytest.param(f, marks=() if f in FAST else pytest.mark.slow) for f in FAMILIES])
def test_offline_and_model_built_paths_agree(family: str, tmp_path: Path) -> None:
    variant = family_variants(family)[0]
    trust = variant.trust_remote_code or None
    hf = write_checkpoint(variant, tmp_path / "hf", seed=5)
    built = AutoBridge.import_ckpt(hf, tmp_path / "built", offline=False, trust_remote_code=trust)
    reset_model_parallel()
    routed = AutoBridge.import_ckpt(hf, tmp_path / "routed", trust_remote_code=trust)
    moe = bool(_record(built)["provider"].get("num_moe_experts"))
    assert _record(routed).get("writer") == (None if moe else "offline")  # dense: no model built
    assert _stored(routed) == _stored(built)  # keys, shapes and dtypes as stored (loading would cast dtypes away)
    assert _record(routed)["params"] == _record(built)["params"]
    assert _record(routed)["provider"] == _record(built)["provider"]
    a, b = _loaded(built, bool(trust)), _loaded(routed, bool(trust))
    assert sorted(a) == sorted(b) and [k for k in a if not torch.equal(a[k], b[k])] == []

    reset_model_parallel()
    model = AutoBridge.export_ckpt(built, tmp_path / "by-model", offline=False, trust_remote_code=trust)
    reset_model_parallel()
    if moe:
        with pytest.raises(UnsupportedFeatureError, match="mixture-of-experts"):
            AutoBridge.export_ckpt(built, tmp_path / "refused", offline=True, trust_remote_code=trust)
        assert not (tmp_path / "refused").exists()
    fast = AutoBridge.export_ckpt(built, tmp_path / "copied", trust_remote_code=trust)
    x, y, source = _weights(model), _weights(fast), _weights(hf)
    assert sorted(x) == sorted(y)
    assert [k for k in x if x[k].dtype != y[k].dtype or not torch.equal(x[k], y[k])] == []
    assert [k for k in x if x[k].dtype != source[k].dtype or not torch.equal(x[k], source[k])] == []
    assert sorted(p.name for p in model.iterdir()) == sorted(p.name for p in fast.iterdir())
    assert json.loads((model / "config.json").read_text()) == json.loads((fast / "config.json").read_text())


def test_sharded_exports_hold_the_same_tensors(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=13)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc")
    outs = [AutoBridge.export_ckpt(mc, tmp_path / f"out-{o}", offline=o, max_shard_size="40KB") for o in (True, False)]
    indexes = [json.loads((o / "model.safetensors.index.json").read_text())["weight_map"] for o in outs]
    assert sorted(indexes[0]) == sorted(indexes[1]) and len(set(indexes[0].values())) > 1
    x, y = _weights(outs[0]), _weights(outs[1])
    assert [k for k in x if x[k].dtype != y[k].dtype or not torch.equal(x[k], y[k])] == [] and sorted(x) == sorted(y)


def test_a_bf16_checkpoint_keeps_its_dtypes_and_copies_every_byte(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=6, dtype=torch.bfloat16)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc", params_dtype=torch.float32)  # stored in float32
    assert {v["dtype"] for v in _record(mc)["params"].values()} == {"float32"}
    out = AutoBridge.export_ckpt(mc, tmp_path / "back", offline=True)
    assert (out / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()


@pytest.mark.parametrize(("source", "override", "config"), [
    (torch.float32, None, "bfloat16"),  # fp32 files whose config says bf16 (a common Hub case)
    (torch.float32, torch.bfloat16, None),  # a dtype override on fp32 files
    (torch.bfloat16, torch.float32, None),
], ids=["config-bf16", "override-bf16", "override-fp32"])
def test_both_import_routes_store_the_dtypes_the_model_holds(tmp_path: Path, source, override, config) -> None:
    """The offline route stores each tensor as the built model would (the config's or the override's dtype; MCore
    keeps norms in float32), not as the files hold it."""
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=11, dtype=source)
    if config is not None:
        data = json.loads((hf / "config.json").read_text())
        data["dtype"] = config
        (hf / "config.json").write_text(json.dumps(data))
    extra = {"params_dtype": override} if override is not None else {}
    built = AutoBridge.import_ckpt(hf, tmp_path / "built", offline=False, **extra)
    reset_model_parallel()
    routed = AutoBridge.import_ckpt(hf, tmp_path / "routed", **extra)
    assert _record(routed).get("writer") == "offline"
    assert _stored(routed) == _stored(built)
    assert _record(routed)["params"] == _record(built)["params"]
    a, b = _loaded(built, False), _loaded(routed, False)
    assert [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])] == []


def test_no_route_writes_into_its_input(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=12)
    before = sorted(p.name for p in hf.iterdir())
    for offline in (None, False):
        with pytest.raises(CheckpointError, match="it is the input"):
            AutoBridge.import_ckpt(hf, hf, overwrite=True, offline=offline)
        with pytest.raises(CheckpointError, match="it holds the input"):
            AutoBridge.import_ckpt(hf, tmp_path, overwrite=True, offline=offline)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc")
    for offline in (None, False):
        with pytest.raises(CheckpointError, match="it is the input"):
            AutoBridge.export_ckpt(mc, mc, overwrite=True, offline=offline)
        with pytest.raises(CheckpointError, match="it is inside the input"):
            AutoBridge.export_ckpt(mc, mc / "hf", overwrite=True, offline=offline)
    assert sorted(p.name for p in hf.iterdir()) == before and (mc / "iter_0000000" / ".metadata").is_file()


def test_vocabulary_padding_is_cut_on_the_way_back(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=7, vocab_size=100)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc", should_pad_vocab=True)
    assert _record(mc)["params"]["embedding.word_embeddings.weight"]["shape"] == [128, 64]
    out = AutoBridge.export_ckpt(mc, tmp_path / "back", offline=True)
    assert (out / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()


def _drop_from_index(mc: Path, key: str) -> None:
    """Remove ``key`` from the checkpoint's DCP index, as if its writer's model had no such tensor."""
    import pickle

    path = mc / "iter_0000000" / ".metadata"
    index = pickle.loads(path.read_bytes())
    del index.state_dict_metadata[key]
    index.storage_data = {k: v for k, v in index.storage_data.items() if k.fqn != key}
    path.write_bytes(pickle.dumps(index))


def test_a_checkpoint_without_a_record_is_checked_against_the_model_on_the_meta_device(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=8)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc")
    (mc / "mcore_compat.json").unlink()  # as Megatron-LM's save_checkpoint leaves it: no record, no hf/
    out = AutoBridge.export_ckpt(mc, tmp_path / "back", hf_config=hf, offline=True)  # no model with data built
    assert (out / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()
    _drop_from_index(mc, "decoder.final_layernorm.weight")
    with pytest.raises(UnsupportedFeatureError, match=r"'decoder.final_layernorm.weight': stored None, expected \[64\]"):
        AutoBridge.export_ckpt(mc, tmp_path / "refused", hf_config=hf, offline=True)
    reset_model_parallel()
    with pytest.raises(CheckpointError, match="decoder.final_layernorm.weight"):  # the model-built reader's words
        AutoBridge.export_ckpt(mc, tmp_path / "fallback", hf_config=hf)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "hf", "mc"]


def test_an_index_that_disagrees_with_the_record_is_not_copied(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=9)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc")
    record = _record(mc)
    record["params"]["decoder.final_layernorm.weight"]["shape"] = [65]
    (mc / "mcore_compat.json").write_text(json.dumps(record))
    with pytest.raises(UnsupportedFeatureError, match="'decoder.final_layernorm.weight'"):
        AutoBridge.export_ckpt(mc, tmp_path / "out", offline=True)
    assert not (tmp_path / "out").exists()


def test_offline_requests_that_need_a_model_are_refused(tmp_path: Path) -> None:
    from tests.helpers.tiny import make_hf_checkpoint

    hf = make_hf_checkpoint(tmp_path / "hf", seed=10)
    with pytest.raises(UnsupportedFeatureError, match=r"overrides \['seq_length'\]"):
        AutoBridge.import_ckpt(hf, tmp_path / "mc", offline=True, seq_length=64)
    mc = AutoBridge.import_ckpt(hf, tmp_path / "mc", seq_length=64)  # builds the model
    assert _record(mc).get("writer") is None
    with pytest.raises(ConfigError, match="drop one of them"):
        AutoBridge.export_ckpt(mc, tmp_path / "out", offline=True, model_class="gpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "mc"]


def test_the_key_inverse_is_derived_from_the_writers_table() -> None:
    assert {k: v for v, k in PARAM_OF_LAYER_KEY.items()} == LAYER_KEY_RENAMES
    assert export_dtype(None, "x", torch.float32, torch.bfloat16) == torch.bfloat16
    assert export_dtype(None, "x", torch.int64, torch.bfloat16) == torch.int64
    assert export_dtype({"hf_dtypes": {"default": "float16", "except": {}}}, "x", torch.float32, None) == torch.float16
