"""The numpy surface of issue 13 (reductions, scans and shape ops composed from the
table's primitives): forward against numpy on 0-d, empty, non-contiguous inputs and
negative axes; sort/topk gradients against torch.autograd; var/std against numpy and
torch; split pieces; pad modes with finite-difference gradients; vmap against a loop;
second derivatives (jvp of jvp, grad of grad) against finite differences."""
import numpy as np
import pytest

import cad
from cad.testing import gradcheck, gradgradcheck

from _numeric import fd_grad, fd_jac

RNG = np.random.default_rng(13)


def T(a, requires_grad=False):
    return cad.tensor(np.asarray(a), requires_grad=requires_grad)


def A(x):
    return np.asarray(x)


def nc(shape):
    """a non-contiguous tensor of shape (transposed storage) and its numpy value"""
    a = RNG.standard_normal(shape[::-1]).T
    t = cad.tensor(np.ascontiguousarray(a.T)).T
    return t, a


def close(got, want, rtol=1e-12, atol=1e-12):
    got = A(got)
    want = np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


SHAPES = [(), (0,), (4,), (3, 4), (2, 0, 3), (2, 3, 4)]


# ------------------------------------------------------------------ forward against numpy

@pytest.mark.filterwarnings("ignore:Degrees of freedom")
@pytest.mark.parametrize("shape", SHAPES)
def test_reductions_match_numpy(shape):
    a = RNG.standard_normal(shape)
    x = T(a)
    with np.errstate(all="ignore"):
        for ddof in (0, 1):
            close(cad.var(x, ddof=ddof), np.var(a, ddof=ddof))
            close(cad.std(x, ddof=ddof), np.std(a, ddof=ddof))
        if a.ndim:
            close(cad.var(x, axis=-1, keepdims=True), np.var(a, axis=-1, keepdims=True))
            close(cad.std(x, -1, ddof=1), np.std(a, -1, ddof=1))
        close(cad.norm(x), np.linalg.norm(a))
    close(cad.any(x > 0.5), np.any(a > 0.5))
    close(cad.all(x > -3), np.all(a > -3))
    if a.ndim:
        close(cad.any(x > 0, axis=-1), np.any(a > 0, axis=-1))
        close(cad.all(x > 0, axis=0, keepdims=True), np.all(a > 0, axis=0, keepdims=True))
        close(cad.diff(x), np.diff(a))
        close(cad.diff(x, n=2, axis=0), np.diff(a, n=2, axis=0))
        close(cad.sort(x), np.sort(a))
        close(cad.sort(x, axis=0), np.sort(a, axis=0))
        close(cad.argsort(x, axis=-1), np.argsort(a, axis=-1, kind="stable"))
    close(cad.sort(x, axis=None), np.sort(a, axis=None))


def test_noncontiguous_and_negative_axes():
    x, a = nc((3, 4, 2))
    close(cad.var(x, axis=(-1, 0), ddof=1), np.var(a, axis=(-1, 0), ddof=1))
    close(cad.norm(x, axis=-2), np.linalg.norm(a, axis=-2))
    close(cad.norm(x, ord=1, axis=(-1, -3)), np.linalg.norm(a, ord=1, axis=(-1, -3)))
    close(cad.norm(x, ord=np.inf, axis=(0, 2), keepdims=True), np.linalg.norm(a, ord=np.inf, axis=(0, 2), keepdims=True))
    close(cad.sort(x, axis=-2), np.sort(a, axis=-2))
    close(cad.diff(x, axis=-2), np.diff(a, axis=-2))
    p = RNG.standard_normal((3, 1, 2))
    close(cad.diff(x, 2, axis=1, prepend=T(p), append=-1.0), np.diff(a, 2, axis=1, prepend=p, append=-1.0))
    close(cad.diff(T([1, 4, 2]), prepend=0), np.diff([1, 4, 2], prepend=0))
    close(cad.diff(T([True, False, False])), np.diff([True, False, False]))
    close(cad.flip(x, axis=(-1, 0)), np.flip(a, axis=(-1, 0)))
    close(cad.roll(x, (2, -1), axis=(-1, 1)), np.roll(a, (2, -1), axis=(-1, 1)))
    close(cad.moveaxis(x, -1, 0), np.moveaxis(a, -1, 0))
    close(cad.rot90(x, 3, axes=(-1, 0)), np.rot90(a, 3, axes=(-1, 0)))
    close(cad.diagonal(x, 1, -1, -2), np.diagonal(a, 1, -1, -2))
    close(cad.trace(x, -1, 0, 1), np.trace(a, -1, 0, 1))
    close(cad.repeat(x, [1, 0, 2, 1], axis=-2), np.repeat(a, [1, 0, 2, 1], axis=-2))
    close(cad.tile(x, (2, 1, 1, 2)), np.tile(a, (2, 1, 1, 2)))
    close(cad.tril(x, -1), np.tril(a, -1))
    close(cad.triu(x, 1), np.triu(a, 1))
    close(cad.ravel(x), np.ravel(a))
    close(x.ravel(), a.ravel())
    close(cad.pad(x, ((1, 0), (0, 2), (1, 1)), mode="reflect"), np.pad(a, ((1, 0), (0, 2), (1, 1)), mode="reflect"))
    close(cad.cross(x[:, :3], x[:, 1:], axis=1), np.cross(a[:, :3], a[:, 1:], axis=1))


