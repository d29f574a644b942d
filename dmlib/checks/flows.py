"""Checks for chapter 2: normalizing flows and CNFs."""

from __future__ import annotations

__all__: list[str] = []
