"""Named dimensions (issue 12): the seed's examples, every op's name rule (generated
from the op table: completeness, values unchanged, names that come from the inputs),
each rule family's names, errors, transforms, record/replay, save/load, vmap."""
import io
import pickle

import numpy as np
import pytest

import cad
from cad import names as N
from cad.ops import REGISTRY

from ops.test_rules import build


def nm(*shape, names, rg=False):
    return cad.tensor(np.random.default_rng(len(shape)).standard_normal(shape), names=names,
                      requires_grad=rg)


# ---------------------------------------------------------------- the seed

def test_seed_matmul_names():
    state = cad.ones(9, 5, names=("batch", "D"))
    trans = cad.randn(5, 5, names=("in", "out"))
    assert (state @ trans).names == ("batch", "out")


def test_seed_mismatch_error_names_both_dims():
    with pytest.raises(ValueError) as e:
        cad.ones(3, names=("X",)) + cad.ones(3, names=("Y",))
    msg = str(e.value)
    assert "'X'" in msg and "'Y'" in msg and "same position from the right" in msg
    assert isinstance(e.value, cad.NamesError) and isinstance(e.value, cad.CadError)


# ---------------------------------------------------------------- the table

def test_every_op_has_a_name_rule():
    missing = [op.name for op in REGISTRY.values() if not callable(op.name_rule)]
    assert not missing


GEN = [(op, c) for op in REGISTRY.values() for c in op.cases if op.api is not None]


@pytest.mark.parametrize("op,case", GEN, ids=[f"{op.name}[{c!r}]" for op, c in GEN])
def test_generated_name_rule(op, case):
    """the op's first tensor input named ('n0', 'n1', ...): the call succeeds, the
    values equal the unnamed call's, the result's names are a valid tuple drawn from
    the input's names, and the rule (not the plain body) named it"""
    leaves, call, _ = build(op, case)
    plain = call(*leaves)
    if not leaves:
        pytest.skip("no float input to name")
    x = leaves[0]
    names = tuple(f"n{i}" for i in range(x.ndim))
    xn = x.rename(*names) if x.ndim else x
    got = call(xn, *leaves[1:])
    outs = got if isinstance(got, (tuple, list)) else (got,)
    pouts = plain if isinstance(plain, (tuple, list)) else (plain,)
    for o, p in zip(outs, pouts):
        np.testing.assert_array_equal(np.asarray(o), np.asarray(p))
        assert isinstance(o.names, tuple) and len(o.names) == o.ndim
        assert set(n for n in o.names if n is not None) <= set(names), (o.names, names)
    o = outs[0]
    keeps = x.ndim > 0 and o.ndim > 0 and op.name_rule not in (N.unnamed_rule,) and \
        op.name not in _MAY_LOSE
    if keeps and not _loses(op, case, x, o):
        assert any(n is not None for n in o.names), f"{op.name}: the result lost every name {o.names}"
    if op.differentiable and x.requires_grad and o.dtype.kind == "f" and o.size:
        g = cad.grad(lambda v: cad.sum(_first(call(v, *leaves[1:]))))(xn)
        assert g.names == xn.names


def _first(r):
    return r[0] if isinstance(r, (tuple, list)) else r


# ops whose result may be unnamed from a named input: dims mixed or made anew
_MAY_LOSE = {"diag", "outer", "getitem", "gather", "scatter", "view", "unview", "custom",
             "take_along_axis", "einsum", "matmul", "dot", "inner", "tensordot"}


def _loses(op, case, x, o):
    """the case flattens x (axis None) or drops every named dim"""
    if op.name in ("cumsum", "cumprod", "repeat", "sort", "argsort") and x.ndim > 1:
        default = None if op.name in ("cumsum", "cumprod", "repeat") else -1
        return case.kwargs.get("axis", case.kwargs.get("dim", default)) is None
    if op.name in ("diagonal", "trace") and x.ndim == 2:
        return True
    return False


# ---------------------------------------------------------------- families

def test_elementwise_unify_fills_none_and_broadcasts():
    a = nm(2, 3, names=("a", None))
    b = nm(3, names=("b",))
    assert (a + b).names == ("a", "b")
    assert (a * 2.0).names == ("a", None)
    assert cad.where(a > 0, a, b).names == ("a", "b")
    assert cad.exp(a).names == ("a", None)
    assert (a < b).names == ("a", "b")
    assert cad.maximum(a, b).names == ("a", "b")


