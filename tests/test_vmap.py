"""cad.vmap: the issue's named behaviours.  The seed's examples; in_dims / out_dims
(ints, None, negative, tuples, pytree prefixes), kwargs, chunk_size, randomness;
every error with its message; and the compositions with the transforms (vmap of
grad/jacrev/jacfwd/jvp/vjp/hessian, transforms of vmap, vmap inside cad.record),
each against its unbatched meaning computed by a Python loop, against central
finite differences for the per-example gradients and Jacobians, and against
torch.func where torch is importable."""
import numpy as np
import pytest

import cad
from _numeric import A, close, fd_grad, fd_jac  # noqa: F401

B = 4   # batch size of the composition tests

# importing torch (the torch.func oracles) warns about torch.jit.script on this version
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")


def rng(seed):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------ the seed's examples

def test_seed_elementwise():
    r = cad.vmap(lambda x: x**2 + x)(cad.ones(3, 3, 3) * 2)
    assert isinstance(r, cad.Tensor)
    assert r.shape == (3, 3, 3)
    assert np.all(A(r) == 6.0)


def test_seed_dot():
    r = cad.vmap(cad.dot)(cad.ones(3, 5), cad.ones(3, 5))
    assert r.shape == (3,)
    assert np.all(A(r) == 5.0)


def test_seed_nested_dot():
    r = cad.vmap(cad.vmap(cad.dot))(cad.ones(3, 2, 5), cad.ones(3, 2, 5))
    assert r.shape == (3, 2)
    assert np.all(A(r) == 5.0)


def test_tensors_have_view_as_the_seed_writes():
    """the seed writes .view (PyTorch's reshape); cad has it, on batched values too"""
    x = cad.arange(6.0)
    np.testing.assert_array_equal(A(x.view(2, 3)), np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(A(x.view((3, 2))), np.arange(6.0).reshape(3, 2))
    r = cad.vmap(lambda v: v.view(2, 2))(cad.ones(3, 4))
    assert r.shape == (3, 2, 2)


# The seed's code exactly, with torch replaced by cad
def jacobian(fun, x):
    x = x.detach().requires_grad_()
    y = fun(x)
    vjp = lambda v: cad.autograd.grad(y, x, v)[0]
    vs = cad.eye(y.numel())\
          .view(y.numel(), *y.shape)
    result = cad.vmap(vjp)(vs)
    return result.detach()


def hessian(fun, x):
    def grad0(x):
        y = fun(x)
        assert y.dim() == 0
        return cad.autograd.grad(y, x, create_graph=True)[0]
    return jacobian(grad0, x)


def test_seed_jacobian():
    J = jacobian(lambda x: x ** 3, cad.ones(3))
    assert J.shape == (3, 3)
    np.testing.assert_array_equal(A(J), 3 * np.eye(3))


def test_seed_hessian():
    H = hessian(lambda x: (x ** 3).sum(), cad.ones(3))
    assert H.shape == (3, 3)
    np.testing.assert_array_equal(A(H), 6 * np.eye(3))


def test_seed_jacobian_dense_against_finite_differences():
    x0 = rng(1).standard_normal(4)
    W = rng(2).standard_normal((3, 4))
    f = lambda x: cad.tanh(cad.tensor(W) @ x) * cad.sum(x * x)
    J = jacobian(f, cad.tensor(x0))
    F = lambda x: np.tanh(W @ x) * np.sum(x * x)
    close(J, fd_jac(F, x0), rtol=1e-7, atol=1e-8)
    close(J, cad.jacrev(f)(cad.tensor(x0)), rtol=1e-12)
    H = hessian(lambda x: cad.sum(cad.sin(x) * x) * cad.sum(x), cad.tensor(x0))
    G = lambda x: np.cos(x) * x * x.sum() + np.sin(x) * x.sum() + np.sum(np.sin(x) * x)
    close(H, fd_jac(G, x0), rtol=1e-7, atol=1e-8)


# ------------------------------------------------------------------ in_dims / out_dims

def test_in_dims_int_none_negative_tuple():
    X = rng(3).standard_normal((3, 4, 5))
    w = rng(4).standard_normal(5)
    f = lambda x, v: cad.sum(x * v, 0)
    want = np.stack([np.sum(X[:, j, :] * w, 0) for j in range(4)])
    close(cad.vmap(f, in_dims=(1, None))(cad.tensor(X), cad.tensor(w)), want, rtol=1e-14)
    close(cad.vmap(f, in_dims=(-2, None))(cad.tensor(X), cad.tensor(w)), want, rtol=1e-14)
    # a list counts as a tuple
    close(cad.vmap(f, in_dims=[1, None])(cad.tensor(X), cad.tensor(w)), want, rtol=1e-14)
    # both batched, at different axes
    W = rng(5).standard_normal((5, 4))
    want = np.stack([np.sum(X[:, j, :] * W[:, j], 0) for j in range(4)])
    close(cad.vmap(f, in_dims=(1, 1))(cad.tensor(X), cad.tensor(W)), want, rtol=1e-14)
    close(cad.vmap(f, in_dims=(-2, -1))(cad.tensor(X), cad.tensor(W)), want, rtol=1e-14)
    # an int for every argument
    Y = rng(6).standard_normal((3, 4, 5))
    close(cad.vmap(lambda a, b: a * b, in_dims=2)(cad.tensor(X), cad.tensor(Y)),
          np.stack([X[..., k] * Y[..., k] for k in range(5)]), rtol=1e-14)


def test_in_dims_pytree_prefix():
    X = rng(7).standard_normal((3, 4))
    w = rng(8).standard_normal(4)
    Z = rng(9).standard_normal((4, 3))

    def f(d, t):
        return cad.sum(d["x"] * d["w"]) + cad.sum(t[0] * t[1])
    # dict with per-key in_dims, a tuple argument mapped as a whole at axis -1 / per leaf
    r = cad.vmap(f, in_dims=({"w": None, "x": 0}, -1))({"x": cad.tensor(X), "w": cad.tensor(w)},
                                                       (cad.tensor(Z), cad.tensor(Z)))
    want = [np.sum(X[b] * w) + np.sum(Z[:, b] * Z[:, b]) for b in range(3)]
    close(r, want, rtol=1e-14)
    r = cad.vmap(f, in_dims=({"x": 0, "w": None}, (1, None)))({"w": cad.tensor(w), "x": cad.tensor(X)},
                                                               (cad.tensor(Z), cad.tensor(w)))
    want = [np.sum(X[b] * w) + np.sum(Z[:, b] * w) for b in range(3)]
    close(r, want, rtol=1e-14)
    # a prefix leaf for a whole dict; a list argument; a namedtuple-free nested dict
    r = cad.vmap(lambda d, l: d["a"]["b"] * l[0] - l[1], in_dims=(0, [0, None]))(
        {"a": {"b": cad.tensor(X)}}, [cad.tensor(X), cad.tensor(w)])
    close(r, X * X - w, rtol=1e-14)


def test_out_dims():
    X = rng(10).standard_normal((3, 2, 4))
    f = lambda x: (x * 2.0, cad.sum(x, 1))
    a, b = cad.vmap(f, out_dims=1)(cad.tensor(X))
    close(a, np.moveaxis(2 * X, 0, 1), rtol=1e-14)
    close(b, X.sum(2).T, rtol=1e-14)
    a, b = cad.vmap(f, out_dims=-1)(cad.tensor(X))
    close(a, np.moveaxis(2 * X, 0, -1), rtol=1e-14)
    close(b, X.sum(2).T, rtol=1e-14)
    a, b = cad.vmap(f, out_dims=(2, 0))(cad.tensor(X))
    close(a, np.moveaxis(2 * X, 0, 2), rtol=1e-14)
    close(b, X.sum(2), rtol=1e-14)
    # a 0-d output with out_dims 0 / -1
    s = cad.vmap(lambda x: cad.sum(x), out_dims=-1)(cad.tensor(X))
    close(s, X.sum((1, 2)), rtol=1e-14)
    # None for an unbatched output: returned as it is
    c = cad.tensor([1.0, 2.0])
    y, u = cad.vmap(lambda x: (x + 1, c * 3), out_dims=(0, None))(cad.tensor(X))
    close(y, X + 1, rtol=1e-14)
    close(u, [3.0, 6.0])
    # pytree outputs with a dict out_dims prefix
    d = cad.vmap(lambda x: {"s": cad.sum(x), "t": x.T}, out_dims={"s": 0, "t": 2})(cad.tensor(X))
    close(d["s"], X.sum((1, 2)), rtol=1e-14)
    close(d["t"], np.moveaxis(X.transpose(0, 2, 1), 0, 2), rtol=1e-14)
    # a number returned is broadcast over the batch
    r = cad.vmap(lambda x: 3.0)(cad.tensor(X))
    close(r, np.full(3, 3.0))


def test_out_dims_none_for_a_batched_output_raises():
    with pytest.raises(ValueError, match=r"out_dims None for output 0.*batched"):
        cad.vmap(lambda x: x * 2, out_dims=None)(cad.ones(3, 2))
    with pytest.raises(ValueError, match=r"out_dims None for output 1"):
        cad.vmap(lambda x: (x, x * 2), out_dims=(0, None))(cad.ones(3, 2))


def test_out_dims_out_of_range_raises():
    with pytest.raises(ValueError, match=r"out_dims 2 for output 0 of shape \(4,\)"):
        cad.vmap(lambda x: x, out_dims=2)(cad.ones(3, 4))


def test_kwargs_are_not_mapped():
    X = rng(11).standard_normal((3, 4))
    s = rng(12).standard_normal(4)
    r = cad.vmap(lambda x, scale=None: x * scale)(cad.tensor(X), scale=cad.tensor(s))
    close(r, X * s, rtol=1e-14)
    # a kwarg whose leading dim equals the batch size is still not mapped
    S = rng(13).standard_normal((3, 4))
    r = cad.vmap(lambda x, scale=None: x + cad.sum(scale))(cad.tensor(X), scale=cad.tensor(S))
    close(r, X + S.sum(), rtol=1e-14)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 100])
