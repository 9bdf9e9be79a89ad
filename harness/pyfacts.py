"""What one Python file declares, read with :mod:`ast` (never imported).

:func:`file_facts` turns source bytes into a JSON-able summary that depends on the bytes
only (so it is cached by git blob id): imports, top-level classes with their dataclass
fields and method signatures, and top-level function signatures. Resolving base classes
across files is :mod:`harness.introspect`'s job.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["FACTS_VERSION", "file_facts"]

FACTS_VERSION = 3
"""Bump when the shape or meaning of :func:`file_facts` output changes (invalidates caches)."""

_CLASSVAR = re.compile(r"^\s*(?:typing\.)?ClassVar\b")
_INITVAR = re.compile(r"^\s*(?:dataclasses\.)?InitVar\b")
_NOTICE_METHODS = ("__init__", "__new__", "__post_init__")
"""Methods whose messages speak for the whole class (a deprecation logged or warned at construction)."""


def _text(node: ast.AST | None) -> str | None:
    return None if node is None else ast.unparse(node)


def _tail_name(node: ast.AST) -> str | None:
    """``ClassVar`` for ``ClassVar``, ``typing.ClassVar`` and ``ClassVar[int]``."""
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _pseudo_field_kind(annotation: ast.AST) -> str | None:
    """``classvar``, ``initvar`` or ``kw_only`` for annotations that are not plain fields."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        if _CLASSVAR.match(annotation.value):
            return "classvar"
        if _INITVAR.match(annotation.value):
            return "initvar"
        return None
    name = _tail_name(annotation)
    return {"ClassVar": "classvar", "InitVar": "initvar", "KW_ONLY": "kw_only"}.get(name or "")


def _is_dataclass_decorator(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        node = node.func
    return _tail_name(node) == "dataclass"


def _is_field_call(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Call) and _tail_name(node.func) == "field"


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression when it is JSON-able, else its source text."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(node)
    try:
        import json

        json.dumps(value)
    except (TypeError, ValueError):
        return ast.unparse(node)
    return value


def _doc_after(body: list[ast.stmt], index: int) -> str | None:
    if index + 1 < len(body):
        nxt = body[index + 1]
        if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            if isinstance(nxt.value.value, str):
                first = nxt.value.value.strip().splitlines()
                return first[0][:200] if first else None
    return None


def _field(stmt: ast.AnnAssign, doc: str | None, kw_only: bool) -> dict[str, Any]:
    assert isinstance(stmt.target, ast.Name)
    out: dict[str, Any] = {
        "name": stmt.target.id,
        "type": _text(stmt.annotation),
        "default": None,
        "default_factory": None,
        "metadata": None,
        "init": True,
        "kw_only": kw_only,
        "required": True,
        "doc": doc,
        "line": stmt.lineno,
    }
    value = stmt.value
    if _is_field_call(value):
        assert isinstance(value, ast.Call)
        for kw in value.keywords:
            if kw.arg == "default":
                out["default"], out["required"] = _text(kw.value), False
            elif kw.arg == "default_factory":
                out["default_factory"], out["required"] = _text(kw.value), False
            elif kw.arg == "metadata":
                out["metadata"] = _literal(kw.value)
            elif kw.arg == "init":
                out["init"] = _literal(kw.value) is not False
            elif kw.arg == "kw_only":
                out["kw_only"] = _literal(kw.value) is True
    elif value is not None:
        out["default"], out["required"] = _text(value), False
    return out


def _params(args: ast.arguments) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = "positional_only" if i < len(args.posonlyargs) else "positional_or_keyword"
        out.append({"name": arg.arg, "kind": kind, "default": _text(default), "annotation": _text(arg.annotation)})
    if args.vararg:
        out.append({"name": args.vararg.arg, "kind": "var_positional", "default": None,
                    "annotation": _text(args.vararg.annotation)})
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append({"name": arg.arg, "kind": "keyword_only", "default": _text(default),
                    "annotation": _text(arg.annotation)})
    if args.kwarg:
        out.append({"name": args.kwarg.arg, "kind": "var_keyword", "default": None,
                    "annotation": _text(args.kwarg.annotation)})
    return out


def _deprecation(node: ast.ClassDef) -> str | None:
    """The notice by which ``node`` announces its own deprecation, or None.

    Two forms, both read from the source: a ``@deprecated(...)`` decorator (PEP 702 / ``typing_extensions``),
    and a string built at construction (in ``__init__`` / ``__new__`` / ``__post_init__``) that says
    "<ClassName> is (or has been) deprecated", e.g. megatron-core 0.19's ``GPTModel IS DEPRECATED. ...``
    logged by ``GPTModel.__init__``. Messages about a parameter ("``inference_params`` is deprecated")
    do not name the class that way and do not count.
    """
    for deco in node.decorator_list:
        if _tail_name(deco.func if isinstance(deco, ast.Call) else deco) == "deprecated":
            args = deco.args if isinstance(deco, ast.Call) else []
            text = args[0].value if args and isinstance(args[0], ast.Constant) else None
            return str(text)[:300] if isinstance(text, str) else f"@{ast.unparse(deco)}"[:300]
    says = re.compile(rf"\b{re.escape(node.name)}\b\W{{0,3}}(?:is|has been)\s+deprecated\b", re.IGNORECASE)
    for stmt in node.body:
        if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) or stmt.name not in _NOTICE_METHODS:
            continue
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and says.search(sub.value):
                return sub.value.strip()[:300]
    return None


