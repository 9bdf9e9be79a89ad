"""Model families, one sub-package each with fixed file names: ``provider.py`` and ``bridge.py``.

Importing this package imports every ``bridge/models/<family>/bridge.py``, which registers
the family's bridge. Adding a family needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["FAMILIES"]

from pathlib import Path

# A family is a sub-package holding a bridge.py (a folder without one is not a family yet).
FAMILIES: list[str] = sorted(
    m.name for m in pkgutil.iter_modules(__path__)  # type: ignore[name-defined]
    if m.ispkg and (Path(__file__).parent / m.name / "bridge.py").is_file()
)
for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}.bridge")
