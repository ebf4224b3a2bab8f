"""Pytrees (cad.tree): flatten / unflatten / map round trips, structures and their
errors; and the transforms (grad, value_and_grad, vjp, jvp, jacrev, jacfwd, hessian)
taking and returning dicts, tuples, lists and namedtuples, argnums selecting whole
subtrees, has_aux with a pytree aux; each against finite differences or a hand
derivation.  cad.record with pytree arguments and outputs (TreeTape)."""
from collections import namedtuple

import numpy as np
import pytest

import cad
from _numeric import A, close, fd_grad, fd_jac  # noqa: F401

P = namedtuple("P", ["w", "b"])
Q = namedtuple("Q", ["w", "b"])   # same fields, another type


# ------------------------------------------------------------------ flatten / unflatten / map

TREES = [
    ("leaf", 3.0),
    ("tensor_leaf", "T"),
    ("tuple", (1, 2, 3)),
    ("list", [1, [2, 3]]),
    ("dict_unsorted", {"z": 1, "a": 2, "m": 3}),
    ("namedtuple", P(1, (2, 3))),
    ("none", None),
    ("empty_tuple", ()),
    ("empty_list", []),
    ("empty_dict", {}),
    ("one_tuple", (5,)),
    ("nested", {"b": (1, [2, None, P(3, {"y": 4, "x": 5})]), "a": None, "c": [[], (6,)]}),
]


def _materialize(t):
    return cad.tensor([1.0, 2.0]) if t == "T" else t


@pytest.mark.parametrize("name,tree", TREES, ids=[t[0] for t in TREES])
def test_flatten_unflatten_round_trip(name, tree):
    tree = _materialize(tree)
    leaves, d = cad.tree_flatten(tree)
    back = cad.tree_unflatten(d, leaves)
    assert type(back) is type(tree)
    if name == "tensor_leaf":
        assert back is tree and leaves == [tree]
    else:
        assert back == tree
    assert cad.tree_structure(back) == d
    assert cad.tree_leaves(tree) == leaves or name == "tensor_leaf"
    assert d.num_leaves == len(leaves)
    # map: a new tree of the same structure
    if name != "tensor_leaf":
        m = cad.tree_map(lambda x: x * 10, tree)
        assert cad.tree_structure(m) == d
        assert cad.tree_leaves(m) == [x * 10 for x in leaves]


def test_flatten_order_and_leaves():
    t = {"z": 1, "a": (2, [3, None, P(4, 5)]), "m": None}
    leaves, d = cad.tree_flatten(t)
    assert leaves == [2, 3, 4, 5, 1]   # dict keys sorted, None holds no leaf
    assert repr(d) == "{'a': (*, [*, None, P(*, *)]), 'm': None, 'z': *}"
    back = cad.tree_unflatten(d, leaves)
    assert back == t and isinstance(back["a"][1][2], P)
    assert list(back) == ["a", "m", "z"]   # the unflattened dict has its keys in sorted order
    assert cad.tree_leaves(None) == [] and cad.tree_flatten(None)[1] == cad.tree_structure(None)
    # numpy arrays and tensors are leaves
    a, x = np.ones(3), cad.ones(2)
    lv = cad.tree_leaves({"a": a, "x": [x]})
    assert lv[0] is a and lv[1] is x


def test_structures_compare_and_hash():
    s = cad.tree_structure
    assert s({"b": 1, "a": 2}) == s({"a": 0, "b": 0})     # insertion order does not matter
    assert hash(s({"b": 1, "a": 2})) == hash(s({"a": 0, "b": 0}))
    assert s((1, 2)) != s([1, 2])
    assert s(P(1, 2)) != s((1, 2))
    assert s(P(1, 2)) != s(Q(1, 2))
    assert s({"a": 1}) != s({"b": 1})
    assert s((1, None)) != s((1, 2))
    assert s((1, (2,))) != s((1, 2))
    assert len({s((1, 2)), s((3, 4)), s([1, 2])}) == 2


