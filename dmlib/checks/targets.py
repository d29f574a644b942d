"""Checks for chapter 5: three equivalent targets."""

from __future__ import annotations

__all__: list[str] = []
