import numpy as np
import pytest

import cad


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_configure(config):
    cad.manual_seed(0)
