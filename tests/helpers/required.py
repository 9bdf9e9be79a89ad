"""A pytest plugin: where a run asks for hardware or a browser on purpose, a test that skips for lack of it fails.

``gpu`` and ``browser`` tests skip where CUDA or chromium is absent, so that the default suite runs
anywhere. Run on purpose (``nox -s gpu``, ``nox -s browser``, ``pytest -m gpu``) a suite of skips would
report success having checked nothing. A marker is *required* when

* ``$MCORE_COMPAT_REQUIRE`` names it (comma-separated; the nox sessions set it), or
* the ``-m`` expression is that marker alone (``-m gpu``, ``-m browser``);

and then a skipped test carrying it is reported as failed, with the skip's reason.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["REQUIRABLE", "REQUIRE_ENV", "pytest_runtest_makereport", "required_markers"]

REQUIRE_ENV = "MCORE_COMPAT_REQUIRE"
REQUIRABLE = frozenset({"gpu", "browser"})
"""Markers whose tests skip for lack of hardware or software."""


def required_markers(config: pytest.Config, environ: dict[str, str] | None = None) -> frozenset[str]:
    """The markers this run requires (see the module docstring).

    Raises:
        pytest.UsageError: ``$MCORE_COMPAT_REQUIRE`` names a marker outside :data:`REQUIRABLE`.
    """
    environ = os.environ if environ is None else environ
    named = {m.strip() for m in environ.get(REQUIRE_ENV, "").split(",") if m.strip()}
    unknown = named - REQUIRABLE
    if unknown:
        raise pytest.UsageError(f"{REQUIRE_ENV}={environ[REQUIRE_ENV]!r}: expected markers among "
                                f"{sorted(REQUIRABLE)}, found {sorted(unknown)}")
    expression = (config.getoption("markexpr", "") or "").strip()
    if expression in REQUIRABLE:
        named.add(expression)
    return frozenset(named)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    missing = required_markers(item.config) & {m.name for m in item.iter_markers()}
    if not missing:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped ({reason}), but this run requires {', '.join(sorted(missing))} "
                       f"(-m {' / '.join(sorted(missing))} or ${REQUIRE_ENV}): run it where that is available")
