"""The HybridModel layout grid: every family's tiny checkpoint at TP x PP over gloo, logits vs HF, export bit-exact.

Two roles in one file:

* worker, under ``torchrun`` (one launch per release and layout runs every family, so MCore is imported once per
  rank, not once per family)::

      OMP_NUM_THREADS=1 torchrun --nproc-per-node=4 scripts/layout_grid.py worker --tp 2 --pp 2 \
          --cases cases.json --out rows.json --work DIR [--model-class hybrid]

  ``cases.json`` lists ``{"family", "hf", "trust_remote_code", "num_layers"}``. Each case goes through
  :func:`bridge.parity.run_layout_parity` (uneven stages where PP does not divide the layers). A case the bridge
  refuses (a :class:`bridge.errors.BridgeError` on every rank, e.g. TP larger than the KV heads) becomes a row
  with ``refused`` set to the reason; any other error is a row with ``error`` set. Rank 0 writes the rows.
* driver, in the default venv: ``python scripts/layout_grid.py run --releases 0.19.2,0.18.2 --layouts 2x2,2x1,1x2
  --out matrices/hybrid_grid.json`` prepares each release (:func:`harness.probes.envs.prepare_revision`), writes
  each family's first tiny variant once, launches one worker per release and layout (``nice``d when asked) and
  merges the rows into the JSON file; ``render`` turns that file into ``matrices/hybrid_grid.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (torchrun), the repository importable
    sys.path.insert(0, str(ROOT))


def first_stage_layers(num_layers: int, pp: int) -> int | None:
    """The first stage's layers where PP does not divide them (the remainder goes first), else None (even)."""
    return num_layers // pp + num_layers % pp if num_layers % pp else None


# --- worker (under torchrun) ---------------------------------------------------------------------------

def _run_case(case: dict, args: argparse.Namespace) -> dict:
    import torch.distributed as dist

    from bridge.errors import BridgeError
    from bridge.parity import run_layout_parity
    from bridge.runtime import reset_model_parallel

    t0 = time.perf_counter()
    try:
        result = run_layout_parity(case["hf"], Path(args.work) / f"{case['family']}-tp{args.tp}-pp{args.pp}",
                                   tp=args.tp, pp=args.pp, model_class=args.model_class,
                                   trust_remote_code=True if case["trust_remote_code"] else None,
                                   first_stage_layers=first_stage_layers(case["num_layers"], args.pp * (args.vpp or 1)),
                                   vpp=args.vpp)
        outcome: dict = {"result": result}
    except BridgeError as e:
        outcome = {"refused": f"{type(e).__name__}: {e}"}
    except Exception as e:  # noqa: BLE001 -- recorded as the case's error, the grid goes on
        outcome = {"error": f"{type(e).__name__}: {e}"}
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, outcome)
    reset_model_parallel()
    row = {"family": case["family"], "tp": args.tp, "pp": args.pp, **({"vpp": args.vpp} if args.vpp else {}),
           "seconds": round(time.perf_counter() - t0, 1)}
    for key in ("error", "refused"):
        found = sorted({o[key] for o in gathered if key in o})
        if found:
            return {**row, key: " | ".join(found)}
    results = [o["result"] for o in gathered]
    stages = [r.agreement for r in results if r.agreement is not None]
    comparison = next(r.comparison for r in results if r.comparison is not None)
    return {**row, "model_class": results[0].model_class,
            "max_abs_diff": max(a.max_abs_diff for a in stages),
            "cosine_similarity": min(a.cosine_similarity for a in stages),
            "export_bit_exact": comparison.bit_exact,
            "export_mismatches": [*comparison.missing, *comparison.unexpected, *comparison.different][:10]}


