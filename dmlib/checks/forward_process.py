"""Checks for chapter 3: the forward process."""

from __future__ import annotations

__all__: list[str] = []
