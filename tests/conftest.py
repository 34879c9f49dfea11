"""Fixtures shared by every test package."""

import random

import numpy as np
import pytest


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