def test_tree_map_several_trees_and_is_leaf():
    t1 = {"a": (1, 2), "b": [3]}
    t2 = {"b": [30], "a": (10, 20)}
    assert cad.tree_map(lambda x, y: x + y, t1, t2) == {"a": (11, 22), "b": [33]}
    # is_leaf stops the descent
    r = cad.tree_map(lambda x: len(x), {"a": [1, 2, 3], "b": [4]}, is_leaf=lambda x: isinstance(x, list))
    assert r == {"a": 3, "b": 1}
    assert cad.tree_leaves([1, [2, 3], 4], is_leaf=lambda x: isinstance(x, list) and len(x) == 2) == [1, [2, 3], 4]
    # tensors through tree_map
    r = cad.tree_map(lambda x: x * 2, {"w": cad.ones(2), "b": (cad.ones(()),)})
    assert A(r["w"]).tolist() == [2.0, 2.0] and A(r["b"][0]) == 2.0


def test_structure_mismatch_errors():
    with pytest.raises(ValueError, match=r"tree_map: tree 1 has structure \{'z': \*\}, the first has"):
        cad.tree_map(lambda x, y: x + y, {"a": 1, "z": 2}, {"z": 1})
    with pytest.raises(ValueError, match=r"tree_map: tree 1 has structure \[\*, \*\], the first has \(\*, \*\)"):
        cad.tree_map(lambda x, y: x + y, (1, 2), [1, 2])
    _, d = cad.tree_flatten({"a": (1, 2), "b": 3})
    with pytest.raises(ValueError, match=r"tree_unflatten: 2 leaves for a structure with 3"):
        cad.tree_unflatten(d, [1, 2])
    with pytest.raises(ValueError, match=r"tree_unflatten: 4 leaves for a structure with 3"):
        cad.tree_unflatten(d, [1, 2, 3, 4])


# ------------------------------------------------------------------ transforms with pytrees

R = np.random.default_rng(60)
W0, B0, X0 = R.standard_normal((3, 2)), R.standard_normal(2), R.standard_normal(3)


def params():
    return {"W": cad.tensor(W0), "b": cad.tensor(B0)}


def loss(p, x):
    return cad.sum(cad.tanh(x @ p["W"] + p["b"]) ** 2)


def loss_np(W, b, x):
    return np.sum(np.tanh(x @ W + b) ** 2)


def test_grad_dict_argument():
    g = cad.grad(loss)(params(), cad.tensor(X0))
    assert isinstance(g, dict) and sorted(g) == ["W", "b"]
    close(g["W"], fd_grad(lambda W: loss_np(W, B0, X0), W0), rtol=1e-7, atol=1e-9)
    close(g["b"], fd_grad(lambda b: loss_np(W0, b, X0), B0), rtol=1e-7, atol=1e-9)
    # unsorted insertion order in, same gradients out
    g2 = cad.grad(loss)({"b": cad.tensor(B0), "W": cad.tensor(W0)}, cad.tensor(X0))
    close(g2["W"], g["W"], rtol=0, atol=0)
    close(g2["b"], g["b"], rtol=0, atol=0)


def test_grad_argnums_selects_whole_subtrees():
    gp, gx = cad.grad(loss, argnums=(0, 1))(params(), cad.tensor(X0))
    assert isinstance(gp, dict)
    close(gx, fd_grad(lambda x: loss_np(W0, B0, x), X0), rtol=1e-7, atol=1e-9)
    close(gp["b"], fd_grad(lambda b: loss_np(W0, b, X0), B0), rtol=1e-7, atol=1e-9)
    gx1 = cad.grad(loss, argnums=1)(params(), cad.tensor(X0))
    close(gx1, gx, rtol=0, atol=0)
    # negative argnums: the last argument, a tuple subtree
    f = lambda x, t: cad.sum(x * t[0] * t[1][0])
    gt = cad.grad(f, argnums=-1)(cad.tensor(X0), (cad.tensor(X0), [cad.tensor(X0 * 2)]))
    assert isinstance(gt, tuple) and isinstance(gt[1], list)
    close(gt[0], X0 * X0 * 2)
    close(gt[1][0], X0 * X0)


