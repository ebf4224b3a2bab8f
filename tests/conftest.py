import numpy as np
import pytest

import cad


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_configure(config):
    cad.manual_seed(0)


@pytest.fixture
def cuda_or_fake():
    """the GPU when there is one, else the fake device (NOTE [ CUDA backend ]): the
    same launchers and kernels' host emulation, so CUDA paths run everywhere"""
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    return cad.cuda
