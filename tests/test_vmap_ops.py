"""cad.vmap against a Python loop, generated from the op table: every op with a user
function and cases, every case, batch size 3 (the case's inputs built three times
with different seeds and stacked), under several in_dims: 0, -1 (the batch axis
last: a non-contiguous view once moved to the front), None for one operand (an
unbatched operand broadcast against batched ones), integer/bool/float data inputs
batched too (different per example), and float32.  Then the table's completeness
(every op has a batching rule), getitem/setitem under vmap against numpy per
example, methods of batched values, 0-d examples, empty batches, broadcasting and
non-contiguous inputs."""
import numpy as np
import pytest

import cad
from cad.ops import REGISTRY

B = 3   # the batch size


# ------------------------------------------------------------------ the cases
# tests/ops/test_rules.py's build(op, case, seed), copied and split so that each
# positional input can be batched (or not) on its own: a "slot" per input.

def _domain(op, k):
    d = op.domain
    if isinstance(d[0], tuple):
        return d[k] if k < len(d) else d[-1]
    return d


def _spec(spec):
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        return spec
    return "A", spec


LEAF = ("A", "T", "S", "V")   # float inputs (tensors of the case)
DATA = ("I", "B", "F")        # integer / bool / float data (fixed in the case)


def slots(op, case, seed):
    """per positional input: (kind, value) with value a numpy array (leaves and
    data) or the Python constant; seed 0 gives the case's own data, other seeds a
    permutation of it (valid indices/labels stay valid) and new uniform leaves"""
    rng = np.random.default_rng(seed)
    out = []
    for k, spec in enumerate(case.inputs):
        kind, val = _spec(spec)
        lo, hi = _domain(op, k)
        if kind in ("A", "T", "S"):
            shape = tuple(val)
            if kind == "S":
                shape = (2 * shape[0],) + shape[1:]
            out.append((kind, rng.uniform(lo, hi, size=shape)))
        elif kind in ("V",) + DATA:
            a = np.array(val)
            if seed and a.size > 1:
                a = rng.permutation(a.reshape(-1)).reshape(a.shape)
            out.append((kind, a))
        elif kind == "C":
            out.append((kind, val))
        else:
            raise ValueError(kind)
    return out


def as_input(kind, a, dtype=None):
    """a numpy value of a slot as the op's argument (T: a non-contiguous tensor)"""
    if kind == "C":
        return a
    if dtype is not None and kind in LEAF:
        a = a.astype(dtype)
    if kind == "T" and a.ndim > 1:
        t = cad.tensor(np.ascontiguousarray(a.T)).T
        assert not np.asarray(t).flags.c_contiguous
        return t
    return cad.tensor(a)


def call(op, case, kinds, xs):
    """the op on the inputs xs (tensors, Batched values or constants); an S input
    is the strided view x[::2] of its value, taken here (inside vmap: getitem)"""
    xs = [x[::2] if k == "S" else x for k, x in zip(kinds, xs)]
    if op.seq:
        return op.api(xs, **case.kwargs)
    return op.api(*xs, **case.kwargs)


def batched_input(kind, arrs, axis, dtype=None):
    """the examples' values stacked at axis (non-contiguous when axis is not 0;
    T inputs keep a transposed layout in the example axes)"""
    if dtype is not None and kind in LEAF:
        arrs = [a.astype(dtype) for a in arrs]
    st = np.stack(arrs, axis=0)
    if kind == "T" and st.ndim > 2:   # example axes in reversed memory order
        perm = (0,) + tuple(range(st.ndim - 1, 0, -1))
        st = np.ascontiguousarray(st.transpose(perm)).transpose(perm)
    st = np.moveaxis(st, 0, axis)
    return cad.tensor(st)


def user_ops():
    return [op for op in REGISTRY.values() if op.api is not None and op.cases]


def _internal(op):
    return getattr(op.batch_rule, "internal", None) is not None


CASES = [(op, c) for op in user_ops() for c in op.cases if not _internal(op)]
INTERNAL_CASES = [(op, c) for op in user_ops() for c in op.cases if _internal(op)]


def _id(p):
    op, c = p
    return f"{op.name}[{c!r}]"


# the variants: how each input is given to vmap
#   "0": every float input batched at axis 0, data inputs as in the case (unbatched)
#   "-1": every float input batched at the last axis (in_dims=-1)
#   "none<k>": float input k unbatched (one value for the batch), the others at 0
#   "data": float inputs and data inputs (indices, labels, masks, bounds) batched at 0
#   "data_only": only the data inputs batched
#   "f32": as "0" in float32
def variants(op, case):
    kinds = [_spec(s)[0] for s in case.inputs]
    leaves = [i for i, k in enumerate(kinds) if k in LEAF]
    data = [i for i, k in enumerate(kinds) if k in DATA]
    vs = []
    if leaves:
        vs += ["0", "-1"]
        if len(leaves) >= 2:
            vs += [f"none{i}" for i in leaves]
        vs.append("f32")
    if data:
        if leaves:
            vs.append("data")
        vs.append("data_only")
    return vs


