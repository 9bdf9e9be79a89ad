"""The Megatron-LM argument table: command-line flag -> Bridge config field -> description.

Generated from the sources of the installed megatron-core, parsed with :mod:`ast` (nothing of
MCore is imported): every field of ``ModelParallelConfig`` and ``TransformerConfig`` with its
type, default, docstring (or the comment above it) and ``argparse_meta`` metadata. The flag is
the one Megatron-LM's dataclass-driven parser derives: ``--`` + the field name with ``_`` -> ``-``;
a ``bool`` field that defaults to ``True`` becomes ``--no-<name>`` / ``--disable-<name>``
(``store_false``); ``argparse_meta["arg_names"]`` overrides both. Fields whose type cannot be
parsed from a string (callables, dtypes, unions, objects) have no flag. The Bridge's own
training, optimizer and checkpoint fields add their Megatron-LM flags from their metadata.

``scripts/gen_args_table.py`` writes ``docs/megatron-lm-to-bridge.md``; a test checks that the
committed file equals :func:`render_table` of the installed sources.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigField",
    "bridge_field",
    "cli_flags",
    "mcore_root",
    "mcore_version",
    "parse_config_class",
    "render_table",
]

_PRIMITIVES = frozenset({"int", "float", "str", "bool"})
_OPTIONAL = re.compile(r"^Optional\[(?P<inner>.+)\]$")
_LIST = re.compile(r"^(?:list|List)\[(?P<inner>[A-Za-z_]+)\]$")
_MAX_DESCRIPTION = 300


@dataclass(frozen=True)
class ConfigField:
    """One dataclass field as declared in the source."""

    name: str
    type: str
    default: str
    description: str
    argparse_meta: dict[str, Any]
    declared_in: str


def mcore_root() -> Path:
    """The installed ``megatron/core`` directory (found without importing ``megatron.core``)."""
    spec = importlib.util.find_spec("megatron")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("megatron-core is not installed: no 'megatron' package on sys.path")
    for location in spec.submodule_search_locations:
        root = Path(location) / "core"
        if (root / "package_info.py").is_file():
            return root
    raise FileNotFoundError(f"no megatron/core/package_info.py under {list(spec.submodule_search_locations)}")


def mcore_version(root: Path) -> str:
    """``MAJOR.MINOR.PATCH[PRE_RELEASE]`` read from ``package_info.py`` with ast."""
    values: dict[str, Any] = {}
    for node in ast.parse((root / "package_info.py").read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return f"{values['MAJOR']}.{values['MINOR']}.{values['PATCH']}{values.get('PRE_RELEASE', '')}"


# -- parsing ---------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split())


def _comment_above(lines: list[str], lineno: int) -> str:
    """The ``#`` comment lines directly above line ``lineno`` (1-based), banners excluded."""
    out: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        text = lines[i].strip().lstrip("#").strip()
        if text and not set(text) <= {"#", "-", "="}:
            out.append(text)
        i -= 1
    return " ".join(reversed(out))


def _literal(node: ast.AST) -> Any:
    """A literal value, or the source text of anything else (e.g. ``str`` in ``{"type": str}``)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _is_init_false(value: ast.AST | None) -> bool:
    return isinstance(value, ast.Call) and any(
        k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False for k in value.keywords)


def _field_call(value: ast.AST | None) -> tuple[str, dict[str, Any]]:
    """``(default source, argparse_meta)`` of a field's right-hand side."""
    if value is None:
        return "", {}
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("field", "dataclasses.field"):
        kw = {k.arg: k.value for k in value.keywords if k.arg}
        if "default" in kw:
            default = ast.unparse(kw["default"])
        elif "default_factory" in kw:
            default = f"{ast.unparse(kw['default_factory'])}()"
        else:
            default = ""
        meta: dict[str, Any] = {}
        if isinstance(kw.get("metadata"), ast.Dict):
            for k, v in zip(kw["metadata"].keys, kw["metadata"].values):
                if isinstance(k, ast.Constant) and k.value == "argparse_meta" and isinstance(v, ast.Dict):
                    meta = {ast.literal_eval(mk): _literal(mv) for mk, mv in zip(v.keys, v.values) if mk is not None}
        return default, meta
    return ast.unparse(value), {}


def parse_config_class(path: Path, class_name: str) -> list[ConfigField]:
    """The init fields ``class_name`` declares in ``path`` (its own, in order; ClassVar, InitVar and
    ``field(init=False)`` skipped, as the argument parser skips them)."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    if cls is None:
        raise LookupError(f"expected class {class_name} in {path}, found none")
    out: list[ConfigField] = []
    body = cls.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        annotation = ast.unparse(node.annotation)
        if annotation.split("[")[0].rsplit(".", 1)[-1] in ("ClassVar", "InitVar") or _is_init_false(node.value):
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            description = _clean(nxt.value.value)
        else:
            description = _comment_above(lines, node.lineno)
        default, meta = _field_call(node.value)
        out.append(ConfigField(node.target.id, annotation, default, description, meta, class_name))
    return out


def _enum_names(path: Path) -> frozenset[str]:
    """Names imported from a module called ``...enums`` (argparse takes them by member name)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("enums"):
            names.update(a.asname or a.name for a in node.names)
    return frozenset(names)


# -- flags -----------------------------------------------------------------------------------------

def _strip_optional(type_text: str) -> str:
    text = type_text.replace(" ", "")
    match = _OPTIONAL.match(text)
    if match:
        return match.group("inner")
    parts = [p for p in text.split("|") if p != "None"]
    return "|".join(parts)


