"""Checkpoint phase of ``peer_gpu.py``: HF <-> Megatron-LM ``torch_dist`` checkpoints, ours against the peer.

Each operation runs in a fresh, plain ``python`` process (no torchrun: both libraries make their own
process group, as a user's one-off conversion script would), sides alternating:

* ``import``: ours ``AutoBridge.import_ckpt(hf, dir)`` (default: fsync before the atomic rename, then
  again with ``durable=False``, like the peer, which never fsyncs; for a dense model in one process both
  write without building the model), and ours with ``offline=False`` (the model built on the GPU and saved
  by ``dist_checkpointing``, fsync); the peer's ``AutoBridge.import_ckpt(hf, dir)`` (it builds on the CPU:
  ``use_cpu_initialization=True``);
* ``export``: ours ``AutoBridge.export_ckpt(dir, out)`` of our checkpoint (default: copied from the records
  without a model; fsync, then ``durable=False``), and with ``offline=False`` (built and loaded on the GPU);
  the peer's ``AutoBridge.from_hf_pretrained(hf).export_ckpt(dir, out)`` of its own (it loads on the CPU over
  gloo).

Imports (the entry points and megatron-core's checkpointing and GPT modules) happen before the clock; the
process' whole wall time is reported too. Measured per operation: wall seconds of the call, peak GPU
memory (``torch.cuda.max_memory_allocated``; the peer's CPU paths use none), peak host RSS above the
RSS before the call (``VmHWM`` reset through ``/proc/self/clear_refs``), the checkpoint's size on disk,
and for exports a bit-exact comparison with the source safetensors.

The peer runs with ``PEER_CKPT_WORKAROUNDS`` and nothing else; ours with none.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

__all__ = ["PEER_CKPT_WORKAROUNDS", "ckpt_main", "run_ckpt"]

#: Packages the peer's ``megatron.bridge.training`` imports unguarded (or its data/logging modules do)
#: that a conversion never uses; stubbed only where they are not installed (the report lists which were).
PEER_MISSING_OK = ("modelopt", "datasets", "wandb", "mlflow", "comet_ml", "PIL", "megatron.energon", "tensorboard")
PEER_CKPT_WORKAROUNDS = [
    "import: megatron.bridge.peft.lora_layers does `import transformer_engine.pytorch` unguarded; replaced by "
    "a stub module (as in the run phase)",
    "import: megatron.bridge.training (its save/load_megatron_model) imports modelopt, datasets, PIL, wandb, "
    "megatron.energon and torch.utils.tensorboard unguarded; each one not installed is replaced by an empty "
    "stub module (the report's `stubbed` lists those actually stubbed); modelopt's is_quantized -> False",
    "import_ckpt: its provider gets transformer_layer_spec=local_layer_spec and apply_rope_fusion, "
    "persist_layer_norm, masked_softmax_fusion = False (no TE/Apex), through a subclass of its AutoBridge "
    "whose to_megatron_provider sets them; import_ckpt itself is called unchanged",
]


class _Stub(types.ModuleType):
    def __getattr__(self, attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        value = type(attr, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, attr, value)
        return value


class _StubMissing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last on ``sys.meta_path``: a module under one of ``prefixes`` that no real finder found becomes a stub."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.prefixes, self.stubbed = prefixes, []

    def find_spec(self, name, path, target=None):  # noqa: ANN001
        if any(name == p or name.startswith(p + ".") for p in self.prefixes):
            self.stubbed.append(name)
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):  # noqa: ANN001
        module = _Stub(spec.name)
        module.__path__, module.__version__ = [], "0.0"
        return module

    def exec_module(self, module) -> None:  # noqa: ANN001
        return None


def _stub(name: str, finder: _StubMissing) -> types.ModuleType:
    module = _Stub(name)
    module.__path__ = []
    sys.modules[name] = module
    finder.stubbed.append(name)
    return module


def peer_entry() -> tuple[type, list[str]]:
    """The peer's ``AutoBridge`` (a subclass applying the build workarounds) and the modules stubbed."""
    finder = _StubMissing(PEER_MISSING_OK)
    sys.meta_path.append(finder)
    if importlib.util.find_spec("tensorboard") is None:  # torch.utils.tensorboard raises without it
        for name in ("torch.utils.tensorboard", "torch.utils.tensorboard.writer"):
            _stub(name, finder)
    _stub("megatron.bridge.peft.lora_layers", finder)
    if importlib.util.find_spec("modelopt") is None:
        import modelopt.torch.quantization.utils as quant  # a stub, through the finder

        quant.is_quantized = lambda model: False
    from megatron.bridge import AutoBridge
    from megatron.bridge.models.gpt_provider import local_layer_spec
    from megatron.bridge.training import model_load_save  # noqa: F401 - before the clock

    class PeerAutoBridge(AutoBridge):
        def to_megatron_provider(self, *args, **kwargs):  # noqa: ANN002, ANN003
            provider = super().to_megatron_provider(*args, **kwargs)
            provider.transformer_layer_spec = local_layer_spec
            provider.apply_rope_fusion = provider.persist_layer_norm = provider.masked_softmax_fusion = False
            return provider

    return PeerAutoBridge, finder.stubbed