def test_norm_ords():
    v, m = RNG.standard_normal(5), RNG.standard_normal((3, 4))
    for o in (None, 2, 1, np.inf, -np.inf, 0, 3, 0.5, -1):
        close(cad.norm(T(v), o), np.linalg.norm(v, o), rtol=1e-12)
    for o in (None, "fro", 1, -1, np.inf, -np.inf):
        close(cad.norm(T(m), o), np.linalg.norm(m, o), rtol=1e-12)
    close(cad.norm(T(m), p=1, dim=1, keepdim=True), np.linalg.norm(m, 1, axis=1, keepdims=True))
    for o in (2, -2, "nuc"):   # through the singular values (cad.linalg.svd)
        close(cad.norm(T(m), o), np.linalg.norm(m, o), rtol=1e-12)
        close(cad.linalg.norm(T(m), o), np.linalg.norm(m, o), rtol=1e-12)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        cad.norm(T(np.ones((2, 2, 2))), 1)
    with pytest.raises(ValueError, match="invalid ord"):
        cad.norm(T(v), "fro")


def test_norm_gradient_at_zero_is_zero():
    x = cad.zeros(3, requires_grad=True)
    (g,) = cad.autograd.grad(cad.norm(x), x)
    close(g, np.zeros(3))
    x = cad.ones(4, requires_grad=True)
    (g,) = cad.autograd.grad(cad.std(x), x)
    close(g, np.zeros(4))


def test_var_std_ddof_against_numpy_and_torch():
    torch = pytest.importorskip("torch")
    a = RNG.standard_normal((4, 5))
    x = T(a)
    ta = torch.tensor(a)
    close(cad.var(x, 1, ddof=1), np.var(a, 1, ddof=1))
    close(cad.var(x, 1, ddof=1), ta.var(1).numpy(), rtol=1e-12)                    # torch: unbiased default
    close(cad.var(x, dim=1, unbiased=True), ta.var(1, unbiased=True).numpy(), rtol=1e-12)
    close(cad.std(x, dim=0, correction=2, keepdim=True), ta.std(0, correction=2, keepdim=True).numpy(), rtol=1e-12)
    close(cad.std(x, dim=0, unbiased=False), ta.std(0, unbiased=False).numpy(), rtol=1e-12)
    close(x.var(), np.var(a))   # numpy's ddof=0 default
    close(x.std(0, ddof=1), np.std(a, 0, ddof=1))
    with pytest.raises(TypeError, match="not several"):
        cad.var(x, ddof=1, unbiased=True)
    # gradients against torch
    xr = cad.tensor(a, requires_grad=True)
    tr = torch.tensor(a, requires_grad=True)
    (g,) = cad.autograd.grad(cad.sum(cad.std(xr, 1, ddof=1) * cad.tensor([1., 2., 3., 4.])), xr)
    (tr.std(1) * torch.tensor([1., 2., 3., 4.], dtype=torch.float64)).sum().backward()
    close(g, tr.grad.numpy(), rtol=1e-10)


