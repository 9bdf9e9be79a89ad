#!/usr/bin/env python
"""Benchmark on GPU: this project's bridge vs NVIDIA Megatron-Bridge (the peer), same checkpoint, same run.

Builds a Llama checkpoint of about 1.5B parameters (bf16, random weights, a small offline
tokenizer beside it), computes HF reference logits once, then for each side in its own
subprocess (launched with torchrun, one process per GPU):

1. import: the bridge's entry points (in the run, torch already imported) and, separately,
   cold-ish imports in fresh processes, ``--import-reps`` times per side, alternating;
2. open: ``AutoBridge.from_hf_pretrained(path)``;
3. build: provider -> ``provide_distributed_model`` (no random init: the weights are loaded next);
4. load: ``bridge.load_hf_weights(model)`` (HF -> Megatron, this rank's TP shard);
5. forward: the first forward, a second one, then the median (and min) of 20 more; logits vs HF
   (max abs diff, cosine);
6. export: ``bridge.save_hf_pretrained(model, dir)``, after ``os.sync()`` so no earlier write is flushed
   meanwhile; bit-exact check against the source. Ours fsyncs by default (``durable=True``); it is
   timed a second time with ``durable=False``, like for like with the peer, which never fsyncs;
7. peak GPU memory (``torch.cuda.max_memory_allocated``) per phase;
8. (``--phases ckpt``) each side's ``import_ckpt`` / ``export_ckpt`` (HF <-> Megatron-LM ``torch_dist``), in
   fresh processes: see ``peer_gpu_ckpt.py``.

TP=1 on one GPU, then TP=2 on two. The peer runs only with the workarounds listed in
``PEER_WORKAROUNDS`` (it needs them on a machine without Transformer Engine and ModelOpt);
our side runs with none. Writes one JSON report.

GPU machine (2 GPUs), repo root; wheels carried in ``.carry/`` (megatron-core 0.19.2 in ``wheels/``,
megatron-bridge 0.6.2 and omegaconf 2.4.0 in ``wheels-peer/``) and our package pinned to a commit with
``git archive HEAD bridge | tar -x -C .carry/ours && git rev-parse HEAD > .carry/ours/COMMIT``::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/wheels/megatron_core-0.19.2-*.whl
    python3 -m pip install -q --no-index --no-deps --target /tmp/peersite .carry/wheels-peer/*.whl
    python3 -m compileall -q .carry/ours benchmarks
    python3 benchmarks/peer_gpu.py all --work /tmp/pb --report $OUT/peer_gpu.json \
        --mcore-site /tmp/site --peer-site /tmp/peersite --ours-path .carry/ours

CPU dry run (tiny model; the peer side then borrows ``bridge.cpu``'s MCore CPU patches, which
only exist for CPU; megatron-core 0.19.2 needs ``triton`` importable, and the peer Python >= 3.12
for ``typing.override``)::

    python benchmarks/peer_gpu.py all --device cpu --size tiny --tps 1 2 --work /tmp/pb ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    # Llama-3.2-1B's shapes, untied: 1.50e9 parameters.
    "1.5b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                 num_attention_heads=32, num_key_value_heads=8),
    "tiny": dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
}
SHARD_BYTES = 2 * 2**30
PEER_WORKAROUNDS = [
    "import: megatron.bridge's package __init__ imports every model family; bypassed by registering "
    "megatron.bridge and megatron.bridge.models as bare namespace modules, then importing only "
    "models.conversion.auto_bridge and models.llama",
    "import: megatron.bridge.peft.lora_layers does `import transformer_engine.pytorch` unguarded "
    "(pulled in by auto_bridge -> model_bridge -> peft_bridge); replaced by a stub module",
    "build: its default layer spec is Transformer Engine's; set transformer_layer_spec=local_layer_spec",
    "build: Llama's provider turns on apply_rope_fusion, persist_layer_norm, masked_softmax_fusion, "
    "which need TE/Apex kernels; set to False",
    "export: save_hf_weights does `from modelopt.torch.quantization.utils import is_quantized` "
    "unguarded; a stub modelopt module (is_quantized -> False) is installed right before export",
    "export: save_hf_pretrained loads the source's tokenizer and fails without one; the checkpoint "
    "gets a tokenizer for that reason",
]


# ---------------------------------------------------------------------------------------------
# checkpoint and HF reference
def _llama_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    h, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h), p + "mlp.down_proj.weight": (h, f),
        })
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (v, h)
    return shapes


def _save_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>", "<pad>"] + [f"w{i}" for i in range(252)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                            pad_token="<pad>").save_pretrained(out)


def make_checkpoint(out: Path, size: str, device: str) -> dict:
    """Random bf16 Llama weights (sharded safetensors + index), config.json and a tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    c = SIZES[size]
    out.mkdir(parents=True, exist_ok=True)
    LlamaConfig(**c, max_position_embeddings=4096, rope_theta=500000.0, rms_norm_eps=1e-5,
                tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, dtype="bfloat16",
                architectures=["LlamaForCausalLM"]).save_pretrained(out)
    _save_tokenizer(out)
    shapes = _llama_shapes(c)
    plan: list[list[str]] = [[]]
    size_of = {n: 2 * int(torch.Size(s).numel()) for n, s in shapes.items()}
    for n in shapes:
        if plan[-1] and sum(size_of[m] for m in plan[-1]) + size_of[n] > SHARD_BYTES:
            plan.append([])
        plan[-1].append(n)
    gen = torch.Generator(device=device).manual_seed(0)
    weight_map = {}
    for k, names in enumerate(plan, 1):
        fname = f"model-{k:05d}-of-{len(plan):05d}.safetensors"
        shard = {}
        for n in names:
            t = torch.randn(shapes[n], generator=gen, device=device, dtype=torch.float32) * 0.02
            shard[n] = (t + 1.0 if n.endswith("norm.weight") else t).to(torch.bfloat16).cpu()
            weight_map[n] = fname
        save_file(shard, out / fname, metadata={"format": "pt"})
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": sum(size_of.values())}, "weight_map": weight_map}, indent=2))
    return {"size": size, "config": c, "parameters": sum(torch.Size(s).numel() for s in shapes.values()),
            "shards": len(plan), "bytes": sum(size_of.values())}


