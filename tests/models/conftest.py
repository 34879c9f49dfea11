import random

import numpy as np
import pytest
import torch


@pytest.fixture
def seed():
    """Fixed seeds for numpy, torch and random."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return 0