def test_value_and_grad_namedtuple_and_list_with_none():
    v, g = cad.value_and_grad(lambda q: cad.sum(q.w * q.b * q.b))(P(cad.tensor(B0), cad.tensor(B0 * 2)))
    close(v, np.sum(B0 * 4 * B0 * B0), rtol=1e-14)
    assert isinstance(g, P)
    close(g.w, 4 * B0 * B0)
    close(g.b, 2 * B0 * 2 * B0)
    g = cad.grad(lambda l: cad.sum(l[0] * l[2]))([cad.tensor(B0), None, cad.tensor(B0 * 3)])
    assert isinstance(g, list) and g[1] is None
    close(g[0], 3 * B0)
    close(g[2], B0)


def test_has_aux_pytree():
    def f(p):
        return loss(p, cad.tensor(X0)), {"pred": p["b"] * 2, "tag": "str", "n": (1, None)}
    g, aux = cad.grad(f, has_aux=True)(params())
    assert aux["tag"] == "str" and aux["n"] == (1, None)
    close(aux["pred"], 2 * B0)
    close(g["b"], fd_grad(lambda b: loss_np(W0, b, X0), B0), rtol=1e-7, atol=1e-9)
    (v, aux2), g2 = cad.value_and_grad(f, has_aux=True)(params())
    close(v, loss_np(W0, B0, X0), rtol=1e-14)
    assert aux2["tag"] == "str" and aux2["n"] == (1, None)
    close(g2["W"], g["W"], rtol=0, atol=0)
    J, aux3 = cad.jacrev(lambda a: (a * 2, {"k": [a, a * 3]}), has_aux=True)(cad.tensor(B0))
    close(J, 2 * np.eye(2))
    close(aux3["k"][1], 3 * B0)


def test_vjp_pytree_in_and_out():
    def f(p):
        return {"y": p["W"] @ p["b"], "s": cad.sum(p["b"] ** 2)}
    out, fn = cad.vjp(f, params())
    close(out["y"], W0 @ B0, rtol=1e-14)
    cy, cs = R.standard_normal(3), 0.7
    (g,) = fn({"s": cad.tensor(cs), "y": cad.tensor(cy)})
    assert isinstance(g, dict)
    close(g["W"], np.outer(cy, B0), rtol=1e-14)
    close(g["b"], W0.T @ cy + cs * 2 * B0, rtol=1e-13)
    # two primals, a tuple output
    out, fn = cad.vjp(lambda a, t: (a * t[0], [a + t[1]]), cad.tensor(B0), (cad.tensor(B0 * 2), cad.tensor(B0)))
    ga, gt = fn((cad.ones(2), [cad.ones(2) * 2]))
    close(ga, 2 * B0 + 2)
    assert isinstance(gt, tuple)
    close(gt[0], B0)
    close(gt[1], [2.0, 2.0])


def test_vjp_structure_mismatch_is_clear():
    _, fn = cad.vjp(lambda p: {"y": p["W"] @ p["b"], "s": cad.sum(p["b"])}, params())
    with pytest.raises(ValueError, match=r"vjp: cotangent of structure \{'y': \*\} for an output of "
                                         r"structure \{'s': \*, 'y': \*\}"):
        fn({"y": cad.ones(3)})
    with pytest.raises(cad.ShapeError, match=r"vjp: cotangent of shape \(2,\) for an output of shape \(3,\)"):
        fn({"y": cad.ones(2), "s": cad.tensor(1.0)})


