"""Checks for chapter 1: Gaussian identities."""

from __future__ import annotations

__all__: list[str] = []
