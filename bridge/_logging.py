"""Loggers of the ``bridge`` package. DEBUG on ``bridge`` shows every conversion step."""

from __future__ import annotations

import logging

__all__ = ["get_logger"]

logging.getLogger("bridge").addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``bridge.<name>`` (``name`` may already start with ``bridge``)."""
    return logging.getLogger(name if name.startswith("bridge") else f"bridge.{name}")