def test_chunk_size_same_result(chunk):
    X = rng(14).standard_normal((5, 3))
    w = rng(15).standard_normal(3)
    f = lambda x, v: (cad.tanh(x) * v, cad.sum(x * x))
    a0, b0 = cad.vmap(f, in_dims=(0, None))(cad.tensor(X), cad.tensor(w))
    a1, b1 = cad.vmap(f, in_dims=(0, None), chunk_size=chunk)(cad.tensor(X), cad.tensor(w))
    # (not bit-identical: the vector kernels round their tails differently for other lengths)
    close(a1, a0, rtol=1e-14, atol=1e-15)
    close(b1, b0, rtol=1e-14, atol=1e-15)
    # with out_dims and in_dims 1
    r0 = cad.vmap(lambda x: x * 2.0, in_dims=1, out_dims=1)(cad.tensor(X))
    r1 = cad.vmap(lambda x: x * 2.0, in_dims=1, out_dims=1, chunk_size=chunk)(cad.tensor(X))
    close(r1, r0, rtol=0, atol=0)   # exact: a product by 2
    # per-example gradients in chunks
    g0 = cad.vmap(cad.grad(lambda v, x: cad.sum(cad.sin(x * v))), in_dims=(None, 0))(cad.tensor(w), cad.tensor(X))
    g1 = cad.vmap(cad.grad(lambda v, x: cad.sum(cad.sin(x * v))), in_dims=(None, 0),
                  chunk_size=chunk)(cad.tensor(w), cad.tensor(X))
    close(g1, g0, rtol=1e-15)
    # an unbatched output with out_dims None
    c = cad.ones(2)
    _, u = cad.vmap(lambda x: (x, c), out_dims=(0, None), chunk_size=chunk)(cad.tensor(X))
    close(u, [1.0, 1.0])


def test_randomness_error():
    with pytest.raises(ValueError, match=r"random draw inside vmap\(randomness='error'\)"):
        cad.vmap(lambda x: x + cad.randn(3))(cad.ones(4, 3))
    with pytest.raises(ValueError, match="random draw"):
        cad.vmap(lambda x: x * cad.rand(3))(cad.ones(4, 3))
    # the default is "error" at any level of nesting
    with pytest.raises(ValueError, match="random draw"):
        cad.vmap(cad.vmap(lambda x: x + cad.randn(())), randomness="same")(cad.ones(4, 3))


def test_randomness_same():
    cad.manual_seed(3)
    r = A(cad.vmap(lambda x: x + cad.randn(3), randomness="same")(cad.zeros(4, 3)))
    assert r.shape == (4, 3)
    assert np.all(r == r[0]) and np.std(r[0]) > 0
    r = A(cad.vmap(lambda x: cad.rand(2, 2) * 1.0, randomness="same")(cad.zeros(4, 3)))
    assert r.shape == (4, 2, 2) and np.all(r == r[0])


def test_randomness_different():
    cad.manual_seed(4)
    r = A(cad.vmap(lambda x: x + cad.randn(3), randomness="different")(cad.zeros(4, 3)))
    assert r.shape == (4, 3)
    assert all(not np.array_equal(r[i], r[j]) for i in range(4) for j in range(i))
    r = A(cad.vmap(lambda x: cad.rand(2, 5), randomness="different")(cad.zeros(4, 3)))
    assert r.shape == (4, 2, 5)
    assert all(not np.array_equal(r[i], r[j]) for i in range(4) for j in range(i))
    assert np.all((r >= 0) & (r < 1))


# ------------------------------------------------------------------ errors

def test_error_sizes_differ():
    with pytest.raises(ValueError, match=r"differ in size: argument 0 of shape \(3, 4\) has 3 at dim 0, "
                                         r"argument 1 of shape \(5, 4\) has 5 at dim 0"):
        cad.vmap(lambda a, b: a + b)(cad.ones(3, 4), cad.ones(5, 4))
    with pytest.raises(ValueError, match=r"argument 0 of shape \(3, 4\) has 4 at dim 1.*argument 1 .* has 5"):
        cad.vmap(lambda a, b: a, in_dims=(1, 0))(cad.ones(3, 4), cad.ones(5, 4))


def test_error_mapped_argument_lacks_the_dim():
    with pytest.raises(ValueError, match=r"in_dims 1 for argument 0 of shape \(3,\): it has no dim 1"):
        cad.vmap(lambda a: a, in_dims=1)(cad.ones(3))
    with pytest.raises(ValueError, match=r"in_dims 0 for argument 0 of shape \(\)"):
        cad.vmap(lambda a: a)(cad.tensor(1.0))
    with pytest.raises(ValueError, match=r"in_dims -3 for argument 1"):
        cad.vmap(lambda a, b: a, in_dims=(0, -3))(cad.ones(3), cad.ones(3, 2))


def test_error_every_in_dims_none():
    with pytest.raises(ValueError, match="every in_dims is None"):
        cad.vmap(lambda a: a, in_dims=None)(cad.ones(3))
    with pytest.raises(ValueError, match="every in_dims is None"):
        cad.vmap(lambda a, b: a, in_dims=(None, None))(cad.ones(3), cad.ones(3))
    with pytest.raises(ValueError, match="every in_dims is None"):
        cad.vmap(lambda: 1.0)()


def test_error_python_number_mapped():
    with pytest.raises(ValueError, match=r"argument 1 is a float, not a tensor.*in_dims None"):
        cad.vmap(lambda a, b: a * b)(cad.ones(3), 2.0)
    with pytest.raises(ValueError, match=r"argument 0 \(leaf 1\) is a int"):
        cad.vmap(lambda t: t[0])((cad.ones(3), 2))
    # unmapped, a number is fine
    close(cad.vmap(lambda a, b: a * b, in_dims=(0, None))(cad.ones(3), 2.0), [2.0, 2.0, 2.0])


