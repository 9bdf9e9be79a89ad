"""Subcommands of ``mcore-compat`` (registered in :data:`harness.cli.COMMANDS`)."""

from __future__ import annotations

__all__: list[str] = []