def _rss(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def ckpt_main(args) -> int:  # noqa: ANN001
    """One operation of one side, in this (fresh) process; prints one JSON line."""
    import torch

    stubbed: list[str] = []
    if args.side == "peer":
        auto, stubbed = peer_entry()
    else:
        from bridge import AutoBridge as auto
        import bridge.models  # noqa: F401
        # transformers' config machinery, which the peer's entry point imports at module level and ours only
        # when a config is read (AutoConfig): before the clock too, so that both sides start from the same imports
        import transformers.models.auto.configuration_auto  # noqa: F401
        from transformers import AutoConfig  # noqa: F401
    import megatron.core.dist_checkpointing  # noqa: F401 - both sides use it; imported before the clock
    from megatron.core.models.gpt import GPTModel  # noqa: F401

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.init()
        torch.cuda.reset_peak_memory_stats()
    if args.side == "ours":
        kwargs = {"durable": args.durable, **({"offline": False} if args.build_model else {})}
        work = {"import": lambda: auto.import_ckpt(args.hf, args.megatron, **kwargs),
                "export": lambda: auto.export_ckpt(args.megatron, args.out, **kwargs)}[args.op]
    else:
        work = {"import": lambda: auto.import_ckpt(args.hf, args.megatron),
                "export": lambda: auto.from_hf_pretrained(args.hf).export_ckpt(args.megatron, args.out,
                                                                                show_progress=False)}[args.op]
    base = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    started = time.perf_counter()
    work()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    report = {"side": args.side, "op": args.op, "durable": args.durable if args.side == "ours" else False,
              "build_model": bool(args.build_model) if args.side == "ours" else True,
              "seconds": round(seconds, 3), "host_peak_rss_above_baseline_gib": round((_rss("VmHWM") - base) / 2**30, 3),
              "host_baseline_rss_gib": round(base / 2**30, 3),
              "gpu_peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
              "stubbed": sorted(set(stubbed))}
    target = Path(args.megatron if args.op == "import" else args.out)
    report["output_bytes"] = _disk_bytes(target)
    if args.op == "export":
        from peer_gpu import _bit_exact

        report["export"] = _bit_exact(Path(args.hf), Path(args.out))
    print(json.dumps(report))
    return 0


def _summary(runs: list[dict]) -> dict:
    secs = [r["seconds"] for r in runs]
    return {"seconds_min": min(secs), "seconds_median": statistics.median(secs), "reps": len(secs),
            "process_wall_s_median": statistics.median(r["process_wall_s"] for r in runs),
            "host_peak_rss_above_baseline_gib_max": max(r["host_peak_rss_above_baseline_gib"] for r in runs),
            "gpu_peak_gib_max": max((r["gpu_peak_gib"] or 0.0) for r in runs),
            "bit_exact": all(r.get("export", {}).get("bit_exact", True) for r in runs)}


def run_ckpt(args, result: dict, env_for, run, save) -> None:  # noqa: ANN001
    """Orchestrate the checkpoint phase (``--reps`` rounds, sides alternating) into ``result["ckpt"]``."""
    import subprocess

    work, me = args.work, str(Path(__file__).resolve())
    ckpt = work / "ckpt"
    cases = [("ours", True, False), ("ours", False, False), ("ours", True, True), ("peer", False, True)]
    runs: dict[str, list[dict]] = {}
    errors = result.setdefault("errors", [])
    for rep in range(args.ckpt_reps):
        for op in ("import", "export"):
            for side, durable, build in cases:
                name = f"{side}_{op}" + ("" if side == "peer" else ("_durable" if durable else "_nodurable")
                                         + ("_model" if build else ""))
                megatron = work / f"mcore_{side}" if op == "export" else work / f"mcore_{side}_new"
                if op == "import":
                    subprocess.run(["rm", "-rf", str(megatron)])
                out = work / f"hf_export_{side}"
                subprocess.run(["rm", "-rf", str(out)])
                cmd = [sys.executable, me, "--side", side, "--op", op, "--hf", str(ckpt), "--megatron",
                       str(megatron), "--out", str(out)] + (["--durable"] if durable else []) \
                    + (["--build-model"] if build and side == "ours" else [])
                os.sync()
                rc, wall, text, obj = run(cmd, env_for(side), args.side_timeout)
                if obj is None:
                    errors.append({"ckpt": name, "rep": rep, "rc": rc, "tail": text[-6000:]})
                else:
                    runs.setdefault(name, []).append({**obj, "process_wall_s": round(wall, 2)})
                    if op == "import" and (side == "peer" or not (durable or build)):  # the export phase reads it
                        subprocess.run(["rm", "-rf", str(work / f"mcore_{side}")])
                        megatron.rename(work / f"mcore_{side}")
                result["ckpt"] = {"workarounds": PEER_CKPT_WORKAROUNDS, "runs": runs,
                                  "summary": {k: _summary(v) for k, v in runs.items()}}
                save()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=("ours", "peer"), required=True)
    ap.add_argument("--op", choices=("import", "export"), required=True)
    ap.add_argument("--hf", type=Path, required=True)
    ap.add_argument("--megatron", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--durable", action="store_true")
    ap.add_argument("--build-model", action="store_true", help="ours: offline=False (build the model)")
    return ckpt_main(ap.parse_args(argv))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
