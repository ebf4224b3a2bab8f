import numpy as np
import pytest

import cad
from cad.testing import GradcheckError, gradcheck


def test_gradcheck_passes_on_correct_gradients():
    x = cad.tensor(np.linspace(-1, 1, 5), requires_grad=True)
    w = cad.tensor(np.ones((5, 3)), requires_grad=True)
    assert gradcheck(lambda x, w: cad.tanh(x @ w), (x, w))


def test_gradcheck_reports_a_table_of_mismatches():
    x = cad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    wrong = lambda x: x.detach() * x    # noqa: E731  (analytical misses half)
    with pytest.raises(GradcheckError) as e:
        gradcheck(wrong, (x,))
    msg = str(e.value)
    assert "analytical" in msg and "numerical" in msg and "(2,)" in msg
    assert gradcheck(wrong, (x,), raise_exception=False) is False


def test_gradcheck_needs_float64_and_grad():
    with pytest.raises(TypeError):
        gradcheck(lambda x: x * 2, (cad.tensor([1.0], dtype=cad.float32, requires_grad=True),))
    with pytest.raises(ValueError, match="requires grad"):
        gradcheck(lambda x: x * 2, (cad.tensor([1.0]),))