def _class(node: ast.ClassDef) -> dict[str, Any]:
    is_dc = any(_is_dataclass_decorator(d) for d in node.decorator_list)
    fields: list[dict[str, Any]] = []
    pseudo: dict[str, list[str]] = {"classvar": [], "initvar": []}
    methods: dict[str, list[dict[str, Any]]] = {}
    kw_only = False
    for i, stmt in enumerate(node.body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            kind = _pseudo_field_kind(stmt.annotation)
            if kind == "kw_only":
                kw_only = True
            elif kind is not None:
                pseudo[kind].append(stmt.target.id)
            else:
                fields.append(_field(stmt, _doc_after(node.body, i), kw_only))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            methods[stmt.name] = _params(stmt.args)
    return {
        "bases": [ast.unparse(b) for b in node.bases],
        "decorators": [ast.unparse(d) for d in node.decorator_list],
        "dataclass": is_dc,
        "fields": fields,
        "class_vars": pseudo["classvar"],
        "init_vars": pseudo["initvar"],
        "methods": methods,
        "deprecation": _deprecation(node),
        "line": node.lineno,
    }


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module statements, descending into top-level ``if``/``try`` blocks (guarded imports)."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            out += _top_level(stmt.body) + _top_level(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            out += _top_level(stmt.body)
            for handler in stmt.handlers:
                out += _top_level(handler.body)
            out += _top_level(stmt.orelse) + _top_level(stmt.finalbody)
        else:
            out.append(stmt)
    return out


def file_facts(data: bytes) -> dict[str, Any]:
    """Summary of a module's top level.

    Raises:
        SyntaxError, ValueError: the bytes are not valid Python.
    """
    tree = ast.parse(data)
    imports: dict[str, list[Any]] = {}
    classes: dict[str, Any] = {}
    functions: dict[str, Any] = {}
    for stmt in _top_level(tree.body):
        if isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                imports[alias.asname or alias.name] = [stmt.level, stmt.module or "", alias.name]
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    imports[alias.asname] = [0, alias.name, None]
                else:
                    head = alias.name.split(".")[0]
                    imports[head] = [0, head, None]
        elif isinstance(stmt, ast.ClassDef):
            classes[stmt.name] = _class(stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[stmt.name] = _params(stmt.args)
    return {"imports": imports, "classes": classes, "functions": functions}