def test_sort_and_topk_gradients_against_torch():
    torch = pytest.importorskip("torch")
    a = RNG.standard_normal((3, 6))
    w = RNG.standard_normal((3, 6))
    for desc in (False, True):
        x = cad.tensor(a, requires_grad=True)
        t = torch.tensor(a, requires_grad=True)
        y = cad.sort(x, axis=1, descending=desc)
        tv, ti = torch.sort(t, dim=1, descending=desc)
        close(y, tv.detach().numpy())
        close(cad.argsort(x, 1, descending=desc), ti.numpy())
        (g,) = cad.autograd.grad(cad.sum(y * T(w)), x)
        (tv * torch.tensor(w)).sum().backward()
        close(g, t.grad.numpy())
    for k, dim, largest in ((4, -1, True), (3, 0, False), (2, 1, False)):
        x = cad.tensor(a, requires_grad=True)
        t = torch.tensor(a, requires_grad=True)
        v, i = cad.topk(x, k, dim=dim, largest=largest)
        tv, ti = torch.topk(t, k, dim=dim, largest=largest)
        close(v, tv.detach().numpy())
        close(i, ti.numpy())
        (g,) = cad.autograd.grad(cad.sum(v * cad.sin(v)), x)
        (tv * torch.sin(tv)).sum().backward()
        close(g, t.grad.numpy())
    r = cad.topk(T(a), 2)
    assert r.values.shape == (3, 2) and r.indices.dtype == np.int64


def test_sort_ties_nan_and_descending_stability():
    a = np.array([2.0, np.nan, 1.0, 2.0, -1.0, np.nan])
    close(cad.argsort(T(a)), np.argsort(a, kind="stable"))
    close(cad.sort(T(a)), np.sort(a))
    # descending: NaN first, ties in their original order (torch's stable=True)
    close(cad.argsort(T(a), descending=True), [1, 5, 0, 3, 2, 4])
    close(cad.argsort(T([3, 1, 3, 2]), descending=True, stable=True), [0, 2, 3, 1])
    with pytest.raises(cad.ShapeError, match="0-d"):
        cad.sort(T(1.0))
    close(cad.sort(T(1.0), axis=None), [1.0])
    with pytest.raises(ValueError, match="k=5"):
        cad.topk(T([1.0, 2.0]), 5)


def test_shape_ops_match_numpy():
    for shape in [(), (0,), (3,), (2, 3), (2, 0, 3)]:
        a = RNG.standard_normal(shape)
        x = T(a)
        close(cad.ravel(x), np.ravel(a))
        close(cad.flip(x), np.flip(a))
        close(cad.roll(x, 2), np.roll(a, 2))
        close(cad.tile(x, 2), np.tile(a, 2))
        close(cad.repeat(x, 2), np.repeat(a, 2))
        for f in ("atleast_1d", "atleast_2d", "atleast_3d"):
            close(getattr(cad, f)(x), getattr(np, f)(a))
        close(cad.pad(x, 1), np.pad(a, 1))
        close(cad.kron(x, T([1.0, 2.0])), np.kron(a, [1.0, 2.0]))
        if a.ndim >= 1:
            close(cad.flipud(x), np.flipud(a))
            close(cad.tril(x), np.tril(a))
            close(cad.hstack([x, x]), np.hstack([a, a]))
            close(cad.column_stack([x, x]), np.column_stack([a, a]))
            close(cad.vstack([x, x]), np.vstack([a, a]))
        if a.ndim == 1:
            close(cad.diag(x, 1), np.diag(a, 1))
        if a.ndim == 2:
            close(cad.diag(x), np.diag(a))
            close(cad.rot90(x), np.rot90(a))
            close(cad.fliplr(x), np.fliplr(a))
    r = cad.atleast_2d(T(1.0), T([1.0, 2.0]))
    assert isinstance(r, tuple) and [t.shape for t in r] == [(1, 1), (1, 2)]
    a, b = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((4, 3, 5))
    close(cad.tensordot(T(a), T(b), axes=([1, 2], [1, 0])), np.tensordot(a, b, axes=([1, 2], [1, 0])))
    close(cad.tensordot(T(a[0]), T(b[:, :, 0]), dims=1), np.tensordot(a[0], b[:, :, 0], axes=1))
    close(cad.inner(T(a), T(b[..., 0].T)), np.inner(a, b[..., 0].T))
    # int data keeps its dtype where numpy does
    i = np.arange(6).reshape(2, 3)
    for f in ("ravel", "flip", "fliplr", "flipud", "tril", "triu", "rot90"):
        close(getattr(cad, f)(T(i)), getattr(np, f)(i))
    close(cad.tril(T(i > 2)), np.tril(i > 2))


