"""The HTTP API: synchronous scoring on the same `Scorer` as the workers, labels, health."""

from __future__ import annotations

from fraudstream.api.app import create_app

__all__ = ["create_app"]