def hf_reference(ckpt: Path, out: Path, *, batch: int, seq: int, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16, attn_implementation="eager").to(device)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids.to(device)).logits.float().cpu()
    torch.save({"ids": ids, "logits": logits, "vocab": vocab}, out)
    return {"seconds": round(time.perf_counter() - t0, 3), "batch": batch, "seq": seq,
            "transformers_param_dtype": str(next(model.parameters()).dtype)}


# ---------------------------------------------------------------------------------------------
# the two sides: same phases, each side's public API
class Ours:
    """This project's bridge: public API only, no workarounds."""

    name = "ours"

    @staticmethod
    def import_entry():
        from bridge import AutoBridge
        import bridge.models  # noqa: F401 - family registry (from_hf_pretrained would load it anyway)

        return AutoBridge

    @staticmethod
    def build(bridge, tp: int, device: str):
        provider = bridge.to_megatron_provider(load_weights=False)
        provider.tensor_model_parallel_size = tp
        provider.perform_initialization = False  # weights are loaded next
        provider.finalize()
        return provider.provide_distributed_model(wrap_with_ddp=False)

    @staticmethod
    def export(bridge, model, out: Path, durable: bool = True) -> None:
        bridge.save_hf_pretrained(model, out, overwrite=True, durable=durable)


class Peer:
    """NVIDIA Megatron-Bridge, with the workarounds of ``PEER_WORKAROUNDS`` (and nothing else)."""

    name = "peer"

    @staticmethod
    def import_entry():
        import importlib.machinery
        import types

        import megatron

        root = next(Path(p) / "bridge" for p in megatron.__path__ if (Path(p) / "bridge").is_dir())
        for name, path in (("megatron.bridge", root), ("megatron.bridge.models", root / "models")):
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            sys.modules[name] = mod
        stub = types.ModuleType("megatron.bridge.peft.lora_layers")

        def placeholder(attr: str) -> type:  # LoRA layer classes: only ever isinstance targets here
            if attr.startswith("__"):
                raise AttributeError(attr)
            setattr(stub, attr, type(attr, (), {}))
            return getattr(stub, attr)

        stub.__getattr__ = placeholder
        sys.modules[stub.__name__] = stub
        from megatron.bridge.models.conversion.auto_bridge import AutoBridge
        import megatron.bridge.models.llama  # noqa: F401 - registers LlamaBridge

        return AutoBridge

    @staticmethod
    def build(bridge, tp: int, device: str):
        from megatron.bridge.models.gpt_provider import local_layer_spec

        provider = bridge.to_megatron_provider(load_weights=False)
        provider.tensor_model_parallel_size = tp
        provider.perform_initialization = False  # weights are loaded next
        provider.parallel_output = False  # full logits at TP > 1, as ours returns them
        provider.transformer_layer_spec = local_layer_spec
        provider.apply_rope_fusion = provider.persist_layer_norm = provider.masked_softmax_fusion = False
        provider.finalize()
        if device == "cpu":  # dry run only: its builder seeds CUDA and builds on CUDA
            _cpu_model_parallel(tp)
        return provider.provide_distributed_model(wrap_with_ddp=False, use_cpu_initialization=device == "cpu")

    @staticmethod
    def export(bridge, model, out: Path) -> None:
        import importlib.machinery
        import types

        if "modelopt" not in sys.modules:
            names = ["modelopt", "modelopt.torch", "modelopt.torch.quantization", "modelopt.torch.quantization.utils"]
            for n in names:
                m = types.ModuleType(n)
                m.__spec__ = importlib.machinery.ModuleSpec(n, None, is_package=n != names[-1])
                sys.modules[n] = m
            sys.modules[names[-1]].is_quantized = lambda model: False
        bridge.save_hf_pretrained(model, out, show_progress=False)


