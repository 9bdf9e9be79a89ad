"""Offline convert/export: every rank file equals the reference split of the full Megatron state, the names
are the ones MCore builds, export restores the HF files bit for bit, and bad arguments fail before writing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

from bridge.errors import CheckpointError, ConfigError, ParallelLayoutError, WeightMismatchError
from bridge.parallel._common import bitwise_equal
from bridge.parallel.layout_io import load_layout, save_layout
from bridge.parallel.state import split_state
from bridge.streaming import convert_checkpoint, export_checkpoint
from bridge.streaming.convert import _run_stages, _Stopped, family_for
from bridge.streaming.files import SliceReader
from bridge.streaming.plan import plan_import
from tests.bridge.models.family_checks import all_tensors, build, make_checkpoint
from tests.helpers.tiny import hf_logits

LAYOUTS = [(1, 1), (2, 1), (1, 2), (2, 2)]
MOE = dict(vocab_size=96, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=4,
           num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
           max_position_embeddings=128, mlp_only_layers=[1], tie_word_embeddings=True)


@pytest.fixture(scope="module")
def moe_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen3-MoE, tied, a dense layer between two MoE layers."""
    return make_checkpoint(tmp_path_factory.mktemp("moe") / "hf", Qwen3MoeConfig(**MOE), Qwen3MoeForCausalLM)


@pytest.fixture(params=["llama", "llama_tied", "moe"])
def checkpoint(request: pytest.FixtureRequest) -> Path:
    name = {"llama": "tiny_llama_checkpoint", "llama_tied": "tiny_llama_tied_checkpoint", "moe": "moe_checkpoint"}
    return request.getfixturevalue(name[request.param])


