"""Families import shared pieces from ``bridge/models/_*.py``, never from a sibling family.

Every module under ``bridge/models`` is parsed (no import needed, so a deferred import inside a
function counts too); an import of ``bridge.models.<other family>`` from a family, or of any family
from a shared module, fails with the offending lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bridge.models

MODELS = Path(bridge.models.__file__).parent
PACKAGES = sorted(p.name for p in MODELS.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def _imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, dotted module)`` of every import in ``source`` (a module of ``package``), relative ones resolved."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # ``from bridge.models import llama`` imports the family too.
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            out.append((node.lineno, base))
    return out


def _families_imported(path: Path, source: str | None = None) -> set[tuple[int, str]]:
    package = ".".join(path.relative_to(MODELS.parent.parent).parts[:-1])
    hits = set()
    for line, module in _imported_modules(path.read_text() if source is None else source, package):
        parts = module.split(".")
        if parts[:2] == ["bridge", "models"] and len(parts) > 2 and parts[2] in PACKAGES:
            hits.add((line, parts[2]))
    return hits


def test_every_family_package_is_seen():
    assert set(bridge.models.FAMILIES) <= set(PACKAGES)
    assert {"llama", "qwen3_moe"} <= set(PACKAGES)


@pytest.mark.parametrize("family", PACKAGES)
def test_a_family_imports_no_sibling_family(family):
    bad = sorted(
        f"{path.relative_to(MODELS.parent.parent)}:{line} imports bridge.models.{other}"
        for path in sorted((MODELS / family).rglob("*.py"))
        for line, other in _families_imported(path)
        if other != family
    )
    assert not bad, (
        "families must not import each other; move the shared piece into bridge/models/_common.py "
        f"or a module beside it (_llama_like.py, _moe.py, _window.py, ...): {bad}"
    )


def test_shared_modules_import_no_family():
    bad = sorted(
        f"{path.name}:{line} imports bridge.models.{family}"
        for path in sorted(MODELS.glob("*.py"))
        if path.name != "__init__.py"
        for line, family in _families_imported(path)
    )
    assert not bad, f"shared modules under bridge/models must not import a family: {bad}"


def test_the_check_sees_sibling_imports():
    """The parser catches absolute, relative, deferred and package-level forms."""
    source = ("from bridge.models.qwen3.provider import x\n"
              "from ..mistral import provider\n"
              "def f():\n    import bridge.models.gemma.bridge\n"
              "from bridge.models import qwen2\n"
              "from bridge.models._common import tiny_decoder\n"
              "from .provider import LlamaModelProvider\n")
    found = sorted(_families_imported(MODELS / "llama" / "bridge.py", source))
    assert found == [(1, "qwen3"), (2, "mistral"), (4, "gemma"), (5, "qwen2"), (7, "llama")]


def test_replace_rows_swaps_rows_in_place_and_refuses_a_row_that_replaces_nothing():
    from bridge.errors import MappingError
    from bridge.mappings import AutoMapping
    from bridge.models._common import replace_rows
    from bridge.models._llama_like import llama_mappings

    table = llama_mappings(tied=False)
    row = AutoMapping("decoder.layers.*.mlp.linear_fc1.weight", "model.layers.*.mlp.gate_up_proj.weight",
                      sharding="gated")
    replaced = replace_rows(table, row)
    assert [m.megatron_param for m in replaced] == [m.megatron_param for m in table]
    assert replaced[[m.megatron_param for m in table].index(row.megatron_param)] is row
    with pytest.raises(MappingError, match="linear_fc3"):
        replace_rows(table, AutoMapping("decoder.layers.*.mlp.linear_fc3.weight", "x.*.w"))


def test_registering_the_families_imports_no_megatron_module():
    """``_mcore_layers`` (MCore subclasses) is imported only while a model is built, never at registration."""
    import subprocess
    import sys

    code = "import sys, bridge.models; print(sorted(m for m in sys.modules if m.split('.')[0] == 'megatron'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=MODELS.parent.parent)
    assert out.stdout.strip() == "[]", out.stdout
