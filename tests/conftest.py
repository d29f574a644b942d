"""Shared fixtures for the unit tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models: one torch thread is fastest and robust on a shared CPU (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