def test_jvp_pytree_in_and_out():
    tW, tb = R.standard_normal((3, 2)), R.standard_normal(2)
    out, t = cad.jvp(lambda p: {"y": p["W"] @ p["b"], "s": (cad.sum(p["b"]),)},
                     (params(),), ({"W": cad.tensor(tW), "b": cad.tensor(tb)},))
    assert isinstance(t, dict) and isinstance(t["s"], tuple)
    close(t["y"], tW @ B0 + W0 @ tb, rtol=1e-13)
    close(t["s"][0], tb.sum(), rtol=1e-14)
    close(out["y"], W0 @ B0, rtol=1e-14)


def test_jvp_structure_mismatch_is_clear():
    with pytest.raises(ValueError, match=r"jvp: tangent 0 has structure \{'W': \*\}, its primal "
                                         r"\{'W': \*, 'b': \*\}"):
        cad.jvp(lambda p: p["W"] @ p["b"], (params(),), ({"W": cad.ones(3, 2)},))
    with pytest.raises(cad.ShapeError, match=r"jvp: tangent 0 of shape \(2, 2\) for a primal of shape \(3, 2\)"):
        cad.jvp(lambda p: p["W"] @ p["b"], (params(),), ({"W": cad.ones(2, 2), "b": cad.ones(2)},))
    with pytest.raises(ValueError, match=r"jvp: 1 primals but 2 tangents"):
        cad.jvp(lambda p: p["b"], (params(),), (params(), params()))


@pytest.mark.parametrize("jac", [cad.jacrev, cad.jacfwd], ids=["jacrev", "jacfwd"])
def test_jacobians_with_pytrees(jac):
    # dict in: the output's Jacobian w.r.t. every leaf
    J = jac(lambda p: cad.tanh(p["W"] @ p["b"]))(params())
    assert isinstance(J, dict)
    close(J["W"], fd_jac(lambda W: np.tanh(W @ B0), W0), rtol=1e-7, atol=1e-9)
    close(J["b"], fd_jac(lambda b: np.tanh(W0 @ b), B0), rtol=1e-7, atol=1e-9)
    # dict out: the structure of the output holding the argument's
    J = jac(lambda a: {"u": a * 2, "v": cad.sum(a * a)})(cad.tensor(B0))
    close(J["u"], 2 * np.eye(2))
    close(J["v"], 2 * B0)
    # output tree of input trees, argnums a tuple
    J = jac(lambda a, q: (a * q[0], cad.sum(q[1])), argnums=(0, 1))(cad.tensor(B0), (cad.tensor(B0 * 2),
                                                                                     cad.tensor(X0)))
    assert isinstance(J, tuple) and len(J) == 2
    ja, jq = J[0]
    close(ja, np.diag(2 * B0))
    close(jq[0], np.diag(B0))
    close(jq[1], np.zeros((2, 3)))
    ja, jq = J[1]
    close(ja, np.zeros(2))
    close(jq[0], np.zeros(2))
    close(jq[1], np.ones(3))


def test_jacrev_equals_jacfwd_on_a_nested_tree():
    def f(p, t):
        return [p["W"] @ t[0], {"s": cad.sum(p["b"] * t[1].b)}]
    args = (params(), (cad.tensor(B0), P(cad.ones(2), cad.tensor(B0 * 3))))
    jr = cad.jacrev(f, argnums=(0, 1))(*args)
    jf = cad.jacfwd(f, argnums=(0, 1))(*args)
    assert cad.tree_structure(jr) == cad.tree_structure(jf)
    for a, b in zip(cad.tree_leaves(jr), cad.tree_leaves(jf)):
        close(a, b, rtol=1e-13)