def test_methods_and_torch_keywords():
    a = RNG.standard_normal((3, 3))
    x = T(a)
    close(x.var(1, ddof=1), np.var(a, 1, ddof=1))
    close(x.std(dim=0, keepdim=True), np.std(a, 0, keepdims=True))
    close(x.norm(p=1, dim=0), np.linalg.norm(a, 1, axis=0))
    close(x.diff(dim=0), np.diff(a, axis=0))
    close(x.argsort(dim=0, descending=True), np.argsort(-a, axis=0, kind="stable"))
    close(x.trace(), np.trace(a))
    close(x.repeat(2, axis=0), a.repeat(2, axis=0))
    close(x.tile((1, 2)), np.tile(a, (1, 2)))
    close(x.roll(shifts=1, dims=0), np.roll(a, 1, 0))
    close(x.flip(dims=(0,)), np.flip(a, 0))
    close(x.fliplr(), np.fliplr(a))
    close(x.flipud(), np.flipud(a))
    close(x.rot90(1, dims=(1, 0)), np.rot90(a, 1, (1, 0)))
    close(x.moveaxis(0, 1), a.T)
    close(x.diagonal(dim1=1, dim2=0, offset=1), np.diagonal(a, 1, 1, 0))
    close(x.diag(-1), np.diag(a, -1))
    close(x.tril(diagonal=-1), np.tril(a, -1))
    close(x.triu(1), np.triu(a, 1))
    close(x.kron(x), np.kron(a, a))
    close(x.inner(x), np.inner(a, a))
    close(x.cross(x[::-1], dim=0), np.cross(a, a[::-1], axis=0))
    close(cad.tensordot(x, x, dims=([1], [0])), a @ a)
    assert not hasattr(x, "sort")   # numpy's sorts in place, torch's returns a pair: no method


def test_split_and_array_split_pieces():
    a = RNG.standard_normal((7, 4))
    x = T(a)
    for ios in (1, 7, [2, 5], [0, 3, 3, 10], [-2], []):
        got, want = cad.array_split(x, ios), np.array_split(a, ios)
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            close(g, w)
    for ios, axis in ((3, 0), (4, -1), ([1, 3], 1)):
        got, want = cad.array_split(x, ios, axis), np.array_split(a, ios, axis)
        assert [g.shape for g in got] == [w.shape for w in want]
        for g, w in zip(got, want):
            close(g, w)
    for g, w in zip(cad.split(x, 2, axis=1), np.split(a, 2, axis=1)):
        close(g, w)
    with pytest.raises(ValueError, match="equal"):
        cad.split(x, 3)
    with pytest.raises(cad.ShapeError):
        cad.split(T(1.0), 1)
    # gradients flow back from every piece
    xr = cad.tensor(a, requires_grad=True)
    parts = cad.array_split(xr, 3)
    loss = sum(cad.sum(p * (k + 1.0)) for k, p in enumerate(parts))
    (g,) = cad.autograd.grad(loss, xr)
    close(g, np.repeat([1.0, 2.0, 3.0], [3, 2, 2])[:, None] * np.ones(4))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric", "wrap"])
def test_pad_modes_match_numpy_and_finite_differences(mode):
    for shape, pw in (((5,), (2, 7)), ((3, 2), ((1, 2), (2, 0))), ((2, 3, 2), 1)):
        a = RNG.standard_normal(shape)
        kw = {"constant_values": ((1.0, -2.0),) * len(shape)} if mode == "constant" else {}
        close(cad.pad(T(a), pw, mode=mode, **kw), np.pad(a, pw, mode=mode, **kw))
        x = cad.tensor(a, requires_grad=True)
        assert gradcheck(lambda t, pw=pw, kw=kw: cad.pad(t, pw, mode=mode, **kw), (x,))
    with pytest.raises(ValueError, match="not supported"):
        cad.pad(T([1.0]), 1, mode="linear_ramp")
    with pytest.raises(ValueError, match="empty axis"):
        cad.pad(cad.zeros(0), 1, mode="edge")
    with pytest.raises(ValueError, match="does not fit"):
        cad.pad(cad.zeros(2, 2), ((1, 1), (1, 1), (1, 1)))