def _nodurable(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + "_nodurable")


def _import_mcore() -> None:
    from megatron.core import parallel_state  # noqa: F401
    from megatron.core.models.gpt import GPTModel  # noqa: F401
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec  # noqa: F401
    from megatron.core.transformer.transformer_config import TransformerConfig  # noqa: F401


def _cpu_model_parallel(tp: int) -> None:
    from megatron.core import parallel_state as ps

    from bridge import cpu

    ps.initialize_model_parallel(tensor_model_parallel_size=tp)
    cpu.apply(0)


def _forward(model, ids):
    import torch

    chunk = model[0]
    chunk.eval()
    dev = next(chunk.parameters()).device
    ids = ids.to(dev)
    b, s = ids.shape
    pos = torch.arange(s, device=dev).unsqueeze(0).expand(b, s)
    mask = torch.triu(torch.ones(s, s, dtype=torch.bool, device=dev), diagonal=1).expand(b, 1, s, s)
    with torch.no_grad():
        return chunk(ids, pos, mask)


FORWARD_REPS = 20


def _plain_config(chunk) -> dict:
    """The chunk's TransformerConfig fields with plain values (to diff the two sides' models)."""
    config = getattr(chunk, "config", None) or getattr(getattr(chunk, "module", None), "config", None)
    return {k: v for k, v in sorted(vars(config).items()) if isinstance(v, (bool, int, float, str, type(None)))}


def _timed_forward(model, ids, cuda: bool) -> float:
    import torch

    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    _forward(model, ids)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def _bit_exact(src: Path, dst: Path) -> dict:
    from safetensors import safe_open

    def index(p: Path) -> dict[str, Path]:
        return {k: f for f in sorted(p.glob("*.safetensors")) for k in safe_open(f, "pt").keys()}

    a, b = index(src), index(dst)
    bad = sorted(set(a) ^ set(b))
    for n in sorted(set(a) & set(b)):
        x, y = safe_open(a[n], "pt").get_tensor(n), safe_open(b[n], "pt").get_tensor(n)
        if x.dtype != y.dtype or x.shape != y.shape or not bool((x == y).all()):
            bad.append(n)
    files = sorted(f.name for f in dst.iterdir())
    return {"bit_exact": not bad, "mismatches": bad[:20], "tensors": len(b), "files": files}


