"""Fixtures shared by every test package."""

import os
import random

import numpy as np
import pytest

# The scorer's equality tests run on this device (scripts/gpu-check.sh sets cuda).
TEST_DEVICE = os.environ.get("HOOKSTREAM_TEST_DEVICE", "cpu")


def pytest_configure(config):
    if TEST_DEVICE.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(f"HOOKSTREAM_TEST_DEVICE={TEST_DEVICE}: no CUDA device here "
                                    "(torch.cuda.is_available() is False)")


@pytest.fixture(scope="session")
def broker():
    """An embedded Tansu broker on a free port for the whole session (memory storage).

    Tests sharing it should use their own topic names.
    """
    from stream_app.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def seed():
    """Fixed seeds for numpy, torch (if installed) and random."""
    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:
        pass
    else:
        torch.manual_seed(0)
    return 0