def test_hessian_with_pytrees():
    # dict argument: a dict of dicts of blocks
    f = lambda p: cad.sum(p["b"] ** 3) * cad.sum(p["W"])
    H = cad.hessian(f)(params())
    assert sorted(H) == ["W", "b"] and sorted(H["W"]) == ["W", "b"]
    close(H["W"]["W"], np.zeros((3, 2, 3, 2)))
    close(H["b"]["b"], np.diag(6 * B0 * W0.sum()), rtol=1e-13)
    close(H["W"]["b"], np.broadcast_to(3 * B0 ** 2, (3, 2, 2)), rtol=1e-13)
    close(H["b"]["W"], np.broadcast_to((3 * B0 ** 2)[:, None, None], (2, 3, 2)), rtol=1e-13)
    # a tuple argument: blocks as nested tuples, against finite differences of the gradient
    g = lambda t: cad.sum(cad.sin(t[0]) * t[1] ** 2)
    a, c = R.standard_normal(2), R.standard_normal(2)
    H = cad.hessian(g)((cad.tensor(a), cad.tensor(c)))
    close(H[0][0], np.diag(-np.sin(a) * c ** 2), rtol=1e-13)
    close(H[0][1], np.diag(np.cos(a) * 2 * c), rtol=1e-13)
    close(H[1][0], np.diag(np.cos(a) * 2 * c), rtol=1e-13)
    close(H[1][1], fd_jac(lambda cc: np.sin(a) * 2 * cc, c), rtol=1e-7, atol=1e-9)
    # argnums a tuple of arguments: the same blocks
    H2 = cad.hessian(lambda x, y: g((x, y)), argnums=(0, 1))(cad.tensor(a), cad.tensor(c))
    for u, v in zip(cad.tree_leaves(H), cad.tree_leaves(H2)):
        close(u, v, rtol=0, atol=0)


def test_transform_errors_on_trees_without_tensors():
    with pytest.raises(TypeError, match="argument 0 holds no tensor to differentiate"):
        cad.grad(lambda t: 1.0)({})
    with pytest.raises(TypeError, match="argument 0 holds no tensor to differentiate"):
        cad.grad(lambda t: 1.0)(None)
    with pytest.raises(cad.DTypeError, match="argument 0 is the integer 3"):
        cad.grad(lambda t: t["a"] * 2.0)({"a": 3})


def test_vmap_over_pytrees_of_tensors():
    """vmap takes and returns the same containers (namedtuple in, dict out)"""
    X = R.standard_normal((4, 2))
    out = cad.vmap(lambda q: {"s": q.w * q.b, "t": [q.w]}, in_dims=(P(0, None),))(P(cad.tensor(X), cad.tensor(B0)))
    assert isinstance(out, dict) and isinstance(out["t"], list)
    close(out["s"], X * B0, rtol=1e-14)
    close(out["t"][0], X)
    # grad of a pytree inside vmap: per-example gradients keep the structure
    g = cad.vmap(cad.grad(lambda q: cad.sum(q.w * q.w * q.b)), in_dims=(P(0, None),))(P(cad.tensor(X), cad.tensor(B0)))
    assert isinstance(g, P)
    close(g.w, 2 * X * B0, rtol=1e-14)
    close(g.b, X * X, rtol=1e-14)


# ------------------------------------------------------------------ cad.record with pytrees

def test_record_pytree_arguments_call_and_grad():
    tape = cad.record(loss, params(), cad.tensor(X0))
    x1 = R.standard_normal(3)
    p1 = {"W": cad.tensor(W0 * 0.5), "b": cad.tensor(-B0)}
    close(tape(p1, cad.tensor(x1)), loss_np(W0 * 0.5, -B0, x1), rtol=1e-14)
    gp, gx = tape.grad(p1, cad.tensor(x1))
    assert isinstance(gp, dict) and sorted(gp) == ["W", "b"]
    close(gp["W"], fd_grad(lambda W: loss_np(W, -B0, x1), W0 * 0.5), rtol=1e-7, atol=1e-9)
    close(gp["b"], fd_grad(lambda b: loss_np(W0 * 0.5, b, x1), -B0), rtol=1e-7, atol=1e-9)
    close(gx, fd_grad(lambda x: loss_np(W0 * 0.5, -B0, x), x1), rtol=1e-7, atol=1e-9)
    want = cad.grad(loss, argnums=(0, 1))(p1, cad.tensor(x1))
    for a, b in zip(cad.tree_leaves((gp, gx)), cad.tree_leaves(want)):
        close(a, b, rtol=1e-13)
    # argnums an int: that argument's structure; a tuple: a tuple of them
    g0 = tape.grad(p1, cad.tensor(x1), argnums=0)
    assert isinstance(g0, dict)
    close(g0["b"], gp["b"], rtol=0, atol=0)
    v, (g1,) = tape.value_and_grad(p1, cad.tensor(x1), argnums=(1,))
    close(v, loss_np(W0 * 0.5, -B0, x1), rtol=1e-14)
    close(g1, gx, rtol=0, atol=0)