def test_linspace_differentiable_in_its_endpoints():
    close(cad.linspace(T(1.0), 3.0, 5), np.linspace(1.0, 3.0, 5))
    close(cad.linspace(0.5, T(2.0), 4, endpoint=False), np.linspace(0.5, 2.0, 4, endpoint=False))
    s, e = np.array([0.0, 1.0]), np.array([1.0, -2.0])
    close(cad.linspace(T(s), T(e), 6), np.linspace(s, e, 6))
    close(cad.linspace(T(1.0), 2.0, 1), np.linspace(1.0, 2.0, 1))
    close(cad.linspace(T(1.0), 2.0, 0), np.linspace(1.0, 2.0, 0))
    a = cad.tensor(0.3, requires_grad=True)
    b = cad.tensor(2.0, requires_grad=True)
    assert gradcheck(lambda a, b: cad.linspace(a, b, 7), (a, b))
    ga, gb = cad.autograd.grad(cad.sum(cad.linspace(a, b, 5)), (a, b))
    close(ga, 2.5)
    close(gb, 2.5)
    assert cad.linspace(T(np.float32(1.0)), 2.0, 3).dtype == np.float32
    close(cad.linspace(0.0, 1.0, 3), np.linspace(0.0, 1.0, 3))   # numbers: as before


def test_where_one_argument_is_nonzero():
    a = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    for got in (cad.where(T(a)), cad.nonzero(T(a)), cad.where(cad.ne(T(a), 0))):
        want = np.nonzero(a)
        assert isinstance(got, tuple) and len(got) == 2
        for g, w in zip(got, want):
            close(g, w)
            assert g.dtype == np.int64
    with pytest.raises(ValueError, match="0-d"):
        cad.nonzero(T(1.0))
    close(cad.where(T(a) > 0, T(a), -1.0), np.where(a > 0, a, -1.0))   # three arguments: as before


def test_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match="diff.*0-d"):
        cad.diff(T(1.0))
    with pytest.raises(ValueError, match="repeat: 2 repeats"):
        cad.repeat(T([1.0, 2.0, 3.0]), [1, 2])
    with pytest.raises(ValueError, match="cross: needs 3-vectors.*\\(2,\\)"):
        cad.cross(T([1.0, 2.0]), T([3.0, 4.0]))
    with pytest.raises(cad.ShapeError, match="tensordot.*\\(2, 3\\)"):
        cad.tensordot(T(np.ones((2, 3))), T(np.ones((2, 3))), axes=1)
    with pytest.raises(ValueError, match="diag: needs a 1-D or 2-D"):
        cad.diag(T(np.ones((2, 2, 2))))
    with pytest.raises(ValueError, match="rot90"):
        cad.rot90(T(np.ones((2, 2))), axes=(0, 0))
    with pytest.raises(ValueError, match="moveaxis"):
        cad.moveaxis(T(np.ones((2, 2))), (0, 1), 0)
    with pytest.raises(ValueError, match="diagonal"):
        cad.diagonal(T([1.0]))
    with pytest.raises(cad.ShapeError, match="inner"):
        cad.inner(T(np.ones(2)), T(np.ones(3)))


# ------------------------------------------------------------------ vmap against a loop