def run_side(args) -> int:
    """One side, all phases; launched by torchrun (one process per GPU)."""
    import torch
    import torch.distributed as dist

    side = {"ours": Ours, "peer": Peer}[args.side]
    cuda = args.device == "cuda"
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    dist.barrier()
    seconds: dict[str, float] = {}
    memory: dict[str, dict[str, float]] = {}

    def phase(name, fn):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        seconds[name] = round(time.perf_counter() - t, 4)
        if cuda:
            memory[name] = {"peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                            "allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
                            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3)}
        dist.barrier()
        return out

    auto = phase("import", side.import_entry)
    phase("import_mcore", _import_mcore)  # ours imports MCore lazily; the peer's entry points already did
    bridge = phase("open", lambda: auto.from_hf_pretrained(args.hf))
    model = phase("build", lambda: side.build(bridge, args.tp, args.device))
    phase("load", lambda: bridge.load_hf_weights(model))
    ref = torch.load(args.ref)
    try:
        logits = phase("forward_first", lambda: _forward(model, ref["ids"]))
        phase("forward", lambda: _forward(model, ref["ids"]))
        runs = []  # steady state: the median of FORWARD_REPS more forwards, each synchronised
        for _ in range(FORWARD_REPS):
            runs.append(phase("forward_rep", lambda: _timed_forward(model, ref["ids"], cuda)))
        seconds["forward_median"] = round(statistics.median(runs), 5)
        seconds["forward_min"] = round(min(runs), 5)
        seconds.pop("forward_rep"); memory.pop("forward_rep", None)
        got = logits[..., : ref["vocab"]].float().cpu()
        parity = {"max_abs_diff": (got - ref["logits"]).abs().max().item(),
                  "cosine_similarity": torch.nn.functional.cosine_similarity(
                      got.flatten().double(), ref["logits"].flatten().double(), dim=0).item(),
                  "logits_shape": list(logits.shape), "logits_dtype": str(logits.dtype)}
        del logits, got
    except Exception as e:  # noqa: BLE001 - recorded; export still runs
        parity = {"error": f"{type(e).__name__}: {e}"[:2000]}
    params = list(model[0].parameters())
    os.sync()  # earlier runs' dirty pages (checkpoint, exports) must not be flushed during this export
    phase("export", lambda: side.export(bridge, model, args.out_dir))
    if args.side == "ours":  # like for like with the peer, which does not fsync
        os.sync()
        phase("export_nodurable", lambda: side.export(bridge, model, _nodurable(args.out_dir), durable=False))
    if rank == 0:
        report = {
            "side": args.side, "tp": args.tp, "world_size": dist.get_world_size(), "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "seconds": seconds, "memory": memory,
            "peak_gib": max((m["peak_gib"] for m in memory.values()), default=None),
            "param_dtype": str(params[0].dtype), "local_parameters": sum(p.numel() for p in params),
            "parity_vs_hf": parity, "export": _bit_exact(args.hf, args.out_dir),
            "workarounds": PEER_WORKAROUNDS if args.side == "peer" else [],
            "model_wrapper": type(model[0]).__name__,
            "transformer_config": _plain_config(model[0]),
        }
        args.report.write_text(json.dumps(report, indent=2))
    dist.barrier()
    dist.destroy_process_group()
    return 0


def import_time(side_name: str) -> None:
    t0 = time.perf_counter()
    import torch  # noqa: F401

    t1 = time.perf_counter()
    {"ours": Ours, "peer": Peer}[side_name].import_entry()
    t2 = time.perf_counter()
    _import_mcore()  # what building a GPT model needs besides (the peer's entry points import it already)
    t3 = time.perf_counter()
    import importlib.metadata as md

    import megatron.core
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "megatron_core": megatron.core.__version__}
    if side_name == "peer":
        versions["megatron_bridge"] = md.version("megatron-bridge")
    print(json.dumps({"torch_s": round(t1 - t0, 3), "entry_s": round(t2 - t1, 3),
                      "entry_and_mcore_gpt_s": round(t3 - t1, 3), "versions": versions}))


# ---------------------------------------------------------------------------------------------
# orchestration
def _env(side: str, args) -> dict[str, str]:
    paths = [str(args.mcore_site)] if args.mcore_site else []
    if side == "ours" or args.device == "cpu":  # the peer side sees our package only in a CPU dry run
        paths.insert(0, str(args.ours_path))
    if side == "peer":
        paths.insert(0, str(args.peer_site))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONSTARTUP", None)
    return env