def test_error_bad_arguments_to_vmap():
    with pytest.raises(ValueError, match=r"randomness must be one of \('error', 'same', 'different'\), got 'foo'"):
        cad.vmap(lambda a: a, randomness="foo")
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        cad.vmap(lambda a: a, chunk_size=0)
    with pytest.raises(TypeError, match="f must be callable"):
        cad.vmap(3)
    with pytest.raises(ValueError, match="in_dims has 1 entries for 2 positional arguments"):
        cad.vmap(lambda a, b: a, in_dims=(0,))(cad.ones(3), cad.ones(3))
    with pytest.raises(TypeError, match="in_dims must be an int, a dim name, None or a tuple"):
        cad.vmap(lambda a: a, in_dims=1.5)(cad.ones(3))
    with pytest.raises(cad.NamesError, match="no dim named '0'"):   # a dim name (named dimensions)
        cad.vmap(lambda a: a, in_dims="0")(cad.ones(3))
    with pytest.raises(TypeError, match="in_dims entries must be ints, dim names or None"):
        cad.vmap(lambda a: a, in_dims=(0.5,))(cad.ones(3))
    with pytest.raises(ValueError, match=r"vmap in_dims: the structure \{'b': \*\}.*\{'a': \*\}"):
        cad.vmap(lambda d: d["a"], in_dims=({"b": 0},))({"a": cad.ones(3)})
    with pytest.raises(TypeError, match="output 0 is a str"):
        cad.vmap(lambda a: "x")(cad.ones(3))


def test_error_data_dependent_control_flow():
    with pytest.raises(ValueError, match=r"vmap.*bool\(\).*cad.where"):
        cad.vmap(lambda x: x if x > 0 else -x)(cad.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match=r"vmap.*bool\(\)"):
        cad.vmap(lambda x: x * 2 if (x > 0).all() else x)(cad.ones(3, 2))

    def loop(x):
        while cad.sum(x) < 10:
            x = x * 2
        return x
    with pytest.raises(ValueError, match=r"vmap.*an if or while"):
        cad.vmap(loop)(cad.ones(3, 2))


def test_error_python_values_of_batched_values():
    X = cad.ones(3, 2)
    with pytest.raises(ValueError, match=r"vmap: item\(\) of a batched value"):
        cad.vmap(lambda x: x.sum().item())(X)
    with pytest.raises(ValueError, match=r"vmap: float\(\) of a batched value"):
        cad.vmap(lambda x: float(x.sum()))(X)
    with pytest.raises(ValueError, match=r"vmap: int\(\) of a batched value"):
        cad.vmap(lambda x, i: x[int(i)])(X, cad.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"vmap: numpy\(\) of a batched value"):
        cad.vmap(lambda x: x.numpy())(X)
    with pytest.raises(ValueError, match=r"vmap: tolist\(\) of a batched value"):
        cad.vmap(lambda x: x.tolist())(X)
    with pytest.raises(ValueError, match=r"vmap: a numpy array of a batched value"):
        cad.vmap(lambda x: np.asarray(x))(X)
    with pytest.raises(ValueError, match=r"backward\(\) of a batched value"):
        cad.vmap(lambda x: x.sum().backward())(X)
    with pytest.raises(ValueError, match=r"\.grad of a batched value"):
        cad.vmap(lambda x: x.grad)(X)


def _escaped():
    kept = []
    cad.vmap(lambda x: kept.append(x) or x)(cad.ones(3, 4))
    return kept[0]


def test_error_batched_value_escapes_elementwise():
    e = _escaped()
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        e + 1
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        cad.sin(e)
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        cad.ones(4) * e
    # used inside a later vmap
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        cad.vmap(lambda x: x + e)(cad.ones(3, 4))
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        cad.vmap(lambda x: cad.sum(x) + cad.sum(e))(cad.ones(3, 4))




# found by this suite: the methods (e.sum(), e @ w, e[0], e.reshape) had the same bug (fixed)
@pytest.mark.parametrize("use", ["method_sum", "cad_sum", "matmul", "getitem", "reshape"])
def test_error_batched_value_escapes_non_elementwise(use):
    e = _escaped()
    f = {"method_sum": lambda: e.sum(), "cad_sum": lambda: cad.sum(e), "matmul": lambda: e @ cad.ones(4),
         "getitem": lambda: e[0], "reshape": lambda: e.reshape(2, 2)}[use]
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        f()


def test_an_error_inside_f_leaves_no_level_running():
    from cad.ops import _batch
    from cad.ops._registry import VMAP

    def boom(x):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        cad.vmap(boom)(cad.ones(3, 2))
    with pytest.raises(TypeError, match="grad: f must return a scalar"):
        cad.vmap(cad.grad(lambda x: x * 2))(cad.ones(3, 2))
    with pytest.raises(ValueError, match=r"item\(\) of a batched value"):
        cad.vmap(lambda x: cad.jacrev(lambda v: v.item())(x))(cad.ones(3, 2))
    with pytest.raises(ValueError, match=r"item\(\) of a batched value"):
        cad.vmap(lambda x: cad.vmap(lambda y: y.item())(x))(cad.ones(3, 2))
    assert _batch.levels() == [] and VMAP[0] == 0
    close(cad.ones(2) * 3.0, [3.0, 3.0])


def test_error_batched_value_escapes_a_vmap_that_raised():
    # found by this suite (fixed): the level stayed active when f raised
    kept = []

    def f(x):
        kept.append(x)
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        cad.vmap(f)(cad.ones(3, 2))
    with pytest.raises(ValueError, match="escaped the vmap that made it"):
        kept[0] + 1


def test_shape_errors_inside_vmap_name_the_example_shape():
    with pytest.raises(cad.ShapeError, match=r"axis 2 is out of range.*inside vmap: the shape of one example"):
        cad.vmap(lambda x: x.sum(axis=2))(cad.ones(3, 2))
    with pytest.raises(ValueError, match=r"cannot reshape an example of size 2 into shape \(3,\)"):
        cad.vmap(lambda x: x.reshape(3))(cad.ones(3, 2))


@pytest.mark.parametrize("op", ["add", "matmul"])
def test_broadcast_and_matmul_errors_inside_vmap_name_the_example_shapes(op):
    # found by this suite (fixed): the messages showed the physical batched shapes
    f = (lambda x: x + cad.ones(4)) if op == "add" else (lambda x: x @ cad.ones(4))
    with pytest.raises(cad.ShapeError, match=r"\(2,\) and \(4,\)"):
        cad.vmap(f)(cad.ones(3, 2))


# ------------------------------------------------------------------ compositions

def mlp_np(w, x):
    return np.tanh(x @ w[0]) @ w[1]


def test_vmap_of_vmap():
    X = rng(20).standard_normal((3, 4, 5))
    W = rng(21).standard_normal((5, 2))
    f = lambda x: cad.tanh(x @ cad.tensor(W)).sum(0)
    r = cad.vmap(cad.vmap(f))(cad.tensor(X[..., None, :]))
    want = np.stack([np.stack([np.tanh(X[i, j][None] @ W).sum(0) for j in range(4)]) for i in range(3)])
    close(r, want, rtol=1e-13)
    # the inner vmap over axis 1 of the example, the outer over axis 2
    r = cad.vmap(cad.vmap(lambda v, w: cad.dot(v, w), in_dims=(0, None)), in_dims=(2, None))(
        cad.tensor(X.transpose(1, 2, 0)), cad.tensor(W[:, 0]))
    want = np.stack([np.stack([X[i, j] @ W[:, 0] for j in range(4)]) for i in range(3)])
    close(r, want, rtol=1e-13)
    # inner vmap over an unbatched value mixed with the outer batch
    Y = rng(22).standard_normal((4, 5))
    r = cad.vmap(lambda x: cad.vmap(lambda y: cad.sum(x * y))(cad.tensor(Y)))(cad.tensor(X[:, 0]))
    close(r, X[:, 0] @ Y.T, rtol=1e-13)
    # three levels
    r = cad.vmap(cad.vmap(cad.vmap(lambda a: a * a + 1.0)))(cad.tensor(X))
    close(r, X * X + 1.0, rtol=1e-15)


def _loss(w, x):
    """a scalar of a shared parameter w (5, 3) and one example x (5,)"""
    h = cad.tanh(x @ w)
    return cad.sum(h * h) + cad.sum(w * w) * 0.1


def _loss_np(w, x):
    h = np.tanh(x @ w)
    return np.sum(h * h) + np.sum(w * w) * 0.1