VMAPPED = [
    ("var", lambda x: cad.var(x, axis=-1, ddof=1)),
    ("std", lambda x: cad.std(x)),
    ("norm", lambda x: cad.norm(x, ord=1, axis=(0, 1))),
    ("norm_vec", lambda x: cad.norm(x, axis=0)),
    ("diff", lambda x: cad.diff(x, 2, axis=1, prepend=0.5)),
    ("sort", lambda x: cad.sort(x, axis=0, descending=True)),
    ("topk", lambda x: cad.topk(x, 2, dim=1)[0]),
    ("topk_idx", lambda x: cad.topk(x, 2, dim=0, largest=False).indices),
    ("argsort", lambda x: cad.argsort(x, axis=None)),
    ("pad", lambda x: cad.pad(x, ((1, 2), (0, 1)), mode="symmetric")),
    ("pad_c", lambda x: cad.pad(x, 1, constant_values=2.0)),
    ("diag", lambda x: cad.diag(x[0], -1)),
    ("diagonal", lambda x: cad.diagonal(x, 1)),
    ("trace", lambda x: cad.trace(x)),
    ("tril", lambda x: cad.tril(x, 1)),
    ("kron", lambda x: cad.kron(x, x[:2, :1])),
    ("tensordot", lambda x: cad.tensordot(x, x, axes=([0], [0]))),
    ("cross", lambda x: cad.cross(x[:3], x[1:4], axis=0)),
    ("roll", lambda x: cad.roll(x, 1)),
    ("rot90", lambda x: cad.rot90(x, 1)),
    ("repeat", lambda x: cad.repeat(x, [2, 0, 1], axis=1)),
    ("tile", lambda x: cad.tile(x, (2, 1))),
    ("split", lambda x: cad.array_split(x, 3, axis=0)[1]),
    ("hstack", lambda x: cad.hstack([x, cad.ones(4, 1)])),
    ("linspace", lambda x: cad.linspace(x[0, 0], x[1], 4)),
    ("any", lambda x: cad.any(x > 0.5, axis=1)),
    ("methods", lambda x: x.flip(0).ravel().var()),
]


@pytest.mark.parametrize("name,f", VMAPPED, ids=[n for n, _ in VMAPPED])
def test_vmap_matches_a_loop(name, f):
    X = RNG.uniform(-1, 1, (3, 4, 3))
    got = cad.vmap(f)(T(X))
    want = np.stack([A(f(T(X[b]))) for b in range(3)])
    close(got, want, rtol=1e-12)
    # batched at the last axis (a non-contiguous batch)
    got = cad.vmap(f, in_dims=-1)(T(np.moveaxis(X, 0, -1)))
    close(got, want, rtol=1e-12)


def test_vmap_of_grad_through_sort_and_norm():
    X = RNG.standard_normal((3, 5))
    f = lambda x: cad.sum(cad.sort(x)[-2:]) + cad.norm(x) ** 2
    got = cad.vmap(cad.grad(f))(T(X))
    want = np.stack([A(cad.grad(f)(T(X[b]))) for b in range(3)])
    close(got, want, rtol=1e-12)


def test_nested_vmap_and_pytree_outputs():
    X = RNG.standard_normal((2, 3, 4))
    close(cad.vmap(cad.vmap(lambda x: cad.var(x, ddof=1)))(T(X)), np.var(X, axis=-1, ddof=1))
    got = cad.vmap(cad.vmap(lambda x: cad.sort(x, descending=True)), in_dims=1)(T(X))
    close(got, -np.sort(-np.moveaxis(X, 1, 0), -1))
    close(cad.vmap(cad.vmap(lambda x: cad.pad(x, (1, 2), mode="edge")))(T(X)), np.pad(X, ((0, 0), (0, 0), (1, 2)), mode="edge"))
    r = cad.vmap(lambda x: cad.topk(x, 2))(T(X[0]))          # a namedtuple out of vmap
    assert type(r).__name__ == "topk"
    close(r.indices, np.argsort(-X[0], axis=1, kind="stable")[:, :2])
    parts = cad.vmap(lambda x: cad.split(x, [1, 3]))(T(X[0]))  # a list out of vmap
    for p, w in zip(parts, np.split(X[0], [1, 3], axis=1)):
        close(p, w)


def test_vmap_nonzero_refuses_clearly():
    with pytest.raises(ValueError, match="nonzero of a batched value"):
        cad.vmap(lambda x: cad.nonzero(x)[0])(cad.ones(2, 3))


# ------------------------------------------------------------------ second derivatives