def reference_full(path: Path, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Full Megatron state built the plain way: every HF tensor read whole, mapped, cast."""
    family, _, registry, ctx = family_for(path, None)
    hf = load_file(path / "model.safetensors")
    src = SliceReader(path)
    plans = plan_import(src, registry, ctx, names=src.keys(), ignored_hf_patterns=family.ignored_hf_patterns)
    full = {p.name: p.mapping.hf_to_megatron({n: hf[n] for n in p.hf_names}, ctx) for p in plans}
    return {n: t.to(dtype) if dtype else t for n, t in full.items()}


@pytest.mark.parametrize(("tp", "pp"), LAYOUTS)
def test_rank_files_equal_the_reference_split_and_export_restores_the_files(
    checkpoint: Path, tp: int, pp: int, tmp_path: Path
) -> None:
    result = convert_checkpoint(checkpoint, tmp_path / "mcore", tp=tp, pp=pp, progress=False)
    layout, shards = load_layout(result.path)
    assert (layout.tp, layout.pp) == (tp, pp) and layout == result.layout
    want = split_state(reference_full(checkpoint), layout)
    assert sorted(shards) == sorted(want)
    for rank, tensors in want.items():
        assert sorted(shards[rank]) == sorted(tensors), rank
        for name, tensor in tensors.items():
            assert shards[rank][name].dtype == tensor.dtype and bitwise_equal(shards[rank][name], tensor), (rank, name)
    assert (result.path / "config.json").read_bytes() == (checkpoint / "config.json").read_bytes()

    exported = export_checkpoint(result.path, tmp_path / "hf", progress=False)
    assert exported.files == ("model.safetensors",)
    # safetensors orders a file's tensors itself, so one file is byte-identical to save_pretrained's
    assert (exported.path / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()
    assert (exported.path / "config.json").read_bytes() == (checkpoint / "config.json").read_bytes()


def test_transformers_loads_the_export_and_gives_the_same_logits(checkpoint: Path, tmp_path: Path) -> None:
    convert_checkpoint(checkpoint, tmp_path / "mcore", tp=2, pp=2, progress=False)
    out = export_checkpoint(tmp_path / "mcore", tmp_path / "hf", max_shard_size=20_000, progress=False).path
    assert (out / "model.safetensors.index.json").is_file() and len(list(out.glob("model-*.safetensors"))) > 2
    before, after = all_tensors(checkpoint), all_tensors(out)
    assert sorted(before) == sorted(after)
    assert all(after[n].dtype == t.dtype and torch.equal(after[n], t) for n, t in before.items())
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(hf_logits(out, ids), hf_logits(checkpoint, ids))


@pytest.mark.parametrize("family", ["tiny_llama_checkpoint", "moe_checkpoint"])
def test_names_and_values_are_those_of_the_model_mcore_builds(
    family: str, request: pytest.FixtureRequest, tmp_path: Path, fresh_parallel_state
) -> None:
    """At TP = PP = 1 the rank file is the state the bridge's model path loads (local layer spec)."""
    path = request.getfixturevalue(family)
    convert_checkpoint(path, tmp_path / "mcore", progress=False)
    _, model = build(path)
    params = dict(model[0].named_parameters())
    saved = load_file(tmp_path / "mcore" / "tp00_pp00.safetensors")
    assert sorted(saved) == sorted(params)
    for name, param in params.items():
        assert saved[name].shape == param.shape and torch.equal(saved[name], param.detach()), name


def test_dtype_casts_every_tensor_and_export_keeps_it(tiny_llama_checkpoint: Path, tmp_path: Path) -> None:
    convert_checkpoint(tiny_llama_checkpoint, tmp_path / "mcore", tp=2, dtype="bf16", progress=False)
    layout, shards = load_layout(tmp_path / "mcore")
    want = split_state(reference_full(tiny_llama_checkpoint, torch.bfloat16), layout)
    assert all(torch.equal(shards[r][n], t) and t.dtype == torch.bfloat16 for r in want for n, t in want[r].items())
    after = all_tensors(export_checkpoint(tmp_path / "mcore", tmp_path / "hf", progress=False).path)
    before = all_tensors(tiny_llama_checkpoint)
    assert all(torch.equal(after[n], t.to(torch.bfloat16)) for n, t in before.items())


@pytest.mark.parametrize(("tp", "pp", "match"), [(3, 1, "num_query_groups"), (4, 1, "num_query_groups"),
                                                 (1, 3, "num_layers"), (0, 1, "tp")])
def test_layouts_that_do_not_fit_fail_before_writing(
    tiny_llama_checkpoint: Path, tmp_path: Path, tp: int, pp: int, match: str
) -> None:
    with pytest.raises(ParallelLayoutError, match=match):
        convert_checkpoint(tiny_llama_checkpoint, tmp_path / "out", tp=tp, pp=pp, progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_existing_output_needs_overwrite_and_is_replaced_only_when_complete(
    tiny_llama_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    convert_checkpoint(tiny_llama_checkpoint, out, tp=2, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CheckpointError, match="overwrite"):
        convert_checkpoint(tiny_llama_checkpoint, out, tp=1, progress=False)
    with pytest.raises(ParallelLayoutError):
        convert_checkpoint(tiny_llama_checkpoint, out, tp=3, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    convert_checkpoint(tiny_llama_checkpoint, out, tp=1, overwrite=True, progress=False)
    assert sorted(p.name for p in out.glob("tp*.safetensors")) == ["tp00_pp00.safetensors"]
    taken = tmp_path / "hf"
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="overwrite"):
        export_checkpoint(out, taken, progress=False)
    assert (taken / "config.json").read_text() == "{}"
    with pytest.raises(CheckpointError, match="it is the input"):
        convert_checkpoint(tiny_llama_checkpoint, tiny_llama_checkpoint, overwrite=True, progress=False)


def test_bad_inputs_name_what_to_fix(tiny_llama_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected one of"):
        convert_checkpoint(tiny_llama_checkpoint, tmp_path / "a", dtype="int8", progress=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    tensors = load_file(tiny_llama_checkpoint / "model.safetensors")
    tensors["model.layers.0.mlp.surprise.weight"] = torch.zeros(2)
    save_file(tensors, str(extra / "model.safetensors"), metadata={"format": "pt"})
    (extra / "config.json").write_bytes((tiny_llama_checkpoint / "config.json").read_bytes())
    with pytest.raises(WeightMismatchError, match="surprise"):
        convert_checkpoint(extra, tmp_path / "b", progress=False)
    with pytest.raises(CheckpointError, match="layout.json"):
        export_checkpoint(tiny_llama_checkpoint, tmp_path / "c", progress=False)


def test_export_of_a_layout_without_config_asks_for_config_dir(tiny_llama_checkpoint: Path, tmp_path: Path) -> None:
    """save_layout / reshard write no HF config; export takes it from config_dir then."""
    convert_checkpoint(tiny_llama_checkpoint, tmp_path / "m", tp=2, progress=False)
    layout, shards = load_layout(tmp_path / "m")
    save_layout(tmp_path / "bare", shards, layout)
    with pytest.raises(CheckpointError, match="config_dir"):
        export_checkpoint(tmp_path / "bare", tmp_path / "hf", progress=False)
    out = export_checkpoint(tmp_path / "bare", tmp_path / "hf", config_dir=tiny_llama_checkpoint, progress=False).path
    assert (out / "model.safetensors").read_bytes() == (tiny_llama_checkpoint / "model.safetensors").read_bytes()


def test_export_refuses_a_config_whose_tying_differs(
    tiny_llama_checkpoint: Path, tiny_llama_tied_checkpoint: Path, tmp_path: Path
) -> None:
    convert_checkpoint(tiny_llama_checkpoint, tmp_path / "m", progress=False)
    with pytest.raises(ConfigError, match="tie_word_embeddings"):
        export_checkpoint(tmp_path / "m", tmp_path / "hf", config_dir=tiny_llama_tied_checkpoint, progress=False)
    assert not (tmp_path / "hf").exists()


def test_rank_files_carry_their_rank(tiny_llama_checkpoint: Path, tmp_path: Path) -> None:
    convert_checkpoint(tiny_llama_checkpoint, tmp_path / "m", tp=2, pp=2, progress=False)
    with safe_open(str(tmp_path / "m" / "tp01_pp00.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "tp_rank": "1", "pp_rank": "0"}


@pytest.mark.parametrize(("family", "tp", "pp"), [("tiny_llama_checkpoint", 2, 2), ("tiny_llama_checkpoint", 1, 2),
                                                  ("moe_checkpoint", 2, 4), ("moe_checkpoint", 1, 3)])
def test_stages_written_side_by_side_are_byte_identical_to_one_after_the_other(
    family: str, tp: int, pp: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = request.getfixturevalue(family)
    if family == "moe_checkpoint" and pp == 3:
        kwargs = {"first_stage_layers": 2}
    else:
        kwargs = {}
    serial = convert_checkpoint(path, tmp_path / "serial", tp=tp, pp=pp, progress=False, workers=1, **kwargs)
    threaded = convert_checkpoint(path, tmp_path / "threads", tp=tp, pp=pp, progress=False, workers=pp, **kwargs)
    names = sorted(p.name for p in serial.path.iterdir())
    assert names == sorted(p.name for p in threaded.path.iterdir()) and len(names) > tp * pp
    for name in names:
        assert (serial.path / name).read_bytes() == (threaded.path / name).read_bytes(), name
    assert (threaded.tensors, threaded.bytes, threaded.reads) == (serial.tensors, serial.bytes, serial.reads)


def test_a_failing_stage_stops_the_conversion_and_leaves_no_output(
    tiny_llama_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error in the last stage (here: reading its final norm) aborts every stage; nothing is left behind."""
    import bridge.streaming.convert as convert_module

    real = convert_module.all_shard_pieces

    def failing(mapping, *args, **kwargs):
        if mapping.megatron_param == "decoder.final_layernorm.weight":
            raise CheckpointError("model.safetensors ends before byte 123; was it truncated?")
        return real(mapping, *args, **kwargs)

    monkeypatch.setattr(convert_module, "all_shard_pieces", failing)
    out = tmp_path / "out" / "m"
    for workers in (1, 2):
        with pytest.raises(CheckpointError, match="truncated"):
            convert_checkpoint(tiny_llama_checkpoint, out, tp=2, pp=2, progress=False, workers=workers)
        assert not out.exists() and not (tmp_path / "out").exists()
    assert sorted(tmp_path.iterdir()) == []


def _stage(steps: list[int], started: threading.Event):
    def run(stop: threading.Event) -> tuple[int, int]:
        started.set()
        for step in range(500):  # 5 s unless stopped
            if stop.is_set():
                raise _Stopped("stopped")
            steps.append(step)
            time.sleep(0.01)
        return 500, 0
    return run


def test_stage_runner_returns_results_in_stage_order_on_any_number_of_threads() -> None:
    def stage(i: int):
        def run(stop: threading.Event) -> tuple[int, int]:
            time.sleep(0.01 * (3 - i))  # finish in reverse order
            return i, i * i
        return run

    for workers in (1, 2, 4):
        assert _run_stages([stage(i) for i in range(4)], workers=workers) == [(i, i * i) for i in range(4)]


def test_the_first_failing_stage_stops_the_others_and_is_what_is_raised() -> None:
    steps: list[int] = []
    started = threading.Event()

    def failing(stop: threading.Event) -> tuple[int, int]:
        started.wait(5)
        raise CheckpointError("disk full")

    began = time.monotonic()
    with pytest.raises(CheckpointError, match="disk full"):
        _run_stages([_stage(steps, started), failing], workers=2)
    assert time.monotonic() - began < 2.5 and len(steps) < 250  # stopped early, not run to the end
    count = len(steps)
    time.sleep(0.05)
    assert len(steps) == count  # nothing runs after the runner returned
    ran: list[int] = []
    with pytest.raises(CheckpointError, match="disk full"):  # stages not yet started never start
        _run_stages([failing, *[_stage(ran, started)] * 8], workers=2)
    assert len(ran) < 8 * 500


# -- vocabulary padding: recorded in layout.json, stripped exactly by export (issue 14) -----------------


@pytest.fixture(scope="module")
def odd_vocab_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.helpers.tiny import make_hf_checkpoint

    base = tmp_path_factory.mktemp("odd-vocab")
    return {"untied": make_hf_checkpoint(base / "untied", vocab_size=201),
            "tied": make_hf_checkpoint(base / "tied", vocab_size=201, tie_word_embeddings=True)}


def _layout_json(path: Path) -> dict:
    import json

    return json.loads((path / "layout.json").read_text())


@pytest.mark.parametrize(
    ("tied", "tp", "pad", "record"),
    [
        ("untied", 1, False, {"padded_vocab_size": 201, "divisible_by": 1, "reason": "none"}),
        ("untied", 2, False, {"padded_vocab_size": 202, "divisible_by": 1, "reason": "tensor_parallel"}),
        ("tied", 2, False, {"padded_vocab_size": 202, "divisible_by": 1, "reason": "tensor_parallel"}),
        ("untied", 2, True, {"padded_vocab_size": 256, "divisible_by": 128, "reason": "requested"}),
    ],
)
def test_vocab_padding_is_recorded_and_export_strips_exactly_it(
    odd_vocab_checkpoints, tied: str, tp: int, pad: bool, record: dict, tmp_path: Path, caplog
) -> None:
    src = odd_vocab_checkpoints[tied]
    with caplog.at_level("INFO", logger="bridge"):
        result = convert_checkpoint(src, tmp_path / "mcore", tp=tp, should_pad_vocab=pad, progress=False)
    assert _layout_json(result.path)["vocab_padding"] == {"vocab_size": 201, "tp": tp, **record}
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "bridge.streaming.convert")
    assert ("vocabulary padded from 201" in said) == (record["reason"] != "none"), said
    _, shards = load_layout(result.path)
    rows = torch.cat([shards[(r, 0)]["embedding.word_embeddings.weight"] for r in range(tp)])
    assert rows.shape[0] == record["padded_vocab_size"] and not rows[201:].any()  # zero padding rows
    out = export_checkpoint(result.path, tmp_path / "hf", progress=False).path
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_a_layout_without_the_padding_record_still_reads_and_exports_bit_exact(
    odd_vocab_checkpoints, tmp_path: Path
) -> None:
    """Layouts written before the record existed (then padded to 128 x TP by default) keep working."""
    import json

    src = odd_vocab_checkpoints["untied"]
    path = convert_checkpoint(src, tmp_path / "mcore", tp=2, should_pad_vocab=True, progress=False).path
    old = _layout_json(path)
    del old["vocab_padding"]
    (path / "layout.json").write_text(json.dumps(old, indent=1) + "\n")
    out = export_checkpoint(path, tmp_path / "hf", progress=False).path
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_a_damaged_padding_record_or_another_vocabulary_fails_before_writing(
    odd_vocab_checkpoints, tmp_path: Path
) -> None:
    import json

    src = odd_vocab_checkpoints["untied"]
    path = convert_checkpoint(src, tmp_path / "mcore", tp=2, progress=False).path
    good = _layout_json(path)
    damaged = {**good, "vocab_padding": {**good["vocab_padding"], "vocab_size": 200, "padded_vocab_size": 200,
                                         "reason": "none"}}
    (path / "layout.json").write_text(json.dumps(damaged))
    with pytest.raises(CheckpointError, match=r"layout\.json records vocab padding"):
        export_checkpoint(path, tmp_path / "hf", progress=False)
    (path / "layout.json").write_text(json.dumps(good))
    other = tmp_path / "other-config"
    other.mkdir()
    config = json.loads((src / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "vocab_size": 256}))
    with pytest.raises(ConfigError, match="vocab_size=256 but the layout .* holds a vocabulary of 201"):
        export_checkpoint(path, tmp_path / "hf", config_dir=other, progress=False)
    assert not (tmp_path / "hf").exists()


def test_reshard_records_the_padding_of_the_new_tp_size(odd_vocab_checkpoints, tmp_path: Path) -> None:
    from bridge.parallel.reshard import reshard

    src = odd_vocab_checkpoints["tied"]
    one = convert_checkpoint(src, tmp_path / "tp1", tp=1, progress=False).path
    assert _layout_json(one)["vocab_padding"]["reason"] == "none"
    two = tmp_path / "tp2"
    reshard(one, two, tp=2, pp=1)
    assert _layout_json(two)["vocab_padding"] == {"vocab_size": 201, "padded_vocab_size": 202, "tp": 2,
                                                        "divisible_by": 1, "reason": "tensor_parallel"}
    out = export_checkpoint(two, tmp_path / "hf", config_dir=one, progress=False).path
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