def test_vmap_grad_per_example_gradients_shared_parameter():
    w = rng(23).standard_normal((5, 3))
    X = rng(24).standard_normal((B, 5))
    g = cad.vmap(cad.grad(_loss), in_dims=(None, 0))(cad.tensor(w), cad.tensor(X))
    assert g.shape == (B, 5, 3)
    loop = np.stack([A(cad.grad(_loss)(cad.tensor(w), cad.tensor(X[b]))) for b in range(B)])
    close(g, loop, rtol=1e-12)
    fd = np.stack([fd_grad(lambda ww: _loss_np(ww, X[b]), w) for b in range(B)])
    close(g, fd, rtol=1e-7, atol=1e-8)
    # with respect to both: argnums tuple
    gw, gx = cad.vmap(cad.grad(_loss, argnums=(0, 1)), in_dims=(None, 0))(cad.tensor(w), cad.tensor(X))
    close(gw, loop, rtol=1e-12)
    close(gx, np.stack([fd_grad(lambda xx: _loss_np(w, xx), X[b]) for b in range(B)]), rtol=1e-7, atol=1e-8)
    # value_and_grad and has_aux inside vmap
    (v, aux), g2 = cad.vmap(cad.value_and_grad(lambda w, x: (_loss(w, x), x * 2), has_aux=True),
                            in_dims=(None, 0))(cad.tensor(w), cad.tensor(X))
    close(v, [_loss_np(w, X[b]) for b in range(B)], rtol=1e-13)
    close(aux, 2 * X)
    close(g2, loop, rtol=1e-12)


def test_vmap_grad_against_torch_func():
    torch = pytest.importorskip("torch")
    w = rng(25).standard_normal((5, 3))
    X = rng(26).standard_normal((B, 5))
    g = cad.vmap(cad.grad(_loss), in_dims=(None, 0))(cad.tensor(w), cad.tensor(X))

    def tloss(w, x):
        h = torch.tanh(x @ w)
        return torch.sum(h * h) + torch.sum(w * w) * 0.1
    tg = torch.func.vmap(torch.func.grad(tloss), in_dims=(None, 0))(torch.tensor(w), torch.tensor(X))
    close(g, tg.numpy(), rtol=1e-12)


def test_grad_of_a_function_that_calls_vmap():
    w = rng(27).standard_normal((5, 3))
    X = rng(28).standard_normal((B, 5))
    total = lambda w, X: cad.sum(cad.vmap(_loss, in_dims=(None, 0))(w, X))
    g = cad.grad(total)(cad.tensor(w), cad.tensor(X))
    loop = sum(A(cad.grad(_loss)(cad.tensor(w), cad.tensor(X[b]))) for b in range(B))
    close(g, loop, rtol=1e-12)
    close(g, fd_grad(lambda ww: sum(_loss_np(ww, X[b]) for b in range(B)), w), rtol=1e-7, atol=1e-8)
    gX = cad.grad(total, argnums=1)(cad.tensor(w), cad.tensor(X))
    close(gX, np.stack([A(cad.grad(_loss, argnums=1)(cad.tensor(w), cad.tensor(X[b]))) for b in range(B)]),
          rtol=1e-12)
    # autograd: backward through vmap
    wt = cad.tensor(w, requires_grad=True)
    total(wt, cad.tensor(X)).backward()
    close(wt.grad, loop, rtol=1e-12)
    torch = pytest.importorskip("torch")

    def tloss(w, x):
        h = torch.tanh(x @ w)
        return torch.sum(h * h) + torch.sum(w * w) * 0.1
    tg = torch.func.grad(lambda w, X: torch.func.vmap(tloss, in_dims=(None, 0))(w, X).sum())(
        torch.tensor(w), torch.tensor(X))
    close(g, tg.numpy(), rtol=1e-12)


def _vec(x):
    """a vector function of one example x (3,) -> (2,)"""
    return cad.stack([cad.sin(x[0]) * x[1], cad.sum(x * x) * x[2]])


def _vec_np(x):
    return np.array([np.sin(x[0]) * x[1], np.sum(x * x) * x[2]])


def test_vmap_jacrev_and_jacfwd():
    X = rng(29).standard_normal((B, 3))
    loop = np.stack([A(cad.jacrev(_vec)(cad.tensor(X[b]))) for b in range(B)])
    fd = np.stack([fd_jac(_vec_np, X[b]) for b in range(B)])
    close(loop, fd, rtol=1e-7, atol=1e-8)
    jr = cad.vmap(cad.jacrev(_vec))(cad.tensor(X))
    close(jr, loop, rtol=1e-12)
    close(jr, fd, rtol=1e-7, atol=1e-8)
    jf = cad.vmap(cad.jacfwd(_vec))(cad.tensor(X))
    close(jf, loop, rtol=1e-12)
    # with a shared parameter, argnums over both
    w = rng(30).standard_normal(3)
    f = lambda w, x: cad.tanh(w * x) * cad.sum(w)
    for jac in (cad.jacrev, cad.jacfwd):
        jw, jx = cad.vmap(jac(f, argnums=(0, 1)), in_dims=(None, 0))(cad.tensor(w), cad.tensor(X))
        for b in range(B):
            Fw = lambda ww: np.tanh(ww * X[b]) * np.sum(ww)
            Fx = lambda xx: np.tanh(w * xx) * np.sum(w)
            close(A(jw)[b], fd_jac(Fw, w), rtol=1e-7, atol=1e-8)
            close(A(jx)[b], fd_jac(Fx, X[b]), rtol=1e-7, atol=1e-8)


def test_vmap_jacrev_against_torch_func():
    torch = pytest.importorskip("torch")
    X = rng(31).standard_normal((B, 3))
    tvec = lambda x: torch.stack([torch.sin(x[0]) * x[1], torch.sum(x * x) * x[2]])
    tj = torch.func.vmap(torch.func.jacrev(tvec))(torch.tensor(X)).numpy()
    close(cad.vmap(cad.jacrev(_vec))(cad.tensor(X)), tj, rtol=1e-12)
    tjf = torch.func.vmap(torch.func.jacfwd(tvec))(torch.tensor(X)).numpy()
    close(cad.vmap(cad.jacfwd(_vec))(cad.tensor(X)), tjf, rtol=1e-12)


def test_jacrev_and_jacfwd_of_vmap():
    X = rng(32).standard_normal((B, 3))
    loop = [A(cad.jacrev(_vec)(cad.tensor(X[b]))) for b in range(B)]
    want = np.zeros((B, 2, B, 3))
    for b in range(B):
        want[b, :, b, :] = loop[b]
    close(cad.jacrev(cad.vmap(_vec))(cad.tensor(X)), want, rtol=1e-12)
    close(cad.jacfwd(cad.vmap(_vec))(cad.tensor(X)), want, rtol=1e-12)
    F = lambda Xf: np.stack([_vec_np(x) for x in Xf])
    close(cad.jacrev(cad.vmap(_vec))(cad.tensor(X)), fd_jac(F, X), rtol=1e-7, atol=1e-8)


def test_vmap_of_jvp():
    X = rng(33).standard_normal((B, 3))
    T = rng(34).standard_normal((B, 3))
    out, tan = cad.vmap(lambda x, t: cad.jvp(_vec, (x,), (t,)))(cad.tensor(X), cad.tensor(T))
    for b in range(B):
        o, t = cad.jvp(_vec, (cad.tensor(X[b]),), (cad.tensor(T[b]),))
        close(A(out)[b], o, rtol=1e-13)
        close(A(tan)[b], t, rtol=1e-12)
        close(A(tan)[b], fd_jac(_vec_np, X[b]) @ T[b], rtol=1e-7, atol=1e-8)
    # one tangent for the batch
    out, tan = cad.vmap(lambda x, t: cad.jvp(_vec, (x,), (t,)), in_dims=(0, None))(cad.tensor(X), cad.tensor(T[0]))
    close(tan, np.stack([fd_jac(_vec_np, X[b]) @ T[0] for b in range(B)]), rtol=1e-7, atol=1e-8)
    # many tangents at one point (a Jacobian by forward mode)
    _, tan = cad.vmap(lambda t: cad.jvp(_vec, (cad.tensor(X[0]),), (t,)))(cad.eye(3))
    close(tan, fd_jac(_vec_np, X[0]).T, rtol=1e-7, atol=1e-8)