def test_record_pytree_outputs_and_list_arguments():
    tape = cad.record(lambda a: {"y": a * 2, "s": (cad.sum(a), [a - 1])}, cad.tensor(X0))
    out = tape(cad.tensor(X0 * 3))
    assert isinstance(out, dict) and isinstance(out["s"], tuple) and isinstance(out["s"][1], list)
    close(out["y"], 6 * X0)
    close(out["s"][0], 3 * X0.sum(), rtol=1e-14)
    close(out["s"][1][0], 3 * X0 - 1)
    t2 = cad.record(lambda l: l[0] * l[1], [cad.tensor(X0), cad.tensor(X0)])
    close(t2([cad.tensor(X0), cad.tensor(2 * X0)]), 2 * X0 * X0)
    t3 = cad.record(lambda q: q.w * q.b, P(cad.tensor(X0), cad.tensor(X0)))
    close(t3(P(cad.tensor(X0), cad.tensor(-X0))), -X0 * X0)


def test_record_pytree_structure_mismatch_is_clear():
    tape = cad.record(loss, params(), cad.tensor(X0))
    with pytest.raises(ValueError, match=r"tape: arguments of structure \(\{'W': \*\}, \*\); the tape was "
                                         r"recorded with \(\{'W': \*, 'b': \*\}, \*\)"):
        tape({"W": cad.tensor(W0)}, cad.tensor(X0))
    with pytest.raises(ValueError, match=r"tape.grad: arguments of structure"):
        tape.grad(params(), (cad.tensor(X0),))
    with pytest.raises(TypeError, match="pytree arguments cannot be saved"):
        cad.save(tape, "unused.cad")


def test_vmap_of_a_pytree_tape():
    tape = cad.record(loss, params(), cad.tensor(X0))
    X = R.standard_normal((4, 3))
    got = cad.vmap(tape, in_dims=(None, 0))(params(), cad.tensor(X))
    close(got, [loss_np(W0, B0, x) for x in X], rtol=1e-13)


def test_tree_tape_jacobian_and_hessian_match_the_transforms():
    rng = np.random.default_rng(3)
    f = lambda p, x: cad.sum(cad.tanh(p["W"] @ x + p["b"]) ** 2) + cad.sum(p["W"] ** 3)
    p = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=3)}
    x = rng.normal(size=4)
    tp = cad.record(f, p, x)
    p2 = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=3)}
    H, Hj = tp.hessian(p2, x), cad.hessian(f)(p2, x)
    for a in ("W", "b"):
        for b in ("W", "b"):
            np.testing.assert_allclose(np.asarray(H[a][b]), np.asarray(Hj[a][b]), rtol=1e-12, atol=1e-14)
    J = tp.jacobian(p2, x)
    G = cad.grad(f)(p2, x)
    for a in ("W", "b"):
        np.testing.assert_allclose(np.asarray(J[a]), np.asarray(G[a]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(tp.jacobian(p2, x, argnum=1)),
                               np.asarray(cad.grad(f, argnums=1)(p2, x)), rtol=1e-12)
    Hx = tp.hessian(p2, x, argnum=1)
    np.testing.assert_allclose(np.asarray(Hx), np.asarray(cad.hessian(f, argnums=1)(p2, x)), rtol=1e-12,
                               atol=1e-14)
