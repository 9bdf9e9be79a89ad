"""Inheritance at most two levels deep: no class of the product has more than two project classes above it.

Every module of ``bridge`` and ``harness`` is imported (MCore 0.16.1 of the venv is enough) and each class
defined there is checked through its MRO; bases from other packages (torch, MCore, the standard library)
do not count. The check fails with every offending class and its chain.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import bridge
import harness
from bridge.errors import UnsupportedFeatureError

MAX_DEPTH = 2


def _project_classes() -> list[type]:
    out: list[type] = []
    for package in (bridge, harness):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            out += [cls for _, cls in inspect.getmembers(module, inspect.isclass) if cls.__module__ == module.__name__]
    return out


def _project_ancestors(cls: type) -> list[type]:
    return [c for c in cls.__mro__[1:] if c.__module__.partition(".")[0] in ("bridge", "harness")]


def test_no_class_is_more_than_two_levels_deep() -> None:
    classes = _project_classes()
    assert len(classes) > 100, f"expected the product's classes, found only {len(classes)}"
    deep = sorted(f"{c.__module__}.{c.__qualname__} <- {' <- '.join(a.__qualname__ for a in _project_ancestors(c))}"
                  for c in classes if len(_project_ancestors(c)) > MAX_DEPTH)
    assert not deep, "classes more than two levels deep (flatten them):\n" + "\n".join(deep)


def test_the_check_sees_a_three_level_chain() -> None:
    class Deeper(UnsupportedFeatureError):
        pass

    Deeper.__module__ = "bridge.synthetic"

    class Deepest(Deeper):
        pass

    Deepest.__module__ = "bridge.synthetic"
    depth = len(_project_ancestors(Deepest))
    assert depth > MAX_DEPTH, depth