def test_vmap_of_a_vjp_fn_taken_outside_is_the_jacobian():
    x = rng(35).standard_normal(3)
    out, fn = cad.vjp(_vec, cad.tensor(x))
    (J,) = cad.vmap(fn)(cad.eye(2))
    close(J, fd_jac(_vec_np, x), rtol=1e-7, atol=1e-8)
    close(J, cad.jacrev(_vec)(cad.tensor(x)), rtol=1e-13)
    # a pytree output: the cotangents batched per leaf
    out, fn = cad.vjp(lambda x: {"a": _vec(x), "b": cad.sum(x)}, cad.tensor(x))
    close(out["b"], x.sum(), rtol=1e-14)
    (Ja,) = cad.vmap(lambda c: fn({"a": c, "b": cad.tensor(0.0)}))(cad.eye(2))
    close(Ja, fd_jac(_vec_np, x), rtol=1e-7, atol=1e-8)


def test_vmap_of_a_vjp_taken_inside():
    X = rng(36).standard_normal((B, 3))
    C = rng(37).standard_normal((B, 2))
    (g,) = cad.vmap(lambda x, c: cad.vjp(_vec, x)[1](c))(cad.tensor(X), cad.tensor(C))
    close(g, np.stack([C[b] @ fd_jac(_vec_np, X[b]) for b in range(B)]), rtol=1e-7, atol=1e-8)
    # and the vjp_fn returned out of the vmap... is per-example: called inside another vmap level
    res = cad.vmap(lambda x: cad.vmap(cad.vjp(_vec, x)[1])(cad.eye(2))[0])(cad.tensor(X))
    close(res, np.stack([fd_jac(_vec_np, X[b]) for b in range(B)]), rtol=1e-7, atol=1e-8)


def _scal(x):
    return cad.sum(cad.sin(x) * x) * cad.sum(x * x)


def _scal_np(x):
    return np.sum(np.sin(x) * x) * np.sum(x * x)


def _scal_grad_np(x):
    return (np.cos(x) * x + np.sin(x)) * np.sum(x * x) + np.sum(np.sin(x) * x) * 2 * x


def test_hessian_of_a_vmapped_function():
    X = rng(38).standard_normal((3, 3))
    H = cad.hessian(lambda x: cad.sum(cad.vmap(_scal)(x)))(cad.tensor(X))
    assert H.shape == (3, 3, 3, 3)
    want = np.zeros((3, 3, 3, 3))
    for b in range(3):
        want[b, :, b, :] = A(cad.hessian(_scal)(cad.tensor(X[b])))
    close(H, want, rtol=1e-11)
    close(want[0, :, 0, :], fd_jac(_scal_grad_np, X[0]), rtol=1e-7, atol=1e-8)


def test_vmap_of_hessian():
    X = rng(39).standard_normal((B, 3))
    H = cad.vmap(cad.hessian(_scal))(cad.tensor(X))
    close(H, np.stack([A(cad.hessian(_scal)(cad.tensor(X[b]))) for b in range(B)]), rtol=1e-12)
    close(H, np.stack([fd_jac(_scal_grad_np, X[b]) for b in range(B)]), rtol=1e-7, atol=1e-7)
    torch = pytest.importorskip("torch")
    th = torch.func.vmap(torch.func.hessian(lambda x: torch.sum(torch.sin(x) * x) * torch.sum(x * x)))(
        torch.tensor(X)).numpy()
    close(H, th, rtol=1e-12)


def test_vmap_of_grad_of_grad():
    x = rng(40).standard_normal(B)
    f = lambda x: cad.sin(x) * x ** 3
    g2 = cad.vmap(cad.grad(cad.grad(f)))(cad.tensor(x))
    want = -np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2 + 6 * np.sin(x) * x
    close(g2, want, rtol=1e-12)
    g3 = cad.vmap(cad.grad(cad.grad(cad.grad(f))))(cad.tensor(x))
    want3 = -np.cos(x) * x ** 3 - 9 * np.sin(x) * x ** 2 + 18 * np.cos(x) * x + 6 * np.sin(x)
    close(g3, want3, rtol=1e-11)


def test_grad_inside_vmap_closing_over_a_batched_value_is_per_example():
    X = rng(41).standard_normal((B, 3))
    w0 = cad.tensor(rng(42).standard_normal(3))
    g = cad.vmap(lambda x: cad.grad(lambda w: cad.sum(w * x))(w0))(cad.tensor(X))
    assert g.shape == (B, 3)
    close(g, X, rtol=0, atol=0)
    # nonlinear in both
    g = cad.vmap(lambda x: cad.grad(lambda w: cad.sum(cad.sin(w * x)))(w0))(cad.tensor(X))
    close(g, np.cos(A(w0) * X) * X, rtol=1e-13)
    # the gradient of the shared parameter does not leak between examples: one example uses it
    g = cad.vmap(lambda x, m: cad.grad(lambda w: cad.sum(w * x) * m)(w0))(cad.tensor(X),
                                                                         cad.tensor([1.0, 0.0, 0.0, 0.0]))
    want = np.zeros_like(X)
    want[0] = X[0]
    close(g, want, rtol=0, atol=0)


def test_vmap_inside_record():
    X = rng(43).standard_normal((B, 3))
    X2 = rng(44).standard_normal((B, 3))
    f = lambda x: cad.tanh(x) * cad.sum(x * x)
    tape = cad.record(lambda x: cad.vmap(f)(x), cad.tensor(X))
    close(tape(cad.tensor(X2)), cad.vmap(f)(cad.tensor(X2)), rtol=1e-14)
    close(tape(cad.tensor(X2)), np.tanh(X2) * np.sum(X2 * X2, 1, keepdims=True), rtol=1e-14)
    # the gradient through the recorded vmap
    tape2 = cad.record(lambda x: cad.sum(cad.vmap(_scal)(x)), cad.tensor(X))
    g = tape2.grad(cad.tensor(X2))
    g = g[0] if isinstance(g, tuple) else g
    close(g, np.stack([_scal_grad_np(X2[b]) for b in range(B)]), rtol=1e-12)
    # per-example gradients recorded (bench W8's form)
    w = rng(45).standard_normal((5, 3))
    Xw = rng(46).standard_normal((B, 5))
    tape3 = cad.record(lambda w, X: cad.vmap(cad.grad(_loss), in_dims=(None, 0))(w, X),
                       cad.tensor(w), cad.tensor(Xw))
    Xw2 = rng(47).standard_normal((B, 5))
    close(tape3(cad.tensor(w), cad.tensor(Xw2)),
          cad.vmap(cad.grad(_loss), in_dims=(None, 0))(cad.tensor(w), cad.tensor(Xw2)), rtol=1e-13)


def test_vmap_of_a_recorded_tape():
    x = rng(48).standard_normal(3)
    X = rng(49).standard_normal((B, 3))
    w = rng(59).standard_normal(3)
    f = lambda x: cad.tanh(x) * cad.sum(x * x)
    F = lambda X: np.tanh(X) * np.sum(X * X, -1, keepdims=True)
    tape = cad.record(f, cad.tensor(x))
    close(tape(cad.tensor(X[1])), f(cad.tensor(X[1])), rtol=1e-14)
    close(cad.vmap(tape)(cad.tensor(X)), F(X), rtol=1e-14)
    close(cad.vmap(tape)(cad.tensor(2 * X)), F(2 * X), rtol=1e-14)        # again (a cached tape)
    close(cad.vmap(tape)(cad.tensor(X[:2])), F(X[:2]), rtol=1e-14)        # another batch size
    close(cad.vmap(tape, in_dims=1)(cad.tensor(X.T)), F(X), rtol=1e-14)
    close(cad.vmap(tape, chunk_size=3)(cad.tensor(X)), F(X), rtol=1e-14)
    close(cad.vmap(cad.vmap(tape))(cad.tensor(X.reshape(2, 2, 3))), F(X).reshape(2, 2, 3), rtol=1e-14)
    # two inputs, one unbatched
    tape2 = cad.record(lambda a, b: cad.sum(cad.sin(a) * b), cad.tensor(x), cad.tensor(w))
    close(cad.vmap(tape2, in_dims=(0, None))(cad.tensor(X), cad.tensor(w)), np.sin(X) @ w, rtol=1e-14)
    close(cad.vmap(tape2, in_dims=(None, 0))(cad.tensor(w), cad.tensor(X)), X @ np.sin(w), rtol=1e-14)


def test_vmap_of_a_recorded_tape_errors_are_clear():
    # a tape whose f reads a value into Python (a guard): vmap(f) cannot be recorded
    tg = cad.record(lambda x: x * 2 if float(cad.sum(x)) > 0 else -x, cad.tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"vmap: float\(\) of a batched value"):
        cad.vmap(tg)(cad.ones(4, 3))