GEN = [(op, c, v) for op, c in CASES for v in variants(op, c)]


def _run_variant(op, case, variant):
    kinds = [_spec(s)[0] for s in case.inputs]
    ex = [slots(op, case, seed) for seed in range(B)]
    dtype = np.float32 if variant == "f32" else None
    axis = -1 if variant == "-1" else 0
    batched = []   # per input: is it mapped
    for i, k in enumerate(kinds):
        if k in LEAF:
            batched.append(not (variant == f"none{i}" or variant == "data_only"))
        elif k in DATA:
            batched.append(variant in ("data", "data_only"))
        else:
            batched.append(False)
    # the loop over the batch: the op on each example (unbatched inputs: example 0's)
    per = []
    for b in range(B):
        xs = [as_input(k, ex[b if m else 0][i][1], dtype) for i, (k, m) in enumerate(zip(kinds, batched))]
        per.append(np.asarray(call(op, case, kinds, xs)))
    want = np.stack(per)
    # vmap
    args, dims = [], []
    for i, (k, m) in enumerate(zip(kinds, batched)):
        if m:
            a = batched_input(k, [ex[b][i][1] for b in range(B)], axis if k in LEAF else 0, dtype)
            args.append(a)
            dims.append(axis if k in LEAF else 0)
        else:
            args.append(as_input(k, ex[0][i][1], dtype))
            dims.append(None)
    got = cad.vmap(lambda *xs: call(op, case, kinds, xs), in_dims=tuple(dims))(*args)
    return got, want


def _check(got, want, dtype32):
    assert isinstance(got, cad.Tensor)
    g = np.asarray(got)
    assert g.shape == want.shape, (g.shape, want.shape)
    assert g.dtype == want.dtype, (g.dtype, want.dtype)
    if want.dtype.kind in "biu":
        np.testing.assert_array_equal(g, want)
    elif dtype32 and want.dtype == np.float32:
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-13)


KNOWN = {
    # op name (or (op name, variant)): "BUG: ..." -- an xfail(strict) mark on its generated tests.
    # Empty: getitem's rule with idx by keyword, setitem's rule (argument order) and expand's rule
    # (shape=) were bugs found by this suite and are fixed.
}


def _mark(op, case, variant):
    reason = KNOWN.get((op.name, variant)) or KNOWN.get(op.name)
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


@pytest.mark.parametrize("op,case,variant", [pytest.param(op, c, v, marks=_mark(op, c, v))
                                             for op, c, v in GEN],
                         ids=[f"{_id((op, c))}-{v}" for op, c, v in GEN])
def test_vmap_matches_loop(op, case, variant):
    try:
        got, want = _run_variant(op, case, variant)
    except Exception as e:
        if op.name in KNOWN:   # the known bug: a short traceback (pytest formats the long ones of
            raise e.with_traceback(None)   # ~70 expected failures slowly); others keep theirs
        raise
    _check(got, want, variant == "f32")


@pytest.mark.parametrize("op,case", INTERNAL_CASES, ids=[_id(p) for p in INTERNAL_CASES])
def test_internal_ops_refuse_clearly(op, case):
    """unview and scatter (vjp helpers, not exported) have internal rules: a batched
    call is refused with a message that names the op and what batches it"""
    kinds = [_spec(s)[0] for s in case.inputs]
    ex = [slots(op, case, seed) for seed in range(B)]
    args = [batched_input(k, [e[i][1] for e in ex], 0) if k in LEAF else as_input(k, ex[0][i][1])
            for i, k in enumerate(kinds)]
    dims = tuple(0 if k in LEAF else None for k in kinds)
    with pytest.raises(TypeError, match=rf"{op.name} is internal"):
        cad.vmap(lambda *xs: call(op, case, kinds, xs), in_dims=dims)(*args)


def test_generated_suite_covers_every_user_op():
    names = {op.name for op, _, _ in GEN} | {op.name for op, _ in INTERNAL_CASES}
    assert names == {op.name for op in user_ops()}
    assert len(GEN) > 400


# ------------------------------------------------------------------ completeness of the table