def _cli_type(type_text: str, enums: frozenset[str]) -> bool:
    inner = _strip_optional(type_text)
    if inner in _PRIMITIVES or inner in enums or inner.startswith("Literal["):
        return True
    match = _LIST.match(inner)
    return bool(match and (match.group("inner") in _PRIMITIVES or match.group("inner") in enums))


def _flag(name: str, prefix: str | None = None) -> str:
    return "--" + (f"{prefix}_{name}" if prefix else name).replace("_", "-")


def cli_flags(f: ConfigField, enums: frozenset[str] = frozenset()) -> list[str]:
    """The Megatron-LM flags of a field (see the module docstring); ``[]`` when it has none."""
    names = f.argparse_meta.get("arg_names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if not _cli_type(f.type, enums) and "type" not in f.argparse_meta:
        return []
    if _strip_optional(f.type) == "bool" and f.default == "True":
        return [_flag(f.name, "no"), _flag(f.name, "disable")]
    return [_flag(f.name)]


def bridge_field(name: str) -> str:
    """Where a ``ModelParallelConfig``/``TransformerConfig`` field is set in a ``ConfigContainer``."""
    from bridge.config.sections import ParallelismConfig

    if name in {f.name for f in fields(ParallelismConfig)}:
        return f"parallelism.{name}"
    return f"model.{name}"


# -- rendering -------------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else ""


def _short(text: str) -> str:
    if len(text) <= _MAX_DESCRIPTION:
        return text
    cut = text[:_MAX_DESCRIPTION].rsplit(" ", 1)[0]
    return cut + " …"


def _mcore_rows(cfgs: list[ConfigField], enums: frozenset[str]) -> list[str]:
    rows = ["| Megatron-LM argument | Bridge config field | Type | Default | Description |",
            "|---|---|---|---|---|"]
    for f in cfgs:
        flags = cli_flags(f, enums)
        flag_text = ", ".join(_code(x) for x in flags) if flags else "— (not a command-line argument)"
        rows.append(f"| {flag_text} | {_code(bridge_field(f.name))} | {_code(f.type)} | {_code(f.default)} "
                    f"| {_cell(_short(f.description))} |")
    return rows


def _bridge_rows(optimizer_fields: frozenset[str]) -> list[str]:
    from bridge.config.container import SECTIONS

    path = Path(__file__).with_name("sections.py")
    rows = ["| Megatron-LM argument | Bridge config field | MCore field | Description |", "|---|---|---|---|"]
    for section, cls in SECTIONS.items():
        if section == "parallelism":
            continue  # listed with ModelParallelConfig below
        docs = {f.name: f.description for f in parse_config_class(path, cls.__name__)}
        for f in fields(cls):
            mcore = f"OptimizerConfig.{f.name}" if section == "optimizer" and f.name in optimizer_fields else ""
            rows.append(f"| {_code(f.metadata.get('megatron_lm', ''))} | {_code(f'{section}.{f.name}')} "
                        f"| {_code(mcore)} | {_cell(docs.get(f.name, ''))} |")
    return rows


def render_table(root: Path | None = None) -> str:
    """The whole Markdown document for the megatron-core sources under ``root`` (default: installed)."""
    root = root or mcore_root()
    mpc_path = root / "model_parallel_config.py"
    tc_path = root / "transformer" / "transformer_config.py"
    opt_path = root / "optimizer" / "optimizer_config.py"
    mpc = parse_config_class(mpc_path, "ModelParallelConfig")
    tc = parse_config_class(tc_path, "TransformerConfig")
    redeclared = {f.name for f in tc}
    mpc = [f for f in mpc if f.name not in redeclared]
    optimizer_fields = frozenset(f.name for f in parse_config_class(opt_path, "OptimizerConfig"))
    version = mcore_version(root)
    lines = [
        "# Megatron-LM arguments -> Bridge configuration",
        "",
        f"<!-- Generated by scripts/gen_args_table.py from megatron-core {version}; do not edit by hand. -->",
        "",
        f"Generated from the sources of megatron-core **{version}** (`megatron/core/model_parallel_config.py`, "
        "`megatron/core/transformer/transformer_config.py`, parsed with `ast`). "
        "`tests/bridge/config/test_argtable.py` fails when this file is not what the generator writes "
        "for the installed release: regenerate with `.venv/bin/python scripts/gen_args_table.py`.",
        "",
        "How to read it:",
        "",
        "* **Megatron-LM argument**: the flag Megatron-LM's dataclass-driven parser derives from the field: "
        "`--` + the name with `_` replaced by `-`; a `bool` that defaults to `True` becomes "
        "`--no-<name>` / `--disable-<name>`; the field's `argparse_meta` `arg_names` override both. "
        "Fields whose type cannot be parsed from a string (callables, dtypes, unions, objects) have none.",
        "* **Bridge config field**: where the same setting lives in a `bridge.config.ConfigContainer`. "
        "`model.<field>` is set through `ModelConfig(overrides={...})`, "
        "`ConfigContainer.with_overrides({\"model.<field>\": ...})` or a recipe's keyword arguments; "
        "any field of the installed `TransformerConfig` is accepted and reaches the built model unchanged.",
        "* **Default**: MCore's default. The Bridge sets architecture fields from the HF config.",
        "",
        "## Training, optimizer and checkpoint",
        "",
        "Megatron-LM training arguments that the Bridge keeps in its own sections (`bridge/config/sections.py`).",
        "",
        *_bridge_rows(optimizer_fields),
        "",
        f"## Model parallelism: `ModelParallelConfig` ({len(mpc)} fields)",
        "",
        *_mcore_rows(mpc, _enum_names(mpc_path)),
        "",
        f"## Transformer: `TransformerConfig` ({len(tc)} fields)",
        "",
        *_mcore_rows(tc, _enum_names(tc_path)),
        "",
    ]
    return "\n".join(lines)