def test_elementwise_misaligned_name_raises():
    a = nm(2, 2, names=("a", None))
    b = nm(2, names=("a",))
    with pytest.raises(cad.NamesError, match="two positions"):
        a + b


def test_reductions_by_name():
    x = nm(2, 3, 4, names=("batch", "D", "E"))
    assert x.sum("D").names == ("batch", "E")
    assert x.mean(("batch", "D")).names == ("E",)
    assert x.sum("D", keepdims=True).names == ("batch", "D", "E")
    assert x.max(axis="E").names == ("batch", "D")
    assert x.var("D", ddof=1).names == ("batch", "E")
    assert x.argmax("batch").names == ("D", "E")
    assert cad.logsumexp(x, axis="E").names == ("batch", "D")
    assert x.sum().names == ()
    np.testing.assert_allclose(np.asarray(x.sum("D")), np.asarray(x).sum(1))
    with pytest.raises(cad.NamesError, match="no dim named 'Q'"):
        x.sum("Q")


def test_along_axis_ops_keep_names():
    x = nm(3, 4, names=("a", "b"))
    assert x.softmax("a").names == ("a", "b")
    np.testing.assert_allclose(np.asarray(x.softmax("a")), np.asarray(cad.softmax(x, axis=0)))
    assert x.cumsum("b").names == ("a", "b")
    assert cad.sort(x, axis="a").names == ("a", "b")
    assert cad.flip(x, "b").names == ("a", "b")
    assert cad.diff(x, axis="b").names == ("a", "b")
    assert x.cumsum().names == (None,)   # flattened


def test_transpose_family_permutes_names():
    x = nm(2, 3, 4, names=("a", "b", "c"))
    assert x.T.names == ("c", "b", "a")
    assert x.mT.names == ("a", "c", "b")
    assert x.permute(2, 0, 1).names == ("c", "a", "b")
    assert x.permute("c", "a", "b").names == ("c", "a", "b")
    assert x.swapaxes("a", "c").names == ("c", "b", "a")
    assert cad.moveaxis(x, 0, -1).names == ("b", "c", "a")
    assert cad.transpose(x, (1, 0, 2)).names == ("b", "a", "c")


def test_reshape_is_unnamed_flatten_unflatten_named():
    x = nm(2, 3, 4, names=("a", "b", "c"))
    assert x.reshape(6, 4).names == (None, None)
    f = x.flatten(("b", "c"), "bc")
    assert f.names == ("a", "bc") and f.shape == (2, 12)
    u = f.unflatten("bc", (("b", 3), ("c", 4)))
    assert u.names == ("a", "b", "c")
    np.testing.assert_array_equal(np.asarray(u), np.asarray(x))
    assert x.flatten().names == (None,)
    with pytest.raises(cad.NamesError, match="adjacent"):
        x.flatten(("a", "c"), "ac")
    with pytest.raises(cad.ShapeError):
        f.unflatten("bc", (("b", 5), ("c", 4)))


def test_shape_ops():
    x = nm(2, 1, 4, names=("a", "one", "c"))
    assert x.squeeze("one").names == ("a", "c")
    assert x.squeeze().names == ("a", "c")
    assert x.unsqueeze(0).names == (None, "a", "one", "c")
    assert cad.broadcast_to(nm(4, names=("c",)), (3, 4)).names == (None, "c")
    assert cad.concatenate([x, x], axis="a").names == ("a", "one", "c")
    assert cad.stack([x, x]).names == (None, "a", "one", "c")
    assert x[0].names == ("one", "c")
    assert x[:, 0, 1:].names == ("a", "c")
    assert x[..., None].names == ("a", "one", "c", None)
    assert x[np.array([0, 1])].names == (None, None, None)
    with pytest.raises(cad.NamesError):
        cad.concatenate([x, x.rename(None).rename("a", "one", "z")])
    y = nm(3, 4, names=("r", "c"))
    assert cad.diagonal(nm(3, 3, 2, names=("i", "j", "k"))).names == ("k", None)
    assert cad.trace(nm(3, 3, names=("i", "j"))).names == ()
    assert cad.tril(y).names == ("r", "c")
    assert cad.rot90(y).names == ("c", "r")
    assert cad.tile(y, (2, 1, 1)).names == (None, "r", "c")
    assert cad.pad(y, 1).names == ("r", "c")