def test_jvp_of_jvp_and_grad_of_grad_of_norm_and_var():
    a = RNG.standard_normal((3, 4))
    u, v = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))

    def F(x):   # numpy: sum of the row norms plus the column variances (ddof=1)
        return float(np.sum(np.linalg.norm(x, axis=1)) + np.sum(np.var(x, axis=0, ddof=1) ** 1.5))

    def f(x):
        return cad.sum(cad.norm(x, axis=1)) + cad.sum(cad.var(x, axis=0, ddof=1) ** 1.5)

    # grad of grad: the Hessian-vector product against differences of the numerical gradient
    hv = cad.grad(lambda x: cad.sum(cad.grad(f)(x) * T(v)))(T(a))
    want = (fd_grad(F, a + 1e-4 * v, 1e-5) - fd_grad(F, a - 1e-4 * v, 1e-5)) / 2e-4
    close(hv, want, rtol=1e-4, atol=1e-5)
    # jvp of jvp: u^T H v
    d2 = cad.jvp(lambda x: cad.jvp(f, (x,), (T(u),))[1], (T(a),), (T(v),))[1]
    close(d2, np.sum(want * u), rtol=1e-4, atol=1e-5)
    # and the generic checkers, every mode pair
    x = cad.tensor(a, requires_grad=True)
    assert gradgradcheck(lambda t: cad.std(t, 0, ddof=1) * cad.norm(t, ord=3, axis=0), (x,))
    assert gradcheck(lambda t: cad.norm(t, "fro") * cad.var(t), (x,), modes=("fwd", "rev"), order=2)


def test_hessians_against_torch_func():
    torch = pytest.importorskip("torch")
    from torch.func import hessian
    a = RNG.standard_normal(4)
    for f, g in ((lambda x: cad.norm(x, ord=3), lambda x: torch.linalg.vector_norm(x, ord=3)),
                 (lambda x: cad.std(x, ddof=1) * cad.sum(cad.sort(x)[:2]),
                  lambda x: x.std() * torch.sort(x).values[:2].sum()),
                 (lambda x: cad.sum(cad.topk(x, 2).values ** 3), lambda x: (torch.topk(x, 2).values ** 3).sum()),
                 (lambda x: cad.sum(cad.pad(x, 2, mode="symmetric") ** 3 * cad.linspace(0.0, 1.0, 8)),
                  lambda x: (torch.cat([x[:2].flip(0), x, x[-2:].flip(0)]) ** 3 * torch.linspace(0, 1, 8,
                            dtype=torch.float64)).sum())):
        close(cad.hessian(f)(T(a)), hessian(g)(torch.tensor(a)).numpy(), rtol=1e-10, atol=1e-12)


def test_jacobian_of_sort_topk_and_pad():
    a = RNG.standard_normal(5)
    for f, F in ((lambda x: cad.sort(x), np.sort),
                 (lambda x: cad.topk(x, 3).values, lambda x: -np.sort(-x)[:3]),
                 (lambda x: cad.pad(x, (2, 3), mode="wrap"), lambda x: np.pad(x, (2, 3), mode="wrap"))):
        close(cad.jacrev(f)(T(a)), fd_jac(F, a), rtol=1e-6, atol=1e-8)
        close(cad.jacfwd(f)(T(a)), fd_jac(F, a), rtol=1e-6, atol=1e-8)


def test_recorded_tape_replays_composites():
    """sort's indices are computed from x read into Python: a guard on x, so a replay
    on other data raises (retrace=True records again) instead of reusing them"""
    f = lambda x: cad.sum(cad.pad(cad.sort(x, axis=1), 1, mode="reflect") * 2.0) + cad.norm(cad.diff(x))
    a = RNG.standard_normal((3, 4))
    tape = cad.record(f, T(a))
    close(tape(T(a)), A(f(T(a))), rtol=1e-12)
    (g,) = tape.grad(T(a))
    close(g, A(cad.grad(f)(T(a))), rtol=1e-12)
    b = RNG.standard_normal((3, 4))
    with pytest.raises(cad.ReplayError):
        tape(T(b))
    tape = cad.record(f, T(a), retrace=True)
    close(tape(T(b)), A(f(T(b))), rtol=1e-12)
    # argmax too (its indices were reused silently before)
    tape = cad.record(lambda x: x[cad.argmax(x)] * 1.0, T([1.0, 3.0, 2.0]))
    with pytest.raises(cad.ReplayError):
        tape(T([5.0, 1.0, 2.0]))