def _run(cmd: list[str], env: dict, timeout: int) -> tuple[int, float, str, object]:
    """(returncode, wall seconds, stdout+stderr, the JSON object on stdout's last line or None)."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, str(e.stdout or ""), f"timeout after {timeout}s: {e.stderr or ''}"
    wall = time.perf_counter() - t
    try:
        obj = json.loads(out.strip().splitlines()[-1]) if rc == 0 else None
    except (IndexError, json.JSONDecodeError):
        obj = None
    return rc, wall, out + err, obj


def _commit(path: Path) -> str | None:
    """The commit our package was taken from (a COMMIT file beside a `git archive` snapshot, or git)."""
    if (path / "COMMIT").is_file():
        return (path / "COMMIT").read_text().strip()
    p = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return p.stdout.strip() or None


def prepare(args) -> None:
    """Checkpoint + HF reference logits, in a process of its own (the orchestrator never touches the GPU)."""
    import torch

    t = time.perf_counter()
    ckpt = make_checkpoint(args.work / "ckpt", args.size, args.device)
    ckpt["seconds"] = round(time.perf_counter() - t, 2)
    ref = hf_reference(args.work / "ckpt", args.work / "ref.pt", batch=args.batch, seq=args.seq, device=args.device)
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print(json.dumps({"checkpoint": ckpt, "hf_reference": ref, "gpus": gpus}))


def run_all(args) -> int:
    work, me = args.work, str(Path(__file__).resolve())
    work.mkdir(parents=True, exist_ok=True)
    ckpt, ref = work / "ckpt", work / "ref.pt"
    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "device": args.device,
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "ours_commit": _commit(args.ours_path), "peer_workarounds": PEER_WORKAROUNDS, "runs": [],
                    "errors": []}

    def save() -> None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(result, indent=2))

    _, _, out, obj = _run([sys.executable, me, "prepare", "--work", str(work), "--size", args.size, "--device",
                           args.device, "--batch", str(args.batch), "--seq", str(args.seq)], _env("ours", args), 300)
    if obj is None:
        result["errors"].append({"prepare": out[-6000:]})
        save()
        return 1
    result.update(obj)
    save()
    if "ckpt" in args.phases:  # HF <-> torch_dist checkpoints, each side's import_ckpt / export_ckpt
        from peer_gpu_ckpt import run_ckpt

        run_ckpt(args, result, lambda side: _env(side, args), _run, save)
    if "runs" not in args.phases:
        print(json.dumps(result, indent=2))
        return 1 if result["errors"] else 0
    imports: dict[str, list] = {"ours": [], "peer": []}
    for _ in range(args.import_reps):
        for side in ("ours", "peer"):
            _, wall, out, obj = _run([sys.executable, me, "import-time", "--side", side], _env(side, args), 300)
            if obj is None:
                result["errors"].append({"import": side, "tail": out[-3000:]})
                continue
            result.setdefault("versions", {})[side] = obj.pop("versions")
            imports[side].append({**obj, "process_wall_s": round(wall, 3)})
    result["import_cold"] = {s: {"runs": r, **{f"median_{k}": statistics.median(x[k] for x in r) for k in
                                               ("entry_s", "entry_and_mcore_gpt_s", "process_wall_s")}}
                             for s, r in imports.items() if r}
    save()
    for tp in args.tps:
        for side in ("ours", "peer"):
            rep, out_dir = work / f"{side}_tp{tp}.json", work / f"export_{side}_tp{tp}"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={tp}", me,
                   "side", "--side", side, "--tp", str(tp), "--hf", str(ckpt), "--ref", str(ref),
                   "--out-dir", str(out_dir), "--report", str(rep), "--device", args.device]
            rc, wall, out, _ = _run(cmd, _env(side, args), args.side_timeout)
            if rc or not rep.is_file():
                result["errors"].append({"side": side, "tp": tp, "rc": rc, "tail": out[-6000:]})
            else:
                result["runs"].append({**json.loads(rep.read_text()), "process_wall_s": round(wall, 2)})
            subprocess.run(["rm", "-rf", str(out_dir), str(_nodurable(out_dir))])
            save()
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all")
    a.add_argument("--work", type=Path, required=True)
    a.add_argument("--report", type=Path, required=True)
    a.add_argument("--mcore-site", type=Path)
    a.add_argument("--peer-site", type=Path, required=True)
    a.add_argument("--ours-path", type=Path, default=ROOT, help="folder holding our `bridge` package")
    a.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    a.add_argument("--size", choices=sorted(SIZES), default="1.5b")
    a.add_argument("--tps", type=int, nargs="+", default=[1, 2])
    a.add_argument("--batch", type=int, default=1)
    a.add_argument("--seq", type=int, default=256)
    a.add_argument("--import-reps", type=int, default=2)
    a.add_argument("--side-timeout", type=int, default=200)
    a.add_argument("--phases", nargs="+", choices=("runs", "ckpt"), default=["runs", "ckpt"],
                   help="runs: import/load/forward/export per TP; ckpt: import_ckpt/export_ckpt (peer_gpu_ckpt.py)")
    a.add_argument("--ckpt-reps", type=int, default=2)
    s = sub.add_parser("side")
    s.add_argument("--side", choices=("ours", "peer"), required=True)
    s.add_argument("--tp", type=int, default=1)
    s.add_argument("--hf", type=Path, required=True)
    s.add_argument("--ref", type=Path, required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.add_argument("--report", type=Path, required=True)
    s.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    pr = sub.add_parser("prepare")
    pr.add_argument("--work", type=Path, required=True)
    pr.add_argument("--size", choices=sorted(SIZES), default="1.5b")
    pr.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    pr.add_argument("--batch", type=int, default=1)
    pr.add_argument("--seq", type=int, default=256)
    i = sub.add_parser("import-time")
    i.add_argument("--side", choices=("ours", "peer"), required=True)
    args = ap.parse_args(argv)
    if args.cmd == "side":
        return run_side(args)
    if args.cmd == "prepare":
        prepare(args)
        return 0
    if args.cmd == "import-time":
        import_time(args.side)
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
