"""Resolve classes across files of one revision: bases through imports, MRO, dataclass fields.

Works on :func:`harness.pyfacts.file_facts` summaries. Imports are followed only inside
``megatron/`` (anything else, e.g. ``abc.ABC``, is an external base that contributes no
dataclass fields). Field merging follows :mod:`dataclasses`: bases' fields in reverse MRO
order, then the class's own annotations; a re-declared field keeps its first position but
takes the later type, default and declaring class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ClassRef", "ClassResolver"]

ClassRef = tuple[str, str]
"""(file path, class name)."""

FactsLoader = Callable[[str], "dict[str, Any] | None"]

_MAX_IMPORT_HOPS = 8


def _package_of(relpath: str) -> list[str]:
    parts = relpath.removesuffix(".py").split("/")
    return parts[:-1]  # the package a module (or an __init__) lives in


def _module_files(dotted: str) -> tuple[str, str]:
    base = dotted.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


class ClassResolver:
    """Classes of one revision, loaded lazily through ``load(relpath) -> facts | None``."""

    def __init__(self, load: FactsLoader) -> None:
        self._load = load
        self._facts: dict[str, dict[str, Any] | None] = {}
        self._mro: dict[ClassRef, list[ClassRef]] = {}
        self.notes: list[str] = []

    def facts(self, relpath: str) -> dict[str, Any] | None:
        if relpath not in self._facts:
            self._facts[relpath] = self._load(relpath)
        return self._facts[relpath]

    def cls(self, ref: ClassRef) -> dict[str, Any] | None:
        facts = self.facts(ref[0])
        return None if facts is None else facts["classes"].get(ref[1])

    # ---------------------------------------------------------------- name resolution
    def _module_file(self, dotted: str) -> str | None:
        if not dotted.startswith("megatron"):
            return None
        for candidate in _module_files(dotted):
            if self.facts(candidate) is not None:
                return candidate
        return None

    def _absolute(self, relpath: str, level: int, module: str) -> str:
        if level == 0:
            return module
        pkg = _package_of(relpath)
        if relpath.endswith("/__init__.py"):
            pkg = relpath.split("/")[:-1]
        pkg = pkg[: len(pkg) - (level - 1)] if level > 1 else pkg
        return ".".join([*pkg, module] if module else pkg)

    def resolve_name(self, relpath: str, name: str, hops: int = 0) -> ClassRef | None:
        """Where class ``name`` (as written in ``relpath``, maybe ``mod.Cls``) is defined."""
        facts = self.facts(relpath)
        if facts is None or hops > _MAX_IMPORT_HOPS:
            return None
        head, _, rest = name.partition(".")
        if not rest and head in facts["classes"]:
            return (relpath, head)
        imp = facts["imports"].get(head)
        if imp is None:
            return None
        level, module, imported = imp
        absolute = self._absolute(relpath, level, module)
        if imported is None:  # `import megatron.core.x as m` then `m.Cls`
            target = self._module_file(absolute)
            return self.resolve_name(target, rest, hops + 1) if target and rest else None
        target = self._module_file(absolute)
        if target is not None and (found := self.resolve_name(target, imported, hops + 1)):
            if rest:
                return None
            return found
        sub = self._module_file(f"{absolute}.{imported}")  # `from pkg import module`
        if sub is not None and rest:
            return self.resolve_name(sub, rest, hops + 1)
        return None

    def _is_internal(self, relpath: str, name: str) -> bool:
        """True when ``name`` should have resolved inside ``megatron/`` (not builtin/external)."""
        facts = self.facts(relpath)
        imp = facts["imports"].get(name.split(".")[0]) if facts else None
        if imp is None:  # a builtin (object, Exception) or a name we cannot place
            return name.split("[")[0] in (facts or {}).get("classes", {})
        level, module, _ = imp
        return level > 0 or module.startswith("megatron")

    # ---------------------------------------------------------------- MRO
    def bases(self, ref: ClassRef) -> list[ClassRef]:
        info = self.cls(ref)
        out: list[ClassRef] = []
        for base in info["bases"] if info else []:
            resolved = self.resolve_name(ref[0], base)
            if resolved is None:
                if self._is_internal(ref[0], base):
                    self.notes.append(f"base {base} of {ref[1]} ({ref[0]}) could not be resolved")
                continue
            out.append(resolved)
        return out

    def mro(self, ref: ClassRef, _stack: tuple[ClassRef, ...] = ()) -> list[ClassRef]:
        """C3 linearisation over the resolvable classes."""
        if ref in self._mro:
            return self._mro[ref]
        if ref in _stack:
            self.notes.append(f"inheritance cycle through {ref[1]}")
            return [ref]
        seqs = [self.mro(b, (*_stack, ref)) for b in self.bases(ref)] + [self.bases(ref)]
        result = [ref]
        seqs = [list(s) for s in seqs if s]
        while seqs:
            for seq in seqs:
                head = seq[0]
                if not any(head in s[1:] for s in seqs):
                    break
            else:
                self.notes.append(f"inconsistent MRO for {ref[1]}")
                break
            result.append(head)
            seqs = [[c for c in s if c != head] for s in seqs]
            seqs = [s for s in seqs if s]
        self._mro[ref] = result
        return result

    # ---------------------------------------------------------------- dataclass fields
    def _effective_fields(self, ref: ClassRef) -> dict[str, dict[str, Any]] | None:
        """What ``getattr(cls, "__dataclass_fields__")`` would give (inherited when not a dataclass)."""
        for candidate in self.mro(ref):
            info = self.cls(candidate)
            if info and info["dataclass"]:
                return self._fields(candidate)
        return None

    def _fields(self, ref: ClassRef) -> dict[str, dict[str, Any]]:
        fields: dict[str, dict[str, Any]] = {}
        for base in reversed(self.mro(ref)[1:]):
            for name, f in (self._effective_fields(base) or {}).items():
                fields[name] = f
        info = self.cls(ref)
        assert info is not None and info["dataclass"]
        for f in info["fields"]:
            fields[f["name"]] = {**{k: v for k, v in f.items() if k != "name"}, "declared_in": ref[1]}
        return fields

    def dataclass_fields(self, relpath: str, name: str) -> dict[str, dict[str, Any]] | None:
        """Run-time dataclass fields of class ``name`` defined in ``relpath`` (None if absent)."""
        if self.cls((relpath, name)) is None:
            return None
        return self._effective_fields((relpath, name)) or {}

    def subclasses_in(self, relpath: str, base: str) -> list[str]:
        """Classes of ``relpath`` that inherit (directly or not) from ``relpath``'s ``base``."""
        facts = self.facts(relpath)
        if facts is None or base not in facts["classes"]:
            return []
        target = (relpath, base)
        return [n for n in facts["classes"] if n != base and target in self.mro((relpath, n))]

    def method_params(self, relpath: str, name: str, method: str) -> list[dict[str, Any]] | None:
        """Parameters of ``name.method`` (looked up along the MRO), including ``self``."""
        if self.cls((relpath, name)) is None:
            return None
        for ref in self.mro((relpath, name)):
            info = self.cls(ref)
            if info and method in info["methods"]:
                return info["methods"][method]
        return None
