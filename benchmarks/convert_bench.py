"""Offline conversion benchmark: ``bridge.streaming`` against the I/O floor and a transformers baseline.

Generates a Llama-shaped bf16 checkpoint locally (random weights: ``LlamaForCausalLM(LlamaConfig(...))``
+ ``save_pretrained``; default TinyLlama's shape, 1.1B parameters, 2.2 GB), then runs every phase
``--reps`` times, each in a fresh process (``nice``-able, inherited from this one):

* ``floor``: ``safetensors.torch.load_file`` of every tensor + ``save_file`` of the same tensors;
* ``convert_tp1``, ``convert_tp2pp2``: ``bridge.streaming.convert_checkpoint`` HF -> Megatron layout;
* ``export_tp1``, ``export_tp2pp2``: ``bridge.streaming.export_checkpoint`` Megatron layout -> HF;
* ``convert_tp1_fsync``: ``convert_tp1`` with ``durable=True`` (the default: fsync before the rename);
* ``hf_import``: ``from_pretrained`` + the state dict converted to Megatron names/layout by hand (q/k/v
  interleave, gate/up concatenation) + ``save_file`` (the TP=1 result ``convert_tp1`` writes);
* ``hf_export``: ``load_file`` of that TP=1 state + converted back by hand + ``save_pretrained``.

Each phase reports the time of its work (after imports; the process' wall time is reported too), its
CPU time, GB/s over the checkpoint's bytes, and its peak RSS above the RSS before the work (``VmHWM``
reset through ``/proc/self/clear_refs``). Before each phase its inputs are read once (so they come
from the page cache: warm numbers), outputs of the previous phase are deleted, ``sync`` runs, and the
1-minute load average must drop below ``--max-load`` (or ``--patience`` runs out). The phase order
rotates between repetitions; the first repetition is dropped from the summary.

    nice -n 10 .venv/bin/python benchmarks/convert_bench.py --work /tmp/convert-bench --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
             num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048)
PHASES = ("floor", "convert_tp1", "convert_tp2pp2", "export_tp1", "export_tp2pp2", "convert_tp1_fsync",
          "hf_import", "hf_export")


# -- measurement inside a phase process ------------------------------------------------------------

def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(work) -> dict[str, float]:
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # VmHWM := current RSS
    cpu, started = _cpu(), time.perf_counter()
    work()
    seconds, cpu = time.perf_counter() - started, _cpu() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_extra": _status("VmHWM") - base, "rss_base": base}


def _hand_to_megatron(sd: dict, cfg: dict) -> dict:
    """The by-hand HF -> Megatron (TP=1, local spec names) state-dict conversion of a Llama."""
    import torch

    heads, groups = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // heads
    out = {"embedding.word_embeddings.weight": sd["model.embed_tokens.weight"],
           "decoder.final_layernorm.weight": sd["model.norm.weight"], "output_layer.weight": sd["lm_head.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p, m = f"model.layers.{i}.", f"decoder.layers.{i}."
        q = sd[p + "self_attn.q_proj.weight"].reshape(groups, heads // groups * hd, -1)
        k = sd[p + "self_attn.k_proj.weight"].reshape(groups, hd, -1)
        v = sd[p + "self_attn.v_proj.weight"].reshape(groups, hd, -1)
        out[m + "self_attention.linear_qkv.weight"] = torch.cat([q, k, v], dim=1).reshape(-1, q.shape[-1])
        out[m + "self_attention.linear_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[m + "mlp.linear_fc1.weight"] = torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
        out[m + "mlp.linear_fc2.weight"] = sd[p + "mlp.down_proj.weight"]
        out[m + "input_layernorm.weight"] = sd[p + "input_layernorm.weight"]
        out[m + "pre_mlp_layernorm.weight"] = sd[p + "post_attention_layernorm.weight"]
    return {n: t.contiguous() for n, t in out.items()}


def _hand_to_hf(sd: dict, cfg: dict) -> dict:
    """The inverse of :func:`_hand_to_megatron`."""
    heads, groups = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg["hidden_size"] // heads
    out = {"model.embed_tokens.weight": sd["embedding.word_embeddings.weight"],
           "model.norm.weight": sd["decoder.final_layernorm.weight"], "lm_head.weight": sd["output_layer.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p, m = f"model.layers.{i}.", f"decoder.layers.{i}."
        qkv = sd[m + "self_attention.linear_qkv.weight"].reshape(groups, (heads // groups + 2) * hd, -1)
        q, k, v = qkv.split([heads // groups * hd, hd, hd], dim=1)
        out[p + "self_attn.q_proj.weight"] = q.reshape(-1, qkv.shape[-1])
        out[p + "self_attn.k_proj.weight"] = k.reshape(-1, qkv.shape[-1])
        out[p + "self_attn.v_proj.weight"] = v.reshape(-1, qkv.shape[-1])
        out[p + "self_attn.o_proj.weight"] = sd[m + "self_attention.linear_proj.weight"]
        gate, up = sd[m + "mlp.linear_fc1.weight"].chunk(2)
        out[p + "mlp.gate_proj.weight"], out[p + "mlp.up_proj.weight"] = gate, up
        out[p + "mlp.down_proj.weight"] = sd[m + "mlp.linear_fc2.weight"]
        out[p + "input_layernorm.weight"] = sd[m + "input_layernorm.weight"]
        out[p + "post_attention_layernorm.weight"] = sd[m + "pre_mlp_layernorm.weight"]
    return {n: t.contiguous() for n, t in out.items()}


def run_phase(phase: str, work: Path, out: Path) -> dict[str, float]:
    """Run one phase in this process (imports first, outside the measurement)."""
    import torch  # noqa: F401
    from safetensors.torch import load_file, save_file

    hf = work / "hf"
    cfg = json.loads((hf / "config.json").read_text())
    if phase == "floor":
        return _measure(lambda: save_file(load_file(str(hf / "model.safetensors")), str(out / "model.safetensors"),
                                          metadata={"format": "pt"}))
    if phase.startswith(("convert", "export")):
        import bridge.models  # noqa: F401  (the family registry's imports, paid once per process)
        from bridge.streaming import convert_checkpoint, export_checkpoint

        if phase.startswith("convert"):
            tp, pp = (2, 2) if "tp2pp2" in phase else (1, 1)
            durable = phase.endswith("fsync")
            return _measure(lambda: convert_checkpoint(hf, out / "m", tp=tp, pp=pp, progress=False, durable=durable))
        src = work / ("m_tp2pp2" if "tp2pp2" in phase else "m_tp1")
        return _measure(lambda: export_checkpoint(src, out / "hf", progress=False, durable=False))
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if phase == "hf_import":
        def hf_import() -> None:
            model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.bfloat16)
            save_file(_hand_to_megatron(model.state_dict(), cfg), str(out / "tp00_pp00.safetensors"),
                      metadata={"format": "pt"})
        return _measure(hf_import)

    def hf_export() -> None:
        state = _hand_to_hf(load_file(str(work / "m_tp1" / "tp00_pp00.safetensors")), cfg)
        with torch.device("meta"):
            model = LlamaForCausalLM(LlamaConfig.from_pretrained(hf))
        model.load_state_dict(state, assign=True, strict=False)
        model.save_pretrained(out / "hf")
    return _measure(hf_export)


# -- orchestration -----------------------------------------------------------------------------------

def make_checkpoint(work: Path, num_layers: int) -> int:
    """Write the random bf16 Llama checkpoint (once per ``work``) and return its tensor bytes."""
    hf = work / "hf"
    if not (hf / "model.safetensors").is_file():
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        torch.set_default_dtype(torch.bfloat16)
        shape = {**SHAPE, "num_hidden_layers": num_layers}
        model = LlamaForCausalLM(LlamaConfig(**shape, architectures=["LlamaForCausalLM"]))
        torch.set_default_dtype(torch.float32)
        model.save_pretrained(hf)
        del model
    from bridge.checkpoint.reader import HFCheckpointReader

    return HFCheckpointReader(hf).total_size


def _wait_for_quiet(max_load: float, patience: float) -> float:
    """Wait (up to ``patience`` s) until the 1-minute load average is below ``max_load``; return it."""
    deadline = time.monotonic() + patience
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def _inputs(phase: str, work: Path) -> list[Path]:
    if phase.startswith("export"):
        folder = work / ("m_tp2pp2" if "tp2pp2" in phase else "m_tp1")
    else:
        folder = work / ("m_tp1" if phase == "hf_export" else "hf")
    return sorted(folder.glob("*.safetensors"))


def _warm(paths: list[Path]) -> None:
    """Read the phase's inputs once, so that it reads from the page cache (warm numbers)."""
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.read(64 * 2**20):
                pass