def test_matmul_family():
    a = nm(5, 2, 3, names=("batch", "i", "k"))
    b = nm(3, 4, names=("k2", "j"))
    assert (a @ b).names == ("batch", "i", "j")
    assert (a @ nm(3, names=("k",))).names == ("batch", "i")
    assert cad.dot(nm(3, names=("k",)), nm(3, names=("k",))).names == ()
    assert cad.tensordot(a, b, axes=1).names == ("batch", "i", "j")
    assert cad.inner(nm(2, 3, names=("p", "k")), nm(4, 3, names=("q", "k"))).names == ("p", "q")
    assert cad.outer(nm(2, names=("p",)), nm(3, names=("q",))).names == ("p", "q")
    c = cad.einsum("bik,kj->bij", a, b)   # contracted dims unchecked, as matmul's
    assert c.names == ("batch", "i", "j")
    assert cad.einsum("ii->i", nm(3, 3, names=("p", "q"))).names == (None,)
    with pytest.raises(cad.NamesError, match="subscript"):
        cad.einsum("ij,ij->ij", nm(2, 3, names=("i", "k")), nm(2, 3, names=("i", "kk")))
    with pytest.raises(cad.NamesError):   # batch dims unify
        nm(5, 2, 3, names=("b1", None, None)) @ nm(5, 3, 2, names=("b2", None, None))


def test_cross_entropy_and_take_along():
    logits = nm(4, 3, names=("batch", "class"), rg=True)
    labels = cad.tensor(np.array([0, 2, 1, 1]))
    assert cad.cross_entropy(logits, labels, reduction="none").names == ("batch",)
    assert cad.cross_entropy(logits, labels).names == ()
    idx = cad.tensor(np.zeros((4, 1), dtype=np.int64))
    assert cad.take_along_axis(logits, idx, axis="class").names == ("batch", "class")


# ---------------------------------------------------------------- methods

def test_rename_refine_align():
    x = nm(2, 3, names=("a", "b"))
    assert x.rename("p", "q").names == ("p", "q")
    assert x.rename(a="A").names == ("A", "b")
    assert x.rename(None).names == (None, None)
    assert x.names == ("a", "b")   # rename makes a new tensor
    u = nm(2, 3, 4, names=None)
    assert u.names == (None, None, None)
    assert u.refine_names("a", "...").names == ("a", None, None)
    assert u.refine_names("a", "b", "c").names == ("a", "b", "c")
    with pytest.raises(cad.NamesError, match="cannot refine"):
        x.refine_names("z", "b")
    y = nm(2, 3, 4, names=("a", "b", "c"))
    z = y.align_to("c", "a", "b")
    assert z.names == ("c", "a", "b") and z.shape == (4, 2, 3)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(y).transpose(2, 0, 1))
    assert y.align_to("c", "...").names == ("c", "a", "b")
    assert y.align_to("new", "a", "b", "c").shape == (1, 2, 3, 4)
    w = nm(4, 2, names=("c", "a"))
    assert w.align_as(y).names == ("a", None, "c") or w.align_as(y).shape == (2, 1, 4)
    with pytest.raises(cad.NamesError, match="not in"):
        y.align_to("a", "b")
    with pytest.raises(cad.NamesError, match="repeated"):
        cad.zeros(2, 2, names=("a", "a"))
    with pytest.raises(cad.NamesError, match="2 names"):
        cad.zeros(3, names=("a", "b"))
    with pytest.raises(TypeError):
        cad.zeros(3, names="a")


def test_rename_keeps_gradient_flowing():
    x = cad.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = x.rename("a", "b")
    (y * y).sum().backward()
    np.testing.assert_allclose(np.asarray(x.grad), 2 * np.arange(6.0).reshape(2, 3))


def test_constructors_take_names():
    for t in (cad.zeros(2, 3, names=("a", "b")), cad.ones(2, 3, names=("a", "b")),
              cad.full((2, 3), 1.5, names=("a", "b")), cad.randn(2, 3, names=("a", "b")),
              cad.rand(2, 3, names=("a", "b")), cad.tensor(np.ones((2, 3)), names=("a", "b")),
              cad.eye(2, 3, names=("a", "b"))):
        assert t.names == ("a", "b")
    assert cad.arange(3, names=("i",)).names == ("i",)
    assert cad.linspace(0, 1, 5, names=("t",)).names == ("t",)
    x = cad.ones(2, 3, names=("a", "b"))
    assert cad.zeros_like(x).names == ("a", "b")
    assert cad.ones_like(x, names=("p", None)).names == ("p", None)
    assert "names=('a', 'b')" in repr(x)


