"""The dynamic probe tests: what each one runs, which matrix rows it gives evidence for, its time budget.

Cheap to import: family names come from the folders of ``bridge/models`` (a family is a sub-package
with a ``bridge.py``, as in :mod:`bridge.models`) found without importing the bridge, and recipe rows
from the flagship configs' families (``bridge.config.flagships.FLAGSHIP_FAMILIES``).
``python -m harness.probes.payload <name>`` runs a test inside a revision's environment (see
:mod:`harness.probes.payload`).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from harness.features import FEATURES
from harness.requirements import family_row_name

__all__ = ["TESTS", "ProbeTest", "family_names", "test_by_name", "test_names"]


@dataclass(frozen=True)
class ProbeTest:
    """One probe test; ``rows`` are the matrix rows (families, features) its verdicts are about."""

    name: str
    description: str
    rows: tuple[str, ...]
    timeout_s: float
    devices: tuple[str, ...] = ("cpu", "cuda")
    multiprocess: bool = False
    default: bool = True
    """False: run only when named (``--tests``); the cross-version checkpoint grid is hours of CPU."""

    @property
    def family(self) -> str | None:
        """The family of a ``family:<name>`` test, else None."""
        kind, sep, rest = self.name.partition(":")
        return rest if sep and kind == "family" else None


def family_names() -> tuple[str, ...]:
    """Every bridge family (``bridge/models/<family>/bridge.py``), sorted, without importing them."""
    spec = importlib.util.find_spec("bridge")
    assert spec is not None and spec.submodule_search_locations, "the bridge package must be importable"
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return tuple(sorted(p.parent.name for p in models.glob("*/bridge.py") if not p.parent.name.startswith("_")))


def _recipe_families() -> tuple[str, ...]:
    """Families that have a recipe: each flagship config's family (``FLAGSHIP_FAMILIES``) that is a bridge family."""
    from bridge.config.flagships import FLAGSHIP_FAMILIES

    return tuple(sorted(set(FLAGSHIP_FAMILIES.values()) & set(family_names())))


@functools.lru_cache(maxsize=1)
def _tests() -> tuple[ProbeTest, ...]:
    families = family_names()
    tests = [
        ProbeTest("import", "import megatron.core, TransformerConfig and GPTModel; record the version and the "
                  "warnings MCore emits", ("transformer_config", "gpt_model"), timeout_s=120.0),
    ]
    tests += [
        ProbeTest(f"family:{f}", f"tiny {f} checkpoints (the bridge's representative configs): HF -> GPTModel, "
                  "logits vs HF, export back bit-exact", (f,), timeout_s=300.0)
        for f in families
    ]
    tests += [
        ProbeTest(f"hybrid:{f}", f"the family:{f} round trip on MCore's HybridModel (provider model_class='hybrid', "
                  "megatron-core 0.18+): logits vs HF, export back bit-exact", (family_row_name(f, "hybrid"),),
                  timeout_s=300.0)
        for f in families
    ]
    tests += [
        ProbeTest("features", "each feature's static checks, evaluated on the imported MCore "
                  "(dataclass fields, classes, modules imported, GPTModel parameters, layer-spec functions)",
                  tuple(f.name for f in FEATURES), timeout_s=180.0),
        ProbeTest("recipes", "every pretraining recipe builds its ConfigContainer, TransformerConfig and "
                  "OptimizerConfig (no model)", _recipe_families(), timeout_s=180.0),
        ProbeTest("properties", "Hypothesis: random small Llama architectures, HF -> GPTModel -> logits "
                  "parity and a bit-exact export", ("llama",), timeout_s=420.0),
        ProbeTest("tp2", "two processes, tensor parallel 2 (gloo on CPU, NCCL on 2 GPUs): logits vs HF, "
                  "export bit-exact", ("llama",), timeout_s=300.0, multiprocess=True),
        ProbeTest("pp2", "two processes, pipeline parallel 2 with tied embeddings: logits vs HF, export "
                  "bit-exact", ("llama",), timeout_s=300.0, multiprocess=True),
    ]
    tests += [  # rows are per writer (harness.probes.ckpt_grid.row_name), folded into their own table
        ProbeTest(f"ckpt_compat:{f}", f"tiny {f} torch_dist checkpoints written by each grid release, loaded by "
                  "this one (bridge and plain MCore; GPT -> Hybrid interop on 0.19+): logits vs HF",
                  (), timeout_s=3600.0, devices=("cpu",), default=False)
        for f in families
    ]
    return tuple(tests)


def test_names() -> tuple[str, ...]:
    return tuple(t.name for t in _tests())


def test_by_name(name: str) -> ProbeTest:
    """The test called ``name``; KeyError naming the known tests otherwise."""
    for test in _tests():
        if test.name == name:
            return test
    raise KeyError(f"unknown probe test {name!r}; known: {', '.join(test_names())}")


def __getattr__(name: str) -> object:
    if name == "TESTS":  # computed on first use (reads the bridge's folders and flagship table)
        return _tests()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