def worker(args: argparse.Namespace) -> int:
    import megatron.core
    import torch.distributed as dist

    dist.init_process_group(backend="gloo", timeout=datetime.timedelta(seconds=args.timeout))
    rows = [_run_case(case, args) for case in json.loads(Path(args.cases).read_text())]
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps({"megatron_core": megatron.core.__version__, "rows": rows}, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


# --- driver (default venv) -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_layers(variant: Any, num_layers: int) -> Any:
    """``variant`` with ``num_layers`` decoder blocks (a virtual pipeline needs at least PP x VPP)."""
    import copy
    import dataclasses

    config = copy.deepcopy(variant.config)
    for name in ("num_hidden_layers", "num_layers"):  # tiny_gpt's custom config calls it num_layers
        if hasattr(config, name):
            setattr(config, name, num_layers)
    if isinstance(getattr(config, "layer_types", None), list):  # per-block lists (windows) follow the pattern
        config.layer_types = [config.layer_types[i % len(config.layer_types)] for i in range(num_layers)]
    return dataclasses.replace(variant, config=config)


def write_cases(families: list[str], work: Path, *, num_layers: int | None = None) -> Path:
    """Each family's first tiny variant (with ``num_layers`` blocks, if given) written once under ``work``;
    the worker's ``cases.json``."""
    from bridge.auto_bridge import AutoBridge
    from harness.probes.tiny_models import family_variants, write_checkpoint

    cases = []
    for family in families:
        variant = family_variants(family)[0]
        if num_layers is not None:
            variant = _with_layers(variant, num_layers)
        path = work / "hf" / family
        if not (path / "config.json").exists():
            write_checkpoint(variant, path, seed=0)
        trust = bool(variant.trust_remote_code)
        provider = AutoBridge.from_hf_pretrained(path, trust_remote_code=trust or None).to_megatron_provider(
            load_weights=False)  # the bridge's reading of the config (families name layers and KV heads differently)
        cases.append({"family": family, "variant": variant.name, "hf": str(path), "trust_remote_code": trust,
                      "num_layers": provider.num_layers,
                      "kv_heads": provider.num_query_groups or provider.num_attention_heads})
    out = work / "cases.json"
    out.write_text(json.dumps(cases, indent=1))
    return out


def launch(pythonpath: tuple[str, ...], cases: Path, work: Path, *, tp: int, pp: int, nice: int = 0,
           model_class: str = "hybrid", timeout: int = 3600, vpp: int | None = None) -> dict:
    """One worker launch (every case of ``cases`` at TP x PP, x VPP chunks per rank) in the release of
    ``pythonpath``; its report."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"rows-tp{tp}-pp{pp}{f'-vpp{vpp}' if vpp else ''}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*pythonpath, str(ROOT)]), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "TQDM_DISABLE": "1"}
    cmd = [*(["nice", "-n", str(nice)] if nice else []), sys.executable, "-m", "torch.distributed.run",
           f"--nproc-per-node={tp * pp}", f"--master-port={_free_port()}", "--master-addr=127.0.0.1",
           str(Path(__file__).resolve()), "worker", "--tp", str(tp), "--pp", str(pp), "--cases", str(cases),
           "--out", str(out), "--work", str(work / "export"), "--model-class", model_class,
           *(["--vpp", str(vpp)] if vpp else [])]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"layout grid worker TP={tp} PP={pp} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def _key(row: dict) -> tuple:
    return row["release"], row["family"], row["tp"], row["pp"], row.get("vpp") or 1


def run(args: argparse.Namespace) -> int:
    from harness.probes.catalog import family_names
    from harness.probes.envs import prepare_revision

    families = args.families.split(",") if args.families else list(family_names())
    work = Path(args.work)
    cases = write_cases(families, work, num_layers=args.num_layers)
    kv = {c["family"]: c["kv_heads"] for c in json.loads(cases.read_text())}
    out = Path(args.out)
    grid = json.loads(out.read_text()) if out.exists() else {"rows": []}
    for release in args.releases.split(","):
        prepared = prepare_revision(f"pypi:{release}")
        if prepared.error:
            raise SystemExit(f"pypi:{release} could not be prepared: {prepared.error}")
        for layout in args.layouts.split(","):
            tp, pp = (int(x) for x in layout.split("x"))
            t0 = time.perf_counter()
            report = launch(tuple(prepared.pythonpath), cases, work / release, tp=tp, pp=pp, nice=args.nice,
                            vpp=args.vpp, model_class=args.model_class)
            print(f"{release} TP={tp} PP={pp}: {len(report['rows'])} families in {time.perf_counter() - t0:.0f} s",
                  flush=True)
            rows = [{**r, "release": report["megatron_core"], "kv_heads": kv[r["family"]]} for r in report["rows"]]
            done = {_key(r) for r in rows}
            grid["rows"] = sorted([r for r in grid["rows"] if _key(r) not in done] + rows, key=_key)
            out.write_text(json.dumps(grid, indent=1))
    return 0


def _cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    if "refused" in row:
        return f"refused ({row['refused'].split(':')[0]})"
    if "error" in row:
        return f"**error** ({row['error'][:60]})"
    exact = "exact" if row["export_bit_exact"] else "**export differs**"
    return f"{row['max_abs_diff']:.2g}, {exact}"


def render(grid: dict) -> str:
    """The grid as Markdown: one row per family, one column per release and layout, then the refusals' reasons."""
    rows = {_key(r): r for r in grid["rows"]}
    releases = sorted({r["release"] for r in grid["rows"]}, reverse=True)
    layouts = sorted({(r["tp"], r["pp"], r.get("vpp") or 1) for r in grid["rows"]}, key=lambda t: (t[0] * t[1], t))
    families = sorted({r["family"] for r in grid["rows"]})
    columns = [(rel, *layout) for rel in releases for layout in layouts]
    out = ["| family | " + " | ".join(f"{rel} TP{tp}xPP{pp}{f'xVPP{v}' if v > 1 else ''}" for rel, tp, pp, v in columns)
           + " |", "|---|" + "---|" * len(columns)]
    for family in families:
        out.append(f"| {family} | " + " | ".join(_cell(rows.get((rel, family, tp, pp, v))) for rel, tp, pp, v in columns)
                   + " |")
    passed = [r for r in grid["rows"] if "max_abs_diff" in r]
    out += ["", f"{len(passed)} cells ran: max abs diff {max(r['max_abs_diff'] for r in passed):.2g} (bound 1e-5), "
            f"{sum(r['export_bit_exact'] for r in passed)} of {len(passed)} exports bit-exact.", "",
            "Refusals and errors (the bridge's words):", ""]
    seen = set()
    for r in grid["rows"]:
        text = r.get("refused") or r.get("error")
        if text and (r["family"], text) not in seen:
            seen.add((r["family"], text))
            kind = "refused" if "refused" in r else "error"
            out.append(f"- {r['family']} ({kind}, TP={r['tp']}): {text}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--tp", type=int, required=True)
    w.add_argument("--pp", type=int, required=True)
    w.add_argument("--cases", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--work", required=True)
    w.add_argument("--model-class", default="hybrid")
    w.add_argument("--vpp", type=int, default=None, help="virtual pipeline size (chunks per rank)")
    w.add_argument("--timeout", type=int, default=600, help="gloo collective timeout, seconds")
    r = sub.add_parser("run")
    r.add_argument("--releases", default="0.19.2,0.18.2")
    r.add_argument("--layouts", default="2x2,2x1,1x2")
    r.add_argument("--families", default="", help="comma-separated (default: every family)")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--nice", type=int, default=10)
    r.add_argument("--vpp", type=int, default=None, help="virtual pipeline size (chunks per rank)")
    r.add_argument("--model-class", default="hybrid", choices=("auto", "gpt", "hybrid"))
    r.add_argument("--num-layers", type=int, default=None, help="decoder blocks of every tiny variant (e.g. 4 for "
                   "PP=2 x VPP=2)")
    m = sub.add_parser("render", help="print the grid JSON as a Markdown table")
    m.add_argument("grid")
    args = ap.parse_args(argv)
    if args.command == "render":
        sys.stdout.write(render(json.loads(Path(args.grid).read_text())))
        return 0
    return worker(args) if args.command == "worker" else run(args)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
