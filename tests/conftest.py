"""Fixtures and hooks of the whole suite."""

from __future__ import annotations

from tests.helpers.required import pytest_runtest_makereport  # noqa: F401 - a skipped gpu/browser test fails where required