# ---------------------------------------------------------------- transforms

def f_named(x, w):
    return cad.tanh(x @ w).sum("out")


def test_gradients_carry_input_names():
    x = nm(3, 4, names=("batch", "in"), rg=True)
    w = nm(4, 5, names=("in", "out"), rg=True)
    gx, gw = cad.grad(lambda x, w: f_named(x, w).sum(), argnums=(0, 1))(x, w)
    assert gx.names == ("batch", "in") and gw.names == ("in", "out")
    f_named(x, w).sum().backward()
    assert x.grad.names == ("batch", "in") and w.grad.names == ("in", "out")
    g = cad.autograd.grad(f_named(x, w).sum(), (x, w))
    assert [t.names for t in g] == [("batch", "in"), ("in", "out")]
    # values unchanged by names
    xu, wu = x.rename(None), w.rename(None)
    gu = cad.grad(lambda x, w: cad.tanh(x @ w).sum(), argnums=(0, 1))(xu, wu)
    np.testing.assert_allclose(np.asarray(gx), np.asarray(gu[0]))


def test_jacobian_hessian_names():
    x = nm(3, names=("D",), rg=True)
    assert cad.hessian(lambda v: (v ** 3).sum(), x).names == ("D", "D'")
    m = nm(2, 3, names=("a", "b"))
    J = cad.jacobian(lambda v: v.sum("b"), m)
    assert J.names == ("a", "a'", "b") and J.shape == (2, 2, 3)
    assert cad.jacfwd(lambda v: v.sum("a"))(m).names == ("b", "a", "b'")
    out, t = cad.jvp(lambda v: v.exp(), (m,), (cad.ones(2, 3),))
    assert out.names == ("a", "b") and t.names == ("a", "b")
    _, fn = cad.vjp(lambda v: v.exp(), m)
    assert fn(cad.ones(2, 3))[0].names == ("a", "b")
    gg = cad.grad(cad.grad(lambda v: (v ** 3).sum()))
    with pytest.raises(TypeError):   # grad of a non-scalar: names do not change the rules
        gg(x)
    assert cad.grad(lambda v: cad.grad(lambda u: (u ** 3).sum())(v).sum())(x).names == ("D",)


def test_names_checked_inside_transforms():
    x = nm(3, names=("X",), rg=True)
    y = nm(3, names=("Y",))
    with pytest.raises(cad.NamesError):
        cad.grad(lambda v: (v + y).sum())(x)


def test_vmap_in_dims_by_name():
    x = nm(3, 4, names=("batch", "D"))
    w = nm(4, names=("D",))
    seen = []

    def f(r):
        seen.append(r.names)
        return r * w

    out = cad.vmap(f, in_dims="batch")(x)
    assert seen == [("D",)] and out.names == ("batch", "D")
    out = cad.vmap(lambda r: r.sum("batch"), in_dims="D")(x)
    assert out.shape == (4,) and out.names == ("D",)
    assert cad.vmap(lambda r: r.sum("D"))(x).names == ("batch",)
    assert cad.vmap(cad.grad(lambda r: (r * w).sum()))(x).names == ("batch", "D")
    with pytest.raises(cad.NamesError, match="no dim named"):
        cad.vmap(lambda r: r, in_dims="nope")(x)


def test_record_replay_keeps_and_checks_names():
    x = nm(3, 4, names=("a", "b"))
    w = nm(4, 5, names=("b", "c"))
    tape = cad.record(lambda x, w: ((x @ w).tanh().sum("c"), x.sum("a")), x, w)
    o1, o2 = tape(x, w)
    assert o1.names == ("a",) and o2.names == ("b",)
    o1, _ = tape(cad.randn(3, 4), cad.randn(4, 5))   # unnamed inputs: the recorded names
    assert o1.names == ("a",)
    with pytest.raises(cad.NamesError, match="recorded with"):
        tape(x.rename("a", "z"), w)
    t2 = cad.record(lambda x, w: (x @ w).tanh().sum(), x, w)
    gx, gw = t2.grad(x, w)
    assert gx.names == ("a", "b") and gw.names == ("b", "c")
    assert t2.jacobian(x, w).names == ("a", "b")
    assert t2.hessian(x, w).names == ("a", "b", "a'", "b'")
    b = io.BytesIO()
    cad.save(t2, b)
    b.seek(0)
    t3 = cad.load(b)
    assert [g.names for g in t3.grad(x, w)] == [("a", "b"), ("b", "c")]


