"""fraudstream: real-time fraud detection and transaction risk scoring on Valkey streams."""

from __future__ import annotations

__version__ = "0.1.0"