def test_every_op_has_a_batching_rule():
    allowed_internal = ("view", "unview", "gather", "scatter", "cast", "xent", "to_device", "setitem")
    for op in REGISTRY.values():
        assert callable(op.batch_rule), f"op {op.name} has no batch_rule"
        if _internal(op):
            assert op.api is None or op.kind in allowed_internal or op.name in allowed_internal, \
                f"op {op.name} (kind {op.kind}) has a user function but only an internal rule"
            assert isinstance(op.batch_rule.internal, str) and op.batch_rule.internal


def test_every_exported_op_dispatches_on_a_batched_argument():
    """every exported op with a user function is reached by a Batched argument (its
    rule runs, not the plain function on a wrapper object)"""
    X = cad.tensor(np.random.default_rng(0).uniform(0.5, 1.5, (B, 4)))
    for name in ("exp", "sum", "cumsum", "softmax", "argmax", "flatten", "astype"):
        op = REGISTRY[name]
        args = (np.float32,) if name == "astype" else ()
        got = cad.vmap(lambda x: op.api(x, *args))(X)
        want = np.stack([np.asarray(op.api(X[b], *args)) for b in range(B)])
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


# ------------------------------------------------------------------ integer inputs batched

def test_take_along_axis_with_batched_indices():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((B, 2, 3))
    I = rng.integers(0, 3, size=(B, 2, 4))
    got = cad.vmap(lambda x, i: cad.take_along_axis(x, i, 1))(cad.tensor(X), cad.tensor(I))
    want = np.stack([np.take_along_axis(X[b], I[b], 1) for b in range(B)])
    np.testing.assert_array_equal(np.asarray(got), want)
    # indices batched, x not
    got = cad.vmap(lambda i: cad.take_along_axis(cad.tensor(X[0]), i, 1))(cad.tensor(I))
    want = np.stack([np.take_along_axis(X[0], I[b], 1) for b in range(B)])
    np.testing.assert_array_equal(np.asarray(got), want)
    # axis None: flat
    I1 = rng.integers(0, 6, size=(B, 5))
    got = cad.vmap(lambda x, i: cad.take_along_axis(x, i, None))(cad.tensor(X), cad.tensor(I1))
    want = np.stack([np.take_along_axis(X[b], I1[b], None) for b in range(B)])
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_batched_labels(reduction):
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((B, 4, 5))
    L = rng.integers(0, 5, size=(B, 4))
    got = cad.vmap(lambda z, y: cad.cross_entropy(z, y, reduction=reduction))(cad.tensor(Z), cad.tensor(L))
    want = np.stack([np.asarray(cad.cross_entropy(cad.tensor(Z[b]), cad.tensor(L[b]), reduction=reduction))
                     for b in range(B)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
    # one label per example for one row of logits (0-d label)
    got = cad.vmap(lambda z, y: cad.cross_entropy(z, y))(cad.tensor(Z[:, 0]), cad.tensor(L[:, 0]))
    want = np.stack([np.asarray(cad.cross_entropy(cad.tensor(Z[b, 0]), cad.tensor(L[b, 0])))
                     for b in range(B)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def test_where_with_batched_condition_and_gradient():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((B, 4))
    M = rng.standard_normal((B, 4)) > 0
    f = lambda m, x: cad.sum(cad.where(m, x * x, -x))
    got = cad.vmap(f)(cad.tensor(M), cad.tensor(X))
    np.testing.assert_allclose(np.asarray(got), np.where(M, X * X, -X).sum(1), rtol=1e-12)
    g = cad.vmap(cad.grad(f, argnums=1))(cad.tensor(M), cad.tensor(X))
    np.testing.assert_allclose(np.asarray(g), np.where(M, 2 * X, -1.0), rtol=1e-12)


# ------------------------------------------------------------------ shapes: 0-d, empty, broadcasting, layout

def test_zero_d_examples():
    x = cad.tensor([1.0, 2.0, 3.0])
    r = cad.vmap(lambda v: v * v + cad.sin(v))(x)
    np.testing.assert_allclose(np.asarray(r), [1 + np.sin(1), 4 + np.sin(2), 9 + np.sin(3)], rtol=1e-14)
    shapes = []
    cad.vmap(lambda v: shapes.append((v.shape, v.ndim)) or v)(x)
    assert shapes == [((), 0)]
    # 0-d example reduced, reshaped, stacked
    r = cad.vmap(lambda v: cad.stack([v, v * 2]).reshape(1, 2).sum(0))(x)
    assert r.shape == (3, 2)
    np.testing.assert_allclose(np.asarray(r), np.stack([[1, 2], [2, 4], [3, 6]]))


def test_empty_examples_and_empty_batch():
    # examples of size 0
    r = cad.vmap(lambda v: cad.exp(v).sum(0))(cad.zeros(3, 0, 2))
    assert r.shape == (3, 2) and np.all(np.asarray(r) == 0)
    # a batch of size 0: the result has a size-0 batch axis and the example shape
    for f, eshape in ((lambda v: v * 2.0, (4,)), (lambda v: v.sum(), ()),
                      (lambda v: v @ cad.ones(4, 2), (2,)), (lambda v: v.reshape(2, 2).T, (2, 2))):
        r = cad.vmap(f)(cad.zeros(0, 4))
        assert isinstance(r, cad.Tensor)
        assert r.shape == (0,) + eshape


def test_empty_batch_with_out_dims_and_grad():
    r = cad.vmap(lambda v: v.reshape(2, 2), out_dims=1)(cad.zeros(0, 4))
    assert r.shape == (2, 0, 2)
    g = cad.vmap(cad.grad(lambda v: (v * v).sum()))(cad.zeros(0, 4))
    assert g.shape == (0, 4)


def test_broadcasting_batched_against_unbatched():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((B, 2, 3))
    for w in (rng.standard_normal(3), rng.standard_normal((2, 1)), rng.standard_normal((4, 2, 3)), 2.5,
              np.float64(1.5)):
        wt = cad.tensor(w) if isinstance(w, np.ndarray) else w
        got = cad.vmap(lambda x: x * wt + x)(cad.tensor(X))
        want = np.stack([X[b] * np.asarray(w) + X[b] for b in range(B)])
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14)
        got = cad.vmap(lambda x, v: v - x, in_dims=(0, None))(cad.tensor(X), wt)
        want = np.stack([np.asarray(w) - X[b] for b in range(B)])
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14)
    # an example of lower rank than the unbatched operand: its batch axis stays in front
    v = rng.standard_normal(3)
    M = rng.standard_normal((2, 3))
    got = cad.vmap(lambda a: a + cad.tensor(M))(cad.tensor(np.stack([v, 2 * v, 3 * v])))
    want = np.stack([k * v + M for k in (1, 2, 3)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14)
    # two batched operands of different example ranks
    got = cad.vmap(lambda a, b: a * b)(cad.tensor(X), cad.tensor(X[:, 0, :]))
    want = np.stack([X[b] * X[b, 0] for b in range(B)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14)


def test_non_contiguous_inputs():
    rng = np.random.default_rng(9)
    A = rng.standard_normal((4, 3))
    At = cad.tensor(A).T                  # (3, 4), non-contiguous
    assert not np.asarray(At).flags.c_contiguous
    # in_dims=1 on a transposed tensor: example b is column b of At = row b of A
    got = cad.vmap(lambda v: cad.cumsum(v * v, 0), in_dims=1)(At)
    want = np.stack([np.cumsum(A[b] ** 2) for b in range(4)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14)
    got = cad.vmap(lambda v: v @ cad.tensor(A[0]), in_dims=1)(cad.tensor(A.T.copy()))
    np.testing.assert_allclose(np.asarray(got), A @ A[0], rtol=1e-13)
    # strided (every other row) and a transposed 3-d batch
    S = cad.tensor(rng.standard_normal((8, 3)))[::2]
    got = cad.vmap(lambda v: cad.softmax(v, 0))(S)
    Sn = np.asarray(S)
    e = np.exp(Sn - Sn.max(1, keepdims=True))
    np.testing.assert_allclose(np.asarray(got), e / e.sum(1, keepdims=True), rtol=1e-13)
    X = rng.standard_normal((2, 3, 4))
    Xt = cad.tensor(X).transpose(2, 1, 0)   # (4, 3, 2)
    got = cad.vmap(lambda m: m @ m.T, in_dims=2)(Xt)
    want = np.stack([X[b].T @ X[b] for b in range(2)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-13)


# ------------------------------------------------------------------ getitem under vmap

X3 = np.random.default_rng(10).standard_normal((B, 4, 5, 3))

GETITEM = [
    ("int", 1),
    ("neg_int", -1),
    ("slice", slice(1, 3)),
    ("neg_step", slice(None, None, -2)),
    ("tuple_slices", (slice(None), slice(1, 4, 2))),
    ("int_slice", (2, slice(None, 3))),
    ("none", None),
    ("none_mid", (slice(None), None, 1)),
    ("ellipsis", (Ellipsis, 1)),
    ("ellipsis_none", (0, Ellipsis, None)),
    ("empty_tuple", ()),
    ("int_array", np.array([3, 0, 0, 2])),
    ("int_array_2d", np.array([[1, 2], [3, 0]])),
    ("int_list", [1, 1, 0]),
    ("bool_mask_axis0", np.array([True, False, True, True])),
    ("bool_mask_2d", np.random.default_rng(11).standard_normal((4, 5)) > 0),
    ("slice_then_array", (slice(None), np.array([4, 0, 2]))),
    ("adjacent_arrays", (np.array([0, 3]), np.array([1, 4]))),
    ("adjacent_arrays_after_slice", (slice(None), np.array([0, 3]), np.array([1, 2]))),
    ("nonadjacent_arrays", (np.array([0, 3]), slice(None), np.array([1, 2]))),
    ("nonadjacent_int_array", (1, slice(None), np.array([2, 0]))),
    ("array_with_int_adjacent", (np.array([0, 3, 2]), 4)),
    ("array_none_array", (np.array([0, 1]), None, np.array([1, 2]))),
    ("ellipsis_array", (Ellipsis, np.array([2, 0]))),
    ("slice_to_empty", slice(2, 2)),
]


@pytest.mark.parametrize("name,idx", GETITEM, ids=[g[0] for g in GETITEM])
def test_getitem_unbatched_index(name, idx):
    got = cad.vmap(lambda x: x[idx])(cad.tensor(X3))
    want = np.stack([X3[b][idx] for b in range(B)])
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("name,idx", GETITEM, ids=[g[0] for g in GETITEM])
def test_getitem_gradient_under_vmap(name, idx):
    """per-example gradients through the batched gather (scatter-add of ones)"""
    g = cad.vmap(cad.grad(lambda x: x[idx].sum()))(cad.tensor(X3))
    want = np.zeros_like(X3)
    for b in range(B):
        np.add.at(want[b], idx, 1.0)
    np.testing.assert_array_equal(np.asarray(g), want)


def test_getitem_batched_integer_index():
    X = np.random.default_rng(12).standard_normal((B, 5, 2))
    # a 0-d batched index: one row per example
    I = np.array([4, 0, 2])
    got = cad.vmap(lambda x, i: x[i])(cad.tensor(X), cad.tensor(I))
    np.testing.assert_array_equal(np.asarray(got), np.stack([X[b][I[b]] for b in range(B)]))
    # an index array per example
    I2 = np.array([[1, 1, 3], [0, 4, 2], [2, 2, 2]])
    got = cad.vmap(lambda x, i: x[i])(cad.tensor(X), cad.tensor(I2))
    np.testing.assert_array_equal(np.asarray(got), np.stack([X[b][I2[b]] for b in range(B)]))


# found by this suite (fixed): a plain tensor indexed by a batched index
def test_getitem_batched_index_into_unbatched_tensor():
    X = np.random.default_rng(12).standard_normal((5, 2))
    I2 = np.array([[1, 1, 3], [0, 4, 2], [2, 2, 2]])
    x = cad.tensor(X)
    got = cad.vmap(lambda i: x[i])(cad.tensor(I2))
    np.testing.assert_array_equal(np.asarray(got), np.stack([X[I2[b]] for b in range(B)]))
    got = cad.vmap(lambda i: x[i, 1])(cad.tensor(I2))
    np.testing.assert_array_equal(np.asarray(got), np.stack([X[I2[b], 1] for b in range(B)]))


def test_getitem_batched_index_after_a_slice():
    X = np.random.default_rng(13).standard_normal((B, 4, 6))
    I = np.array([[5, 0], [1, 1], [3, 2]])
    got = cad.vmap(lambda x, i: x[:, i])(cad.tensor(X), cad.tensor(I))
    want = np.stack([X[b][:, I[b]] for b in range(B)])
    assert got.shape == want.shape == (B, 4, 2)
    np.testing.assert_array_equal(np.asarray(got), want)
    # batched index with an unbatched one, non-adjacent (numpy moves them to the front)
    J = np.array([0, 3])
    X4 = np.random.default_rng(14).standard_normal((B, 4, 3, 6))
    got = cad.vmap(lambda x, i: x[J, :, i])(cad.tensor(X4), cad.tensor(I))
    want = np.stack([X4[b][J, :, I[b]] for b in range(B)])
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got), want)
    # adjacent after a slice: x[:, i, j] with i batched
    got = cad.vmap(lambda x, i: x[:, J[:1], i])(cad.tensor(X4.transpose(0, 2, 1, 3).copy()), cad.tensor(I))
    Xs = X4.transpose(0, 2, 1, 3)
    want = np.stack([Xs[b][:, J[:1], I[b]] for b in range(B)])
    np.testing.assert_array_equal(np.asarray(got), want)


def test_getitem_batched_index_gradient():
    X = np.random.default_rng(15).standard_normal((B, 5))
    I = np.array([[1, 1], [0, 4], [2, 3]])
    g = cad.vmap(cad.grad(lambda x, i: (x[i] ** 2).sum()))(cad.tensor(X), cad.tensor(I))
    want = np.zeros_like(X)
    for b in range(B):
        np.add.at(want[b], I[b], 2 * X[b][I[b]])
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-14)


def test_getitem_batched_bool_mask_is_refused_clearly():
    X = cad.tensor(np.ones((B, 3)))
    M = cad.tensor(np.array([[True, False, True]] * B))
    with pytest.raises(ValueError, match="batched boolean mask"):
        cad.vmap(lambda x, m: x[m])(X, M)


# ------------------------------------------------------------------ setitem under vmap

SETS = [
    ("int", 1, (3,)),
    ("slice", slice(1, 3), (2, 3)),
    ("col", (slice(None), 2), (4,)),
    ("int_array", np.array([0, 3]), (2, 3)),
    ("bool_mask", np.array([True, False, False, True]), (2, 3)),
    ("scalar_bcast", (slice(None), 0), ()),
    ("row_bcast", slice(0, 2), (3,)),
]


@pytest.mark.parametrize("name,idx,vshape", SETS, ids=[s[0] for s in SETS])
@pytest.mark.parametrize("vbatched", [False, True], ids=["v_unbatched", "v_batched"])
def test_setitem_under_vmap(name, idx, vshape, vbatched):
    rng = np.random.default_rng(16)
    X = rng.standard_normal((B, 4, 3))
    V = rng.standard_normal((B,) + vshape)

    def f(x, v):
        x = x.clone()
        x[idx] = v
        return x * 2.0
    if vbatched:
        got = cad.vmap(f)(cad.tensor(X), cad.tensor(V))
    else:
        got = cad.vmap(f, in_dims=(0, None))(cad.tensor(X), cad.tensor(V[0]))
    want = []
    for b in range(B):
        x = X[b].copy()
        x[idx] = V[b] if vbatched else V[0]
        want.append(2 * x)
    np.testing.assert_array_equal(np.asarray(got), np.stack(want))


def test_setitem_gradient_under_vmap():
    rng = np.random.default_rng(17)
    X, V = rng.standard_normal((B, 4)), rng.standard_normal((B, 2))

    def f(x, v):
        x = x * 1.0
        x[1:3] = v * v
        return (x * x).sum()
    gx, gv = cad.vmap(cad.grad(f, argnums=(0, 1)))(cad.tensor(X), cad.tensor(V))
    wx = 2 * X
    wx[:, 1:3] = 0
    np.testing.assert_allclose(np.asarray(gx), wx, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(gv), 4 * V ** 3, rtol=1e-14)


def test_setitem_batched_index():
    X = np.zeros((B, 5))
    I = np.array([0, 4, 2])

    def f(x, i):
        x = x.clone()
        x[i] = 1.0
        return x
    got = cad.vmap(f)(cad.tensor(X), cad.tensor(I))
    np.testing.assert_array_equal(np.asarray(got), np.eye(5)[I])


# advanced indices that numpy places first (separated by a slice), or that the batch's
# own index separates from the front: a batched v is written in numpy's per-example order
MOVED = [
    ("split_ij", lambda i, j: (i, slice(None), j), (2, 4)),          # (3, 4, 5)[i, :, j] -> (2, 4)
    ("after_slice", lambda i, j: (slice(None), i), (3, 2, 5)),      # adjacent, not in front
    ("after_slice_pair", lambda i, j: (slice(1, 3), i, j), (2, 2)),
    ("split_bcast_v", lambda i, j: (i, slice(None), j), (4,)),      # v broadcast over the adv dims
]


@pytest.mark.parametrize("name,mk,vshape", MOVED, ids=[m[0] for m in MOVED])
@pytest.mark.parametrize("ibatched", [False, True], ids=["idx_unbatched", "idx_batched"])
def test_setitem_batched_v_with_moved_advanced_indices(name, mk, vshape, ibatched):
    """issue 11: x[i, :, j] = v with v batched (was refused: 'index one axis at a time')"""
    rng = np.random.default_rng(19)
    X = rng.standard_normal((B, 3, 4, 5))
    V = rng.standard_normal((B,) + vshape)
    I = np.stack([rng.permutation(3)[:2] for _ in range(B)]) if ibatched else np.array([0, 2])
    J = np.stack([rng.permutation(4)[:2] for _ in range(B)]) if ibatched else np.array([1, 3])

    def f(x, v, i, j):
        x = x * 1.0
        x[mk(i, j)] = v
        return cad.sin(x)
    dims = (0, 0, 0, 0) if ibatched else (0, 0, None, None)
    got = cad.vmap(f, in_dims=dims)(cad.tensor(X), cad.tensor(V), cad.tensor(I), cad.tensor(J))
    want = []
    for b in range(B):
        x = X[b].copy()
        x[mk(I[b] if ibatched else I, J[b] if ibatched else J)] = V[b]
        want.append(np.sin(x))
    np.testing.assert_allclose(np.asarray(got), np.stack(want), rtol=1e-15)
    # the gradient per example, against the loop of cad.grad
    g = lambda x, v, i, j: cad.sum(f(x, v, i, j) ** 2)
    gx, gv = cad.vmap(cad.grad(g, argnums=(0, 1)), in_dims=dims)(
        cad.tensor(X), cad.tensor(V), cad.tensor(I), cad.tensor(J))
    for b in range(B):
        wx, wv = cad.grad(g, argnums=(0, 1))(cad.tensor(X[b]), cad.tensor(V[b]),
                                              cad.tensor(I[b] if ibatched else I),
                                              cad.tensor(J[b] if ibatched else J))
        np.testing.assert_allclose(np.asarray(gx)[b], np.asarray(wx), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(np.asarray(gv)[b], np.asarray(wv), rtol=1e-13, atol=1e-15)


def test_setitem_into_unbatched_from_batched_is_refused_clearly():
    def f(v):
        x = cad.zeros(3)
        x[0] = v
        return x
    with pytest.raises(ValueError, match=r"cad.where|cad.stack"):
        cad.vmap(f)(cad.tensor([1.0, 2.0]))


# ------------------------------------------------------------------ methods of batched values

def test_methods_and_attributes_of_batched_values():
    rng = np.random.default_rng(18)
    X = rng.standard_normal((B, 2, 3))
    seen = {}

    def f(x):
        seen["shape"], seen["ndim"], seen["dtype"], seen["len"] = x.shape, x.ndim, x.dtype, len(x)
        seen["size"], seen["numel"], seen["dim"] = x.size, x.numel(), x.dim()
        rows = list(x)
        seen["nrows"] = len(rows)
        assert all(r.shape == (3,) for r in rows)
        return (x.sum(), x.T, x.reshape(3, 2), x.reshape(-1), x.mean(1), x.max(0), rows[1] - rows[0],
                x.sum(axis=1, keepdims=True), x.transpose(1, 0), x.flatten(), x.mT, abs(-x), -x, +x,
                x.exp(), x.astype(cad.float32), x.float(), x.double())
    out = cad.vmap(f)(cad.tensor(X))
    assert seen == {"shape": (2, 3), "ndim": 2, "dtype": np.float64, "len": 2, "size": 6, "numel": 6,
                    "dim": 2, "nrows": 2}
    wants = [X.sum((1, 2)), X.transpose(0, 2, 1), X.reshape(B, 3, 2), X.reshape(B, -1), X.mean(2), X.max(1),
             X[:, 1] - X[:, 0], X.sum(2, keepdims=True), X.transpose(0, 2, 1), X.reshape(B, 6),
             X.transpose(0, 2, 1), np.abs(X), -X, X, np.exp(X), X.astype(np.float32), X.astype(np.float32), X]
    assert len(out) == len(wants)
    for k, (o, w) in enumerate(zip(out, wants)):
        assert o.shape == w.shape, (k, o.shape, w.shape)
        assert o.dtype == w.dtype, (k, o.dtype, w.dtype)
        np.testing.assert_allclose(np.asarray(o), w, rtol=1e-6 if w.dtype == np.float32 else 1e-14,
                                   err_msg=str(k))


def test_operators_of_batched_values():
    rng = np.random.default_rng(19)
    X, Y = rng.uniform(0.5, 2.0, (B, 3)), rng.uniform(0.5, 2.0, (B, 3))
    out = cad.vmap(lambda x, y: (x + y, x - y, x * y, x / y, x ** y, 2.0 - x, 2.0 / x, 2.0 ** x,
                                 x // y, x % y, x @ y, x < y, x >= y, x == y, x != y, (x < 1) & (y > 1),
                                 (x < 1) | (y > 1), ~(x < 1)))(cad.tensor(X), cad.tensor(Y))
    wants = [X + Y, X - Y, X * Y, X / Y, X ** Y, 2.0 - X, 2.0 / X, 2.0 ** X, X // Y, X % Y,
             (X * Y).sum(1), X < Y, X >= Y, X == Y, X != Y, (X < 1) & (Y > 1), (X < 1) | (Y > 1), ~(X < 1)]
    for k, (o, w) in enumerate(zip(out, wants)):
        assert o.shape == w.shape, k
        np.testing.assert_allclose(np.asarray(o), w, rtol=1e-13, err_msg=str(k))


def test_numpy_array_operand_with_batched_value():
    X = np.arange(6.0).reshape(B, 2)
    w = np.array([1.0, -1.0])
    got = cad.vmap(lambda x: w * x + x * w)(cad.tensor(X))
    np.testing.assert_allclose(np.asarray(got), 2 * X * w)


def test_len_and_iteration_of_0d_batched_values_raise():
    with pytest.raises(TypeError, match="0-d"):
        cad.vmap(lambda v: len(v))(cad.ones(3))
    with pytest.raises(TypeError, match="0-d"):
        cad.vmap(lambda v: list(v))(cad.ones(3))


# ------------------------------------------------------------------ keyword spellings (torch's dim=, keepdim=)

_XK = np.random.default_rng(20).uniform(0.5, 1.5, (B, 2, 3))

KEYWORDS = [
    ("sum_dim_keepdim", lambda x: cad.sum(x, dim=1, keepdim=True)),
    ("mean_dim", lambda x: x.mean(dim=0)),
    ("max_keepdims", lambda x: x.max(axis=1, keepdims=True)),
    ("min_dim", lambda x: cad.min(x, dim=1)),
    ("prod_dim", lambda x: cad.prod(x, dim=1)),
    ("logsumexp_dim", lambda x: cad.logsumexp(x, dim=1)),
    ("sum_dtype", lambda x: cad.sum(x, 0, dtype=cad.float32)),
    ("cumsum_reverse", lambda x: cad.cumsum(x, 1, reverse=True)),
    ("cumsum_dim", lambda x: cad.cumsum(x, dim=0)),
    ("cumprod_dim", lambda x: cad.cumprod(x, dim=1)),
    ("argmax_keepdims_none", lambda x: cad.argmax(x, keepdims=True)),
    ("argmax_dim", lambda x: cad.argmax(x, dim=1)),
    ("argmin_dim", lambda x: cad.argmin(x, dim=1)),
    ("squeeze_dim", lambda x: cad.squeeze(x[:1], dim=0)),
    ("unsqueeze_dim", lambda x: cad.unsqueeze(x, dim=-1)),
    ("reshape_shape_kw", lambda x: cad.reshape(x, shape=(6,))),
    ("reshape_tuple", lambda x: x.reshape((3, 2))),
    ("permute_dims_kw", lambda x: cad.permute(x, dims=(1, 0))),
    ("transpose_swap", lambda x: cad.transpose(x, 0, 1)),
    ("transpose_axes_kw", lambda x: cad.transpose(x, axes=(1, 0))),
    ("cat_dim", lambda x: cad.cat([x, x * 2], dim=1)),
    ("concatenate_axis_kw", lambda x: cad.concatenate([x, x * 2], axis=-1)),
    ("stack_axis_kw", lambda x: cad.stack([x, x * 2], axis=-1)),
    ("softmax_axis_kw", lambda x: cad.softmax(x, axis=0)),
    ("take_along_axis_kw", lambda x: cad.take_along_axis(x, cad.tensor(np.array([[2], [0]])), axis=1)),
    ("cross_entropy_kw", lambda x: cad.cross_entropy(x, cad.tensor(np.array([0, 2])), reduction="sum")),
    ("to_dtype", lambda x: x.to(cad.float32)),
    ("expand_args", lambda x: x[:, :1].expand(-1, 4)),
]

# found by this suite (fixed): dim= of stack/concatenate/softmax/log_softmax raised 'give axis= or dim=, not both'
KEYWORDS += [
    ("stack_dim", lambda x: cad.stack([x, x * 2], dim=1)),
    ("concatenate_dim", lambda x: cad.concatenate([x, x * 2], dim=1)),
    ("softmax_dim", lambda x: cad.softmax(x, dim=0)),
    ("log_softmax_dim", lambda x: cad.log_softmax(x, dim=0)),
]


@pytest.mark.parametrize("name,f", KEYWORDS, ids=[k[0] for k in KEYWORDS])
def test_keyword_spellings_under_vmap(name, f):
    got = cad.vmap(f)(cad.tensor(_XK))
    want = np.stack([np.asarray(f(cad.tensor(_XK[b]))) for b in range(B)])
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)


def test_getitem_batched_0d_bool_index_is_refused_clearly():
    # found by this suite (fixed): it raised numpy's IndexError about a mismatched boolean axis
    with pytest.raises(ValueError, match="batched boolean mask"):
        cad.vmap(lambda x: x[x[0, 0] > 1])(cad.tensor(_XK))
