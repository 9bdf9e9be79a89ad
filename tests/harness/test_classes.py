"""harness.classes: base resolution across files and dataclass field semantics.

The property test generates random dataclass hierarchies, runs them (our generated code,
not MCore) and checks that the static result equals ``dataclasses.fields`` at run time.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import types

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from harness.classes import ClassResolver
from harness.pyfacts import file_facts


def resolver_for(files: dict[str, str]) -> ClassResolver:
    return ClassResolver(lambda rel: file_facts(files[rel].encode()) if rel in files else None)


def test_fields_follow_bases_through_relative_and_absolute_imports():
    files = {
        "megatron/core/base.py": textwrap.dedent('''
            from dataclasses import dataclass
            @dataclass
            class Base:
                a: int = 1
                b: int = 2
        '''),
        "megatron/core/mid/__init__.py": "from megatron.core.mid.impl import Mid\n",
        "megatron/core/mid/impl.py": textwrap.dedent('''
            from dataclasses import dataclass
            from ..base import Base
            class Plain(Base):  # not a dataclass: contributes nothing of its own
                c: int = 3
            @dataclass
            class Mid(Plain):
                b: str = "two"
                d: int = 4
        '''),
        "megatron/core/top.py": textwrap.dedent('''
            import dataclasses
            import megatron.core.mid as m
            @dataclasses.dataclass
            class Top(m.Mid):
                a: float = 1.5
                e: int = 5
        '''),
    }
    r = resolver_for(files)
    fields = r.dataclass_fields("megatron/core/top.py", "Top")
    assert list(fields) == ["a", "b", "d", "e"]  # overrides keep their first position
    assert {k: (v["declared_in"], v["default"]) for k, v in fields.items()} == {
        "a": ("Top", "1.5"), "b": ("Mid", "'two'"), "d": ("Mid", "4"), "e": ("Top", "5"),
    }
    assert r.notes == []


def test_unresolvable_internal_base_is_noted():
    files = {"megatron/core/x.py": "from .gone import Gone\nclass X(Gone):\n    pass\n"}
    r = resolver_for(files)
    assert r.mro(("megatron/core/x.py", "X")) == [("megatron/core/x.py", "X")]
    assert any("Gone" in n for n in r.notes)


def test_subclasses_and_methods_along_mro():
    files = {"megatron/core/a.py": textwrap.dedent('''
        from dataclasses import dataclass
        @dataclass
        class A:
            x: int = 0
            def __init__(self, x, y=1): ...
        @dataclass
        class B(A):
            z: int = 0
        class C(B): ...
        class Other: ...
    ''')}
    r = resolver_for(files)
    assert r.subclasses_in("megatron/core/a.py", "A") == ["B", "C"]
    assert [p["name"] for p in r.method_params("megatron/core/a.py", "C", "__init__")] == ["self", "x", "y"]
    assert list(r.dataclass_fields("megatron/core/a.py", "C")) == ["x", "z"]  # inherited __dataclass_fields__


NAMES = ("alpha", "beta", "gamma", "delta", "eps")


@st.composite
def dataclass_hierarchies(draw, *, max_classes: int = 4, max_fields: int = 4):
    """Source of a module with a chain/tree of classes, some dataclasses, overriding fields."""
    n = draw(st.integers(1, max_classes))
    lines = ["from dataclasses import dataclass, field", "from typing import ClassVar", ""]
    for i in range(n):
        bases = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        # keep an MRO that C3 accepts: bases in decreasing index order
        bases = sorted(bases, reverse=True)
        is_dc = draw(st.booleans()) if i else True
        if is_dc:
            lines.append("@dataclass")
        lines.append(f"class C{i}({', '.join(f'C{b}' for b in bases)}):")
        body = []
        for name in draw(st.lists(st.sampled_from(NAMES), max_size=max_fields, unique=True)):
            kind = draw(st.sampled_from(["plain", "field", "factory", "classvar"]))
            value = draw(st.integers(0, 9))
            if kind == "plain":
                body.append(f"    {name}: int = {value}")
            elif kind == "field":
                body.append(f"    {name}: int = field(default={value}, metadata={{'k': {value}}})")
            elif kind == "factory":
                body.append(f"    {name}: list = field(default_factory=list)")
            else:
                body.append(f"    {name.upper()}: ClassVar[int] = {value}")
        lines += body or ["    pass"]
        lines.append("")
    return "\n".join(lines), n


@settings(max_examples=60, deadline=None)
@given(hierarchy=dataclass_hierarchies())
def test_static_fields_equal_runtime_fields(hierarchy):
    source, n = hierarchy
    module = types.ModuleType("harness_generated")
    sys.modules[module.__name__] = module  # dataclasses looks the module up
    try:
        exec(compile(source, "generated", "exec"), module.__dict__)  # noqa: S102 - our own generated code
    except TypeError:
        reject()  # an MRO (or field order) Python itself rejects: not an example
    finally:
        sys.modules.pop(module.__name__, None)
    r = resolver_for({"megatron/core/gen.py": source})
    for i in range(n):
        cls = getattr(module, f"C{i}")
        static = r.dataclass_fields("megatron/core/gen.py", f"C{i}")
        if not dataclasses.is_dataclass(cls):
            assert static == {}
            continue
        runtime = dataclasses.fields(cls)
        assert [f.name for f in runtime] == list(static)
        for f in runtime:
            owner = next(c.__name__ for c in cls.__mro__  # the dataclass whose body made the Field
                         if "__dataclass_fields__" in c.__dict__ and f.name in c.__dict__.get("__annotations__", {}))
            assert static[f.name]["declared_in"] == owner
            if f.default is not dataclasses.MISSING:
                assert static[f.name]["default"] == repr(f.default)
            else:
                assert static[f.name]["default_factory"] == "list"
