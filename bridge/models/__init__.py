"""Model families; importing this package registers every family bridge."""

from bridge.models.llama.bridge import LlamaBridge

__all__ = ["LlamaBridge"]