def _spawn(phase: str, work: Path, max_load: float, patience: float) -> dict[str, float]:
    out = work / f"out-{phase}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    _warm(_inputs(phase, work))
    os.sync()
    load = _wait_for_quiet(max_load, patience)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--phase", phase, "--work", str(work)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode:
        raise SystemExit(f"phase {phase} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**result, "process_wall": wall, "load": load}


def _machine() -> dict[str, str]:
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return {"cpu": cpu, "cores": str(os.cpu_count()), "mem_gib": f"{int(mem) / 2**20:.0f}",
            "kernel": platform.release(), "python": platform.python_version()}


def _prepare(work: Path) -> None:
    """The layouts the export phases read (written once, by the code under test)."""
    from bridge.streaming import convert_checkpoint

    for name, tp, pp in (("m_tp1", 1, 1), ("m_tp2pp2", 2, 2)):
        if not (work / name / "layout.json").is_file():
            convert_checkpoint(work / "hf", work / name, tp=tp, pp=pp, progress=False, overwrite=True)


def summarise(runs: dict[str, list[dict[str, float]]], size: int, reps_dropped: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for phase, results in runs.items():
        warm = results[reps_dropped:] or results
        secs = [r["seconds"] for r in warm]
        cpus = [r["cpu_seconds"] for r in warm]
        out[phase] = {
            "cpu_median": statistics.median(cpus), "cpu_min": min(cpus), "cpu_max": max(cpus),
            "seconds_median": statistics.median(secs), "seconds_min": min(secs), "seconds_max": max(secs),
            "gb_per_s": size / statistics.median(secs) / 1e9,
            "peak_extra_gb": max(r["peak_extra"] for r in warm) / 1e9,
            "peak_extra_fraction": max(r["peak_extra"] for r in warm) / size,
            "process_wall_median": statistics.median(r["process_wall"] for r in warm),
            "runs": results,
        }
    return out


def markdown(report: dict) -> str:
    """The results table of ``benchmarks/RESULTS.md``."""
    size, phases = report["checkpoint_bytes"], report["phases"]
    floor = phases.get("floor")
    lines = ["| phase | wall s, median [min-max] | CPU s, median | GB/s | peak RSS above baseline | vs floor (wall, CPU) |",
             "|---|---|---|---|---|---|"]
    for name, s in phases.items():
        ratio = (f"{s['seconds_median'] / floor['seconds_median']:.2f}x, {s['cpu_median'] / floor['cpu_median']:.2f}x"
                 if floor else "")
        lines.append(f"| `{name}` | {s['seconds_median']:.2f} [{s['seconds_min']:.2f}-{s['seconds_max']:.2f}] | "
                     f"{s['cpu_median']:.2f} | {s['gb_per_s']:.2f} | {s['peak_extra_gb']:.2f} GB "
                     f"({100 * s['peak_extra_gb'] * 1e9 / size:.0f}%) | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/convert-bench"))
    parser.add_argument("--reps", type=int, default=3, help="runs per phase; the first warms the page cache")
    parser.add_argument("--phases", nargs="*", default=list(PHASES), choices=PHASES)
    parser.add_argument("--num-layers", type=int, default=SHAPE["num_hidden_layers"],
                        help="decoder layers of a new checkpoint (22: 1.1B parameters)")
    parser.add_argument("--json", type=Path, default=None, help="write every run and the summary here")
    parser.add_argument("--max-load", type=float, default=2.5,
                        help="before each phase, wait for the 1-minute load average to drop below this")
    parser.add_argument("--patience", type=float, default=120.0, help="longest wait for --max-load, seconds")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.work, args.work / f"out-{args.phase}")))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    size = make_checkpoint(args.work, args.num_layers)
    _prepare(args.work)
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in args.phases}
    load_before = os.getloadavg()
    for rep in range(args.reps):
        shift = rep % len(args.phases)  # rotate the order, so no phase always follows the same one
        for phase in args.phases[shift:] + args.phases[:shift]:
            runs[phase].append(_spawn(phase, args.work, args.max_load, args.patience))
            r = runs[phase][-1]
            print(f"rep {rep} {phase:18s} {r['seconds']:7.2f} s  cpu {r['cpu_seconds']:5.2f} s  peak "
                  f"+{r['peak_extra'] / 1e9:5.2f} GB  (process {r['process_wall']:.1f} s, load {r['load']:.1f})",
                  flush=True)
    summary = summarise(runs, size, reps_dropped=1 if args.reps > 1 else 0)
    shape = json.loads((args.work / "hf" / "config.json").read_text())
    report = {"checkpoint_bytes": size, "num_hidden_layers": shape["num_hidden_layers"],
              "load_before": load_before, "load_after": os.getloadavg(), "machine": _machine(), "phases": summary}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    floor = summary.get("floor", {})
    for phase, s in summary.items():
        ratio = (f"{s['seconds_median'] / floor['seconds_median']:5.2f}x floor wall, "
                 f"{s['cpu_median'] / floor['cpu_median']:5.2f}x floor cpu") if floor else ""
        print(f"{phase:18s} median {s['seconds_median']:6.2f} s [{s['seconds_min']:.2f}-{s['seconds_max']:.2f}] "
              f"cpu {s['cpu_median']:5.2f} s  {s['gb_per_s']:5.2f} GB/s  peak +{s['peak_extra_gb']:.2f} GB "
              f"({100 * s['peak_extra_fraction']:.0f}%)  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