# found by this suite (fixed): vmap(tape) cached by batch size only, never checking the examples
def test_vmap_of_a_recorded_tape_checks_the_example_shape():
    tape = cad.record(lambda x: cad.tanh(x) * 2.0, cad.tensor(np.ones(3)))
    with pytest.raises(cad.ShapeError, match=r"tape: input 0 has shape \(5,\); the tape was recorded with "
                                             r"shape \(3,\)"):
        tape(cad.ones(5))
    try:
        cad.vmap(tape)(cad.ones(4, 5))
    except cad.ShapeError as e:
        assert "(3,)" in str(e)
    else:
        pytest.fail("vmap(tape) ran on examples of shape (5,) for a tape recorded with shape (3,)")
    close(cad.vmap(tape)(cad.ones(4, 3)), np.full((4, 3), 2 * np.tanh(1.0)), rtol=1e-14)
    with pytest.raises(cad.DTypeError, match="recorded with float64"):
        cad.vmap(tape)(cad.tensor(np.ones((4, 3), dtype=np.float32)))


# found by this suite (fixed): a tape's call gave zero gradients under the transforms
@pytest.mark.parametrize("how", ["grad_of_vmap_tape", "vmap_grad_tape", "grad_tape"])
def test_gradients_through_a_recorded_tape_call(how):
    x = rng(57).standard_normal(3)
    w = rng(58).standard_normal(3)
    X = rng(56).standard_normal((B, 3))
    tape = cad.record(lambda a, b: cad.sum(cad.sin(a) * b), cad.tensor(x), cad.tensor(w))
    if how == "grad_of_vmap_tape":
        g = cad.grad(lambda Xs: cad.sum(cad.vmap(tape, in_dims=(0, None))(Xs, cad.tensor(w))))(cad.tensor(X))
        close(g, np.cos(X) * w, rtol=1e-13)
    elif how == "vmap_grad_tape":
        g = cad.vmap(cad.grad(tape), in_dims=(0, None))(cad.tensor(X), cad.tensor(w))
        close(g, np.cos(X) * w, rtol=1e-13)
    else:
        close(cad.grad(tape)(cad.tensor(x), cad.tensor(w)), np.cos(x) * w, rtol=1e-13)


# ------------------------------------------------------------------ per-example gradients of an MLP

def _mlp_loss(params, x, y):
    h = cad.tanh(x @ params["W1"] + params["b1"])
    pred = h @ params["W2"] + params["b2"]
    return cad.sum((pred - y) ** 2)


def _mlp_data(seed, n=5):
    r = rng(seed)
    params = {"W1": r.standard_normal((4, 6)) * 0.5, "b1": r.standard_normal(6) * 0.1,
              "W2": r.standard_normal((6, 2)) * 0.5, "b2": r.standard_normal(2) * 0.1}
    return params, r.standard_normal((n, 4)), r.standard_normal((n, 2))


def test_mlp_per_example_gradients():
    p, X, Y = _mlp_data(50)
    pt = {k: cad.tensor(v) for k, v in p.items()}
    g = cad.vmap(cad.grad(_mlp_loss), in_dims=(None, 0, 0))(pt, cad.tensor(X), cad.tensor(Y))
    assert isinstance(g, dict) and sorted(g) == ["W1", "W2", "b1", "b2"]
    for k in p:
        assert g[k].shape == (len(X),) + p[k].shape
    for b in range(len(X)):
        gb = cad.grad(_mlp_loss)(pt, cad.tensor(X[b]), cad.tensor(Y[b]))
        for k in p:
            close(A(g[k])[b], gb[k], rtol=1e-12)

    def loss_np(W1, b1, W2, b2, x, y):
        return np.sum((np.tanh(x @ W1 + b1) @ W2 + b2 - y) ** 2)
    b = 2
    for k in p:
        def F(v, k=k):
            q = dict(p)
            q[k] = v
            return loss_np(q["W1"], q["b1"], q["W2"], q["b2"], X[b], Y[b])
        close(A(g[k])[b], fd_grad(F, p[k]), rtol=1e-6, atol=1e-8)


def test_mlp_per_example_gradients_against_torch_func():
    torch = pytest.importorskip("torch")
    p, X, Y = _mlp_data(51)
    pt = {k: cad.tensor(v) for k, v in p.items()}
    g = cad.vmap(cad.grad(_mlp_loss), in_dims=(None, 0, 0))(pt, cad.tensor(X), cad.tensor(Y))

    def tloss(params, x, y):
        h = torch.tanh(x @ params["W1"] + params["b1"])
        return torch.sum((h @ params["W2"] + params["b2"] - y) ** 2)
    tp = {k: torch.tensor(v) for k, v in p.items()}
    tg = torch.func.vmap(torch.func.grad(tloss), in_dims=(None, 0, 0))(tp, torch.tensor(X), torch.tensor(Y))
    for k in p:
        close(g[k], tg[k].numpy(), rtol=1e-12)


# ------------------------------------------------------------------ batched cotangents in cad.autograd.grad

def test_autograd_grad_batched_cotangents_several_outputs_and_inputs():
    x0 = rng(60).standard_normal(3)
    W = rng(61).standard_normal((2, 3))
    x = cad.tensor(x0, requires_grad=True)
    w = cad.tensor(W, requires_grad=True)
    y1 = w @ x
    y2 = cad.sum(x * x)
    gx, gw = cad.vmap(lambda c1, c2: cad.autograd.grad([y1, y2], [x, w], [c1, c2]))(
        cad.eye(2), cad.tensor([1.0, 2.0]))
    close(gx, W + 2 * x0 * np.array([1.0, 2.0])[:, None], rtol=1e-14)
    close(gw, np.stack([np.outer(np.eye(2)[k], x0) for k in range(2)]), rtol=1e-14)
    # the tape is kept: an ordinary call afterwards still works
    (g,) = cad.autograd.grad(y1, [x], cad.ones(2))
    close(g, W.sum(0), rtol=1e-14)


def test_autograd_grad_nested_vmap_in_dims_and_chunks():
    x0 = rng(62).standard_normal(3)
    W = rng(63).standard_normal((2, 3))
    x = cad.tensor(x0, requires_grad=True)
    y = cad.tensor(W) @ x
    Y = cad.outer(y, y)   # (2, 2)
    J = cad.vmap(cad.vmap(lambda c: cad.autograd.grad(Y, x, c)[0]))(cad.eye(4).reshape(2, 2, 2, 2))
    F = lambda v: np.outer(W @ v, W @ v)
    close(J, fd_jac(F, x0), rtol=1e-7, atol=1e-8)
    # cotangents mapped at axis 1, and in chunks
    x = cad.tensor(x0, requires_grad=True)
    y = cad.sin(x) * 2.0
    C = np.arange(9.0).reshape(3, 3)
    r = cad.vmap(lambda c: cad.autograd.grad(y, x, c)[0], in_dims=1)(cad.tensor(C))
    close(r, C.T * 2 * np.cos(x0), rtol=1e-14)
    r = cad.vmap(lambda c: cad.autograd.grad(y, x, c)[0], chunk_size=2)(cad.eye(3))
    close(r, np.diag(2 * np.cos(x0)), rtol=1e-14)


def test_autograd_grad_batched_cotangent_of_wrong_shape_is_clear():
    x = cad.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = cad.sin(x)
    with pytest.raises(cad.ShapeError, match=r"cotangent of shape \(4,\) for an output of shape \(3,\)"):
        cad.vmap(lambda c: cad.autograd.grad(y, x, c)[0])(cad.eye(4))


def test_autograd_grad_batched_cotangents_create_graph():
    # found by this suite (fixed): the batched path ignored create_graph
    x0 = rng(64).standard_normal(3)
    x = cad.tensor(x0, requires_grad=True)
    y = cad.sin(x) * cad.sum(x)
    (g1,) = cad.autograd.grad(y, x, cad.ones(3), create_graph=True, retain_graph=True)
    assert g1.requires_grad   # the unbatched call records
    J = cad.vmap(lambda c: cad.autograd.grad(y, x, c, create_graph=True)[0])(cad.eye(3))
    assert J.requires_grad
    (gJ,) = cad.autograd.grad(cad.sum(J), x)
    F = lambda v: np.sum(np.diag(np.cos(v) * v.sum()) + np.sin(v)[:, None])
    close(gJ, fd_grad(F, x0), rtol=1e-7, atol=1e-8)


