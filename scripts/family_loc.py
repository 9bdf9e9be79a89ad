"""Lines of code per family (``provider.py`` + ``bridge.py``) and the shared pieces each imports.

Prints the Markdown table of ``docs/adding-a-model.md``. A code line is a line holding any token but
a comment or a docstring (blank lines, comments and docstrings do not count); ``wc -l`` is shown too.
Usage: ``python scripts/family_loc.py``.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "bridge" / "models"


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(source: str) -> int:
    skip = _docstring_lines(ast.parse(source))
    ignored = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
               tokenize.ENDMARKER, tokenize.ENCODING}
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in ignored:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in skip)
    return len(lines)


def shared_imports(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bridge.models._"):
            names += [f"{node.module.rsplit('.', 1)[1]}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "bridge.models":  # a whole shared module
            names += [f"{a.name}.*" for a in node.names if a.name.startswith("_")]
    return names


def main() -> None:
    print("| family | code lines (provider + bridge) | `wc -l` | shared pieces reused |")
    print("|---|---|---|---|")
    for family in sorted(p.parent.name for p in MODELS.glob("*/bridge.py")):
        sources = [(MODELS / family / f).read_text() for f in ("provider.py", "bridge.py")]
        loc = [code_lines(s) for s in sources]
        total = sum(s.count("\n") for s in sources)
        pieces = sorted(set(sum((shared_imports(s) for s in sources), [])))
        print(f"| {family} | {sum(loc)} ({loc[0]} + {loc[1]}) | {total} | {', '.join(f'`{p}`' for p in pieces)} |")


if __name__ == "__main__":
    main()
