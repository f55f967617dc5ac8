"""Fixtures shared by the model tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def two_threads():
    """torch on 2 threads for the module (CI's core count), whatever the machine has; restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
