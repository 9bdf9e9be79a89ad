"""The probe payload: runs ONE test inside a revision's environment and writes its verdict as JSON.

    python -m harness.probes.payload <test-name> --out RESULT.json [--device cpu|cuda]

The revision's MCore must come first on ``PYTHONPATH``; the repository root must be importable too.
RESULT.json (written atomically) follows the schema of ``probes_interface.md``: the test's status,
one entry per matrix row, MCore's warnings (deduplicated), versions, device, duration and notes. The exit
status is 0 whenever the test could be judged (passed, failed or skipped); a crash, or MCore failing to
import in any test but ``import``, exits non-zero with the reason on stderr and is judged by the runner.

``--device cpu`` hides CUDA from the process (``CUDA_VISIBLE_DEVICES=""``), so that the bridge's CPU
patches apply (:mod:`bridge.cpu`); ``--device cuda`` needs a GPU and skips the test without one.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

from harness.probes.payload_common import (
    FAILED, PASSED, SKIPPED, MegatronWarnings, Outcome, Row, describe_exception, merge_warnings,
)

__all__ = ["main", "probe_import", "run_test", "warm_up"]

EXIT_JUDGED, EXIT_USAGE, EXIT_NOT_JUDGED = 0, 2, 3

_WARM: MegatronWarnings | None = None
"""What ``import megatron.core`` recorded in a fork server (:func:`warm_up`), before its probes forked."""


def probe_import() -> Outcome:
    """``import``: MCore's config and model classes import (the package itself was imported before)."""
    rows: dict[str, Row] = {}
    for row, module, name in (("transformer_config", "megatron.core.transformer.transformer_config",
                               "TransformerConfig"),
                              ("gpt_model", "megatron.core.models.gpt", "GPTModel")):
        try:
            obj = getattr(importlib.import_module(module), name)
        except Exception as e:  # noqa: BLE001 - a probe reports every failure as data
            rows[row] = Row(FAILED, f"from {module} import {name}: {describe_exception(e)}")
        else:
            rows[row] = Row(PASSED, f"{module}.{name} imports ({obj.__module__})")
    return Outcome(rows)


def _bodies() -> dict[str, Callable[[str], Outcome]]:
    from harness.probes import payload_features, payload_parallel, payload_properties, payload_recipes
    from harness.probes.payload_ckpt import probe_ckpt_compat
    from harness.probes.payload_families import probe_family

    return {
        "import": lambda name: probe_import(),
        "family": lambda name: probe_family(name.partition(":")[2]),
        "hybrid": lambda name: probe_family(name.partition(":")[2], model_class="hybrid", row=name),
        "features": lambda name: payload_features.probe_features(),
        "recipes": lambda name: payload_recipes.probe_recipes(),
        "properties": lambda name: payload_properties.probe_properties(),
        "tp2": lambda name: payload_parallel.probe_layout(tp=2, pp=1),
        "pp2": lambda name: payload_parallel.probe_layout(tp=1, pp=2),
        "ckpt_compat": lambda name: probe_ckpt_compat(name.partition(":")[2]),
    }


def _versions() -> dict[str, str]:
    """Python, torch and transformers of this environment; the MCore that was imported ("" if none was)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = ""
    info = sys.modules.get("megatron.core.package_info")
    out["mcore_version"] = str(getattr(info, "__version__", "")) if info else ""
    return out


def _skipped(rows: tuple[str, ...], why: str) -> Outcome:
    return Outcome({row: Row(SKIPPED, why) for row in rows}, notes=(why,))


def run_test(name: str, device: str) -> tuple[Outcome, list[dict[str, Any]]]:
    """``(outcome, warnings)``; raises :class:`ImportError` when MCore does not import (except in the
    ``import`` test, where that is the verdict). A device the test cannot use skips it before any import."""
    import torch

    from harness.probes.catalog import test_by_name

    test = test_by_name(name)
    if device == "cuda" and not torch.cuda.is_available():
        return _skipped(test.rows, "--device cuda, but CUDA is not available on this machine"), []
    if device not in test.devices:
        return _skipped(test.rows, f"test {name!r} does not run on {device}"), []
    notes: list[str] = []
    with MegatronWarnings(_WARM) as caught:  # a fork server's import warnings count as this probe's
        try:
            import megatron.core  # noqa: F401 - the revision's MCore, first on PYTHONPATH
        except Exception as e:
            if name != "import":
                raise ImportError(f"megatron.core does not import: {describe_exception(e)}") from e
            outcome = Outcome({row: Row(FAILED, f"import megatron.core: {describe_exception(e)}")
                               for row in test.rows})
            return outcome, caught.as_json()
        outcome = _bodies()[name.partition(":")[0]](name)
        if device == "cuda":
            notes.append(f"GPU: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})")
        from bridge import cpu

        if cpu.APPLIED:
            notes.append(f"bridge.cpu patches applied: {', '.join(cpu.APPLIED)}")
    return Outcome(outcome.rows, outcome.notes + tuple(notes)), merge_warnings(caught.as_json(), outcome.warnings)


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _setup(device: str) -> None:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before CUDA is initialised: CPU it is, patches included
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' shard/weight progress bars
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def warm_up(device: str) -> None:
    """Everything :func:`main` does before a test's body, done once by a fork server
    (:mod:`harness.probes.forkserver`) whose forked children then run :func:`main`: the environment and
    logging, the catalog (which imports torch, transformers and the bridge package) and ``import
    megatron.core``, its warnings recorded for every probe forked afterwards. No torch op runs (no
    threads start). Raises whatever the import raises (the server then reports it and the runner
    starts fresh interpreters, which judge the failure as they always have)."""
    global _WARM
    _setup(device)
    from harness.probes.catalog import test_names

    test_names()
    with MegatronWarnings() as caught:
        import megatron.core  # noqa: F401 - the revision's MCore, first on PYTHONPATH
    _WARM = caught


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.probes.payload", description=__doc__.splitlines()[0])
    ap.add_argument("test", help="probe test name (harness.probes.catalog)")
    ap.add_argument("--out", type=Path, required=True, help="where to write RESULT.json")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    from harness.probes.catalog import test_by_name

    try:
        test_by_name(args.test)
    except KeyError as e:
        print(f"payload: {e.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    _setup(args.device)
    try:
        outcome, caught = run_test(args.test, args.device)
    except ImportError as e:
        print(f"payload: {e}", file=sys.stderr)
        return EXIT_NOT_JUDGED
    result = {
        "test": args.test,
        "status": outcome.status,
        "rows": {row: r.to_json() for row, r in outcome.rows.items()},
        "warnings": caught,
        **_versions(),
        "device": args.device,
        "duration_s": round(time.perf_counter() - t0, 3),
        "notes": list(outcome.notes),
    }
    _write_atomically(args.out, result)
    return EXIT_JUDGED


if __name__ == "__main__":
    sys.exit(main())