def test_autograd_grad_batched_cotangents_allow_unused():
    # found by this suite (fixed): an unused input got zeros on the batched path
    x = cad.tensor([0.1, 0.2, 0.3], requires_grad=True)
    z = cad.tensor([0.1, 0.2, 0.3], requires_grad=True)
    y = cad.sin(x)
    with pytest.raises(cad.BackwardError, match="input 1 .* was not used"):
        cad.autograd.grad(y, [x, z], cad.ones(3), retain_graph=True)
    assert cad.autograd.grad(y, [x, z], cad.ones(3), allow_unused=True, retain_graph=True)[1] is None
    gz = cad.vmap(lambda c: cad.autograd.grad(y, [x, z], c, allow_unused=True)[1])(cad.eye(3))
    assert gz is None
    with pytest.raises(cad.BackwardError, match="input 1 .* was not used"):
        cad.vmap(lambda c: cad.autograd.grad(y, [x, z], c)[1])(cad.eye(3))


def test_randomness_same_with_chunks():
    # found by this suite (fixed): "same" drew once per chunk
    cad.manual_seed(5)
    r = A(cad.vmap(lambda x: x + cad.randn(3), randomness="same", chunk_size=2)(cad.zeros(5, 3)))
    assert r.shape == (5, 3)
    assert np.all(r == r[0])


def test_randomness_different_with_chunks_and_nesting():
    cad.manual_seed(6)
    r = A(cad.vmap(lambda x: x + cad.randn(()), randomness="different", chunk_size=2)(cad.zeros(5)))
    assert len(set(r.tolist())) == 5
    # outer "same", inner "different": rows equal, columns differ
    r = A(cad.vmap(cad.vmap(lambda x: x + cad.randn(()), randomness="different"), randomness="same")(cad.zeros(2, 3)))
    assert np.all(r[0] == r[1]) and len(set(r[0].tolist())) == 3
    # outer "different", inner "same"
    r = A(cad.vmap(cad.vmap(lambda x: x + cad.randn(()), randomness="same"), randomness="different")(cad.zeros(2, 3)))
    assert np.all(r[:, 0:1] == r) and r[0, 0] != r[1, 0]


# ------------------------------------------------------------------ more compositions

def test_jvp_of_vmap_and_vmap_of_hvp():
    X = rng(65).standard_normal((3, 4))
    T = rng(66).standard_normal((3, 4))
    f = lambda x: cad.sin(x) * cad.sum(x)
    _, t = cad.jvp(cad.vmap(f), (cad.tensor(X),), (cad.tensor(T),))
    close(t, np.cos(X) * T * X.sum(1, keepdims=True) + np.sin(X) * T.sum(1, keepdims=True), rtol=1e-13)
    h = cad.vmap(lambda x, t: cad.hvp(lambda v: cad.sum(v ** 3), x, t))(cad.tensor(X), cad.tensor(T))
    close(h, 6 * X * T, rtol=1e-13)


def test_vmap_of_vmap_of_grad_and_grad_of_vmap_of_grad():
    X = rng(67).standard_normal((3, 4))
    w = rng(68).standard_normal(4)
    g = cad.vmap(cad.vmap(cad.grad(lambda x: cad.sum(x ** 3))))(cad.tensor(X.reshape(3, 2, 2)))
    close(g, 3 * X.reshape(3, 2, 2) ** 2, rtol=1e-14)
    # both levels batching different arguments of one grad
    g = cad.vmap(cad.vmap(cad.grad(lambda a, b: cad.sum(a * b * a), argnums=(0, 1)), in_dims=(0, None)),
                 in_dims=(None, 0))(cad.tensor(X), cad.tensor(X))
    close(g[0], 2 * X[None, :, :] * X[:, None, :], rtol=1e-14)
    close(g[1], np.broadcast_to(X[None, :, :] ** 2, (3, 3, 4)), rtol=1e-14)
    # grad of a sum of per-example gradients (second order through vmap)
    per = cad.vmap(cad.grad(lambda w, x: cad.sum(cad.sin(w * x))), in_dims=(None, 0))
    gg = cad.grad(lambda w: cad.sum(per(w, cad.tensor(X)) ** 2))(cad.tensor(w))
    F = lambda ww: np.sum((np.cos(ww * X) * X) ** 2)
    close(gg, fd_grad(F, w), rtol=1e-7, atol=1e-8)
    gg = cad.grad(lambda w: cad.sum(per(w, cad.tensor(X))))(cad.tensor(w))
    close(gg, (-np.sin(w * X) * X * X).sum(0), rtol=1e-13)


def test_backward_through_vmap():
    X = rng(69).standard_normal((3, 4))
    w = rng(70).standard_normal(4)
    Xg = cad.tensor(X, requires_grad=True)
    wg = cad.tensor(w, requires_grad=True)
    cad.sum(cad.vmap(lambda x: cad.sin(x * wg) * cad.sum(x))(Xg)).backward()
    F = lambda Xf: np.sum(np.sin(Xf * w) * Xf.sum(1, keepdims=True))
    close(Xg.grad, fd_grad(F, X), rtol=1e-7, atol=1e-8)
    close(wg.grad, fd_grad(lambda ww: np.sum(np.sin(X * ww) * X.sum(1, keepdims=True)), w), rtol=1e-7, atol=1e-8)


def test_transforms_inside_vmap_on_unbatched_arguments_closing_over_batched_values():
    X = rng(71).standard_normal((3, 4))
    w = cad.tensor(rng(72).standard_normal(4))
    wn = A(w)
    close(cad.vmap(lambda x: cad.jacrev(lambda v: v * x)(w))(cad.tensor(X)), np.stack([np.diag(x) for x in X]))
    close(cad.vmap(lambda x: cad.jacfwd(lambda v: v * x)(w))(cad.tensor(X)), np.stack([np.diag(x) for x in X]))
    close(cad.vmap(lambda x: cad.hessian(lambda v: cad.sum(v * v * x))(w))(cad.tensor(X)),
          np.stack([np.diag(2 * x) for x in X]))
    close(cad.vmap(lambda x: cad.jvp(lambda v: v * x, (w,), (w,))[1])(cad.tensor(X)), wn * X)
    close(cad.vmap(lambda x: cad.vjp(lambda v: v * x, w)[1](cad.ones(4))[0])(cad.tensor(X)), X)
    # two levels: the gradient of a shared parameter under both is per (i, j)
    T = rng(73).standard_normal((2, 4))
    g = cad.vmap(lambda x: cad.vmap(lambda t: cad.grad(lambda v: cad.sum(v * x * t))(w))(cad.tensor(T)))(cad.tensor(X))
    close(g, X[:, None, :] * T[None, :, :], rtol=1e-14)


def test_vmap_of_jacobians_with_pytree_outputs_and_aux():
    X = rng(74).standard_normal((3, 4))
    f = lambda x: (x * 2, cad.sum(x))
    for jac in (cad.jacrev, cad.jacfwd):
        a, b = cad.vmap(jac(f))(cad.tensor(X))
        close(a, np.broadcast_to(2 * np.eye(4), (3, 4, 4)))
        close(b, np.ones((3, 4)))
        J, aux = cad.vmap(jac(f, has_aux=True))(cad.tensor(X))
        close(J, np.broadcast_to(2 * np.eye(4), (3, 4, 4)))
        close(aux, X.sum(1), rtol=1e-14)
    # a dict argument
    g = cad.vmap(cad.jacrev(lambda d: cad.sum(d["a"] * d["b"])))({"a": cad.tensor(X), "b": cad.tensor(2 * X)})
    close(g["a"], 2 * X)
    close(g["b"], X)


def test_grad_of_vjp_fn_batched_cotangents():
    """the seed's Jacobian (vmap over a vjp_fn) is itself differentiable"""
    w = rng(75).standard_normal(4)
    J = lambda x: cad.vmap(cad.vjp(lambda v: cad.sin(v) * v, x)[1])(cad.eye(4))[0]
    close(J(cad.tensor(w)), np.diag(np.cos(w) * w + np.sin(w)), rtol=1e-14)
    g = cad.grad(lambda x: cad.sum(J(x)))(cad.tensor(w))
    close(g, -np.sin(w) * w + 2 * np.cos(w), rtol=1e-13)