def test_save_load_pickle_keep_names(tmp_path):
    x = nm(3, 4, names=("a", None), rg=True)
    for path in (tmp_path / "x.cad", tmp_path / "x.safetensors"):
        cad.save({"x": x, "u": cad.ones(2)}, path)
        d = cad.load(path)
        assert d["x"].names == ("a", None) and d["u"].names == (None,)
    assert pickle.loads(pickle.dumps(x)).names == ("a", None)
    assert x.detach().names == ("a", None) and x.clone().names == ("a", None)
    assert x.cpu().names == ("a", None) and x.to(cad.float32).names == ("a", None)


def test_load_rejects_bad_names(tmp_path):
    import json
    import struct
    p = tmp_path / "x.cad"
    cad.save(cad.ones(2, names=("a",)), p)
    raw = p.read_bytes()
    assert b'"names"' in raw
    bad = raw.replace(b'"names": ["a"]', b'"names": [7  ]')
    if bad == raw:
        bad = raw.replace(b'"names":["a"]', b'"names":[7  ]')
    assert bad != raw
    p.write_bytes(bad)
    with pytest.raises(cad.FormatError, match="names"):
        cad.load(p)
    del json, struct


def test_unnamed_paths_unchanged_after_names_on():
    """once some tensor has names, unnamed code gives the same values and no names"""
    cad.ones(2, names=("a",))
    x = cad.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    y = (x.sum(0) * cad.tensor([1.0, 2.0, 3.0])).sum()
    y.backward()
    assert x.grad.names == (None, None)
    np.testing.assert_allclose(np.asarray(x.grad), np.tile([1.0, 2.0, 3.0], (2, 1)))
    assert cad.cross_entropy(cad.ones(2, 3), cad.tensor(np.array([0, 1]))).names == ()


def test_cuda_tensors_keep_names():
    """on the GPU, or the fake device that runs the CUDA kernels on the host"""
    if not cad.cuda.is_available():
        cad.cuda._use_fake()
    x = cad.ones(2, 3, names=("a", "b"), device="cuda")
    assert x.names == ("a", "b")
    assert (x * 2).sum("b").names == ("a",)
    assert x.cpu().names == ("a", "b")


def test_threads_check_names_independently():
    """a rule running its body (names suspended) in one thread does not switch name
    checking off in another"""
    import threading
    errors, ok = [], []
    a = nm(50, 3, names=("a", "b"))

    def bad():
        for _ in range(200):
            try:
                a + nm(3, names=("z",))
            except cad.NamesError:
                ok.append(1)
            else:
                errors.append("no error")

    def busy():
        for _ in range(200):
            cad.softmax(a, axis="b").sum("a")   # rules that suspend names while they run

    ts = [threading.Thread(target=bad), threading.Thread(target=busy), threading.Thread(target=busy)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(ok) == 200


def test_error_paths_name_what_is_wrong():
    x = nm(2, 3, names=("a", "b"))
    with pytest.raises(cad.NamesError, match="no dim named 'q'"):
        x.rename(q="r")
    with pytest.raises(cad.NamesError, match="unnamed"):
        cad.ones(2, 3).align_to("a", "b")
    with pytest.raises(TypeError, match="str or None"):
        cad.ones(2, names=(3,))
    with pytest.raises(TypeError, match="either"):
        x.rename("p", "q", a="z")
    with pytest.raises(cad.NamesError, match="'...' appears twice"):
        x.align_to("...", "...")
    with pytest.raises(cad.NamesError, match="twice"):
        cad.outer(nm(2, names=("a",)), nm(2, names=("a",)))
    with pytest.raises(cad.NamesError, match=r"'a'.*'b'.*same position"):
        nm(2, 3, names=("a", "x")) * nm(4, 2, 3, names=(None, "b", "x"))
