"""smartward: the one command and the all-in-one demo."""

from __future__ import annotations

__version__ = "0.1.0"