# ------------------------------------------------------------------ torch.func as a second oracle

def _torch_cases(torch):
    tf = torch.func
    X = rng(80).standard_normal((B, 3))
    Y = rng(81).standard_normal((B, 2, 3))
    C = rng(82).standard_normal((B, 2))
    w = rng(83).standard_normal(3)
    x0 = rng(84).standard_normal(3)
    t = torch.tensor
    c = cad.tensor
    tvec = lambda x: torch.stack([torch.sin(x[0]) * x[1], torch.sum(x * x) * x[2]])
    tscal = lambda x: torch.sum(torch.sin(x) * x) * torch.sum(x * x)
    return {
        "vmap_vmap": (lambda: cad.vmap(cad.vmap(lambda y: cad.tanh(y) * cad.sum(y)))(c(Y)),
                      lambda: tf.vmap(tf.vmap(lambda y: torch.tanh(y) * torch.sum(y)))(t(Y))),
        "jacrev_vmap": (lambda: cad.jacrev(cad.vmap(_vec))(c(X)),
                        lambda: tf.jacrev(tf.vmap(tvec))(t(X))),
        "jacfwd_vmap": (lambda: cad.jacfwd(cad.vmap(_vec))(c(X)),
                        lambda: tf.jacfwd(tf.vmap(tvec))(t(X))),
        "vmap_jvp": (lambda: cad.vmap(lambda x, v: cad.jvp(_vec, (x,), (v,))[1])(c(X), c(Y[:, 0])),
                     lambda: tf.vmap(lambda x, v: tf.jvp(tvec, (x,), (v,))[1])(t(X), t(Y[:, 0]))),
        "vmap_vjp_fn_outside": (lambda: cad.vmap(cad.vjp(_vec, c(x0))[1])(c(C))[0],
                                lambda: tf.vmap(tf.vjp(tvec, t(x0))[1])(t(C))[0]),
        "vmap_vjp_inside": (lambda: cad.vmap(lambda x, ct: cad.vjp(_vec, x)[1](ct)[0])(c(X), c(C)),
                            lambda: tf.vmap(lambda x, ct: tf.vjp(tvec, x)[1](ct)[0])(t(X), t(C))),
        "hessian_of_vmap": (lambda: cad.hessian(lambda x: cad.sum(cad.vmap(_scal)(x)))(c(X)),
                            lambda: tf.hessian(lambda x: torch.sum(tf.vmap(tscal)(x)))(t(X))),
        "vmap_grad_grad": (lambda: cad.vmap(cad.grad(cad.grad(lambda s: cad.sin(s) * s ** 3)))(c(X[:, 0])),
                           lambda: tf.vmap(tf.grad(tf.grad(lambda s: torch.sin(s) * s ** 3)))(t(X[:, 0]))),
        "closure_grad": (lambda: cad.vmap(lambda x: cad.grad(lambda v: cad.sum(cad.sin(v * x)))(c(w)))(c(X)),
                         lambda: tf.vmap(lambda x: tf.grad(lambda v: torch.sum(torch.sin(v * x)))(t(w)))(t(X))),
        "vmap_jacrev_argnums": (
            lambda: cad.vmap(cad.jacrev(lambda v, x: cad.tanh(v * x) * cad.sum(v), argnums=(0, 1)),
                             in_dims=(None, 0))(c(w), c(X)),
            lambda: tf.vmap(tf.jacrev(lambda v, x: torch.tanh(v * x) * torch.sum(v), argnums=(0, 1)),
                            in_dims=(None, 0))(t(w), t(X))),
        "out_dims_in_dims": (
            lambda: cad.vmap(lambda y, v: (y @ v, cad.sum(y, 0)), in_dims=(1, None), out_dims=(1, 0))(
                c(Y.transpose(1, 0, 2)), c(w)),
            lambda: tf.vmap(lambda y, v: (y @ v, torch.sum(y, 0)), in_dims=(1, None), out_dims=(1, 0))(
                t(Y.transpose(1, 0, 2)), t(w))),
    }


_TORCH_NAMES = ["vmap_vmap", "jacrev_vmap", "jacfwd_vmap", "vmap_jvp", "vmap_vjp_fn_outside", "vmap_vjp_inside",
                "hessian_of_vmap", "vmap_grad_grad", "closure_grad", "vmap_jacrev_argnums", "out_dims_in_dims"]


@pytest.mark.parametrize("name", _TORCH_NAMES)
def test_compositions_against_torch_func(name):
    torch = pytest.importorskip("torch")
    got_f, want_f = _torch_cases(torch)[name]
    got, want = got_f(), want_f()
    gl, wl = cad.tree_leaves(got), [w.detach().numpy() for w in torch.utils._pytree.tree_leaves(want)]
    assert len(gl) == len(wl)
    for g, w in zip(gl, wl):
        close(g, w, rtol=1e-11, atol=1e-13)


def test_numpy_ufuncs_on_batched_values_dispatch_to_cad():
    X = np.random.default_rng(70).standard_normal((4, 3))
    got = cad.vmap(lambda x: np.sin(x) + np.ones(3) * x)(cad.tensor(X))
    np.testing.assert_allclose(np.asarray(got), np.sin(X) + X, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(cad.vmap(lambda x: np.sign(x))(cad.tensor(X))), np.sign(X))
    with pytest.raises(TypeError, match="numpy's cbrt on a batched value"):
        cad.vmap(lambda x: np.cbrt(x))(cad.tensor(X))


def test_autograd_grad_of_a_batched_output_refers_to_cad_grad():
    with pytest.raises(TypeError, match="use cad.grad / cad.vjp"):
        cad.vmap(lambda x: cad.autograd.grad(cad.sum(x * x), x))(cad.ones(2, 3))


def test_vmap_of_a_loaded_tape(tmp_path):
    f = lambda x: cad.sum(cad.sin(x) * x)
    tp = cad.record(f, np.ones(3))
    cad.save(tp, tmp_path / "t.cad")
    lt = cad.load(tmp_path / "t.cad")
    xs = np.arange(12.0).reshape(4, 3) / 5
    np.testing.assert_allclose(np.asarray(cad.vmap(lt)(xs)), [float(f(cad.tensor(x))) for x in xs], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cad.vmap(cad.grad(lt))(xs)), np.asarray(cad.vmap(cad.grad(f))(xs)),
                               rtol=1e-12)


def test_grad_inside_vmap_of_an_unmapped_numpy_argument():
    """vmap(grad(f), in_dims=(None, 0)) with a numpy array as the unmapped,
    differentiated argument: a tensor, as outside vmap (was a ShapeError)"""
    f = lambda a, b: cad.sum(a * b * a)   # noqa: E731
    a, b = np.array([1.0, 2.0]), np.arange(6.0).reshape(3, 2)
    want = 2 * a * b
    for x in (a, cad.tensor(a)):
        np.testing.assert_allclose(np.asarray(cad.vmap(cad.grad(f), in_dims=(None, 0))(x, b)), want)
    H = cad.vmap(cad.hessian(lambda a, b: cad.sum(a * a * b)), in_dims=(None, 0))(a, b)
    np.testing.assert_allclose(np.asarray(H), np.stack([np.diag(2 * r) for r in b]))


def test_jax_names_in_axes_out_axes():
    # JAX's keyword names for in_dims/out_dims: the same mapping; both names at once raise
    X = np.arange(24.0).reshape(4, 6)
    y = np.ones(4)
    a = cad.vmap(lambda x, v: x * v, in_axes=(1, None), out_axes=1)(X, y)
    b = cad.vmap(lambda x, v: x * v, in_dims=(1, None), out_dims=1)(X, y)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(a), X)
    g = cad.vmap(cad.grad(lambda w, x: cad.sum(cad.tanh(x @ w) ** 2)), in_axes=(None, 0))(
        np.ones((6, 3)), X)
    assert g.shape == (4, 6, 3)
    with pytest.raises(TypeError, match="in_dims .* or in_axes"):
        cad.vmap(lambda x: x, in_dims=1, in_axes=1)
    with pytest.raises(TypeError, match="out_dims .* or out_axes"):
        cad.vmap(lambda x: x, out_dims=1, out_axes=1)
