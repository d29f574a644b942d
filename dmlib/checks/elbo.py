"""Checks for chapter 4: from the ELBO to an L2 loss."""

from __future__ import annotations

__all__: list[str] = []
