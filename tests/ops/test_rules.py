"""The numerical-gradient suite, generated from the op table: every op, every case
(0-d, broadcasting, non-contiguous and empty inputs): forward against numpy, the
vjp against central finite differences in float64.  A new op with cases is tested
here without new test code."""
import numpy as np
import pytest

import cad
from cad._core import _engine
from cad.ops import REGISTRY, primitives
from cad.testing import gradcheck, gradgradcheck

ALL = [(op, c) for op in REGISTRY.values() for c in op.cases]


def _domain(op, k):
    d = op.domain
    if isinstance(d[0], tuple):
        return d[k] if k < len(d) else d[-1]
    return d


def build(op, case, seed=0):
    """cad inputs (leaves), a function of the leaves that calls the op, and the
    numpy reference value"""
    rng = np.random.default_rng(seed)
    leaves, np_args, makers = [], [], []
    for k, spec in enumerate(case.inputs):
        lo, hi = _domain(op, k)
        if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
            kind, val = spec
        else:
            kind, val = "A", spec
        if kind in ("A", "T", "S"):
            shape = tuple(val)
            if kind == "S":
                shape = (2 * shape[0],) + shape[1:]
            base = rng.uniform(lo, hi, size=shape[::-1] if kind == "T" else shape)
            a = base.T if kind == "T" else base
            leaf = cad.tensor(a, requires_grad=op.differentiable)
            if kind == "T" and a.ndim > 1:
                assert not np.asarray(leaf).flags.c_contiguous
            leaves.append(leaf)
            if kind == "S":
                np_args.append(a[::2])
                makers.append(lambda ls, i=len(leaves) - 1: ls[i][::2])
            else:
                np_args.append(a)
                makers.append(lambda ls, i=len(leaves) - 1: ls[i])
        elif kind == "V":
            leaves.append(cad.tensor(val, requires_grad=op.differentiable))
            np_args.append(np.asarray(val))
            makers.append(lambda ls, i=len(leaves) - 1: ls[i])
        elif kind in ("I", "B", "F"):
            t = cad.tensor(val)
            np_args.append(np.asarray(val))
            makers.append(lambda ls, t=t: t)
        elif kind == "C":
            np_args.append(val)
            makers.append(lambda ls, v=val: v)
        else:
            raise ValueError(kind)

    def call(*ls):
        xs = [m(ls) for m in makers]
        if op.seq:
            return op.api(xs, **case.kwargs)
        return op.api(*xs, **case.kwargs)
    return leaves, call, np_args


def ids(p):
    op, c = p
    return f"{op.name}[{c!r}]"


@pytest.mark.parametrize("op,case", ALL, ids=[ids(p) for p in ALL])
def test_forward_matches_numpy(op, case):
    leaves, call, np_args = build(op, case)
    got = call(*leaves)
    want = op.ref(*np_args, **case.kwargs)
    got_a = np.asarray(got)
    rtol, atol = op.tol or (1e-12, 1e-12)
    assert got_a.shape == np.shape(want), (got_a.shape, np.shape(want))
    np.testing.assert_allclose(got_a, want, rtol=rtol, atol=atol)
    if isinstance(want, np.ndarray) and want.dtype.kind in "fb" and op.name != "astype":
        assert got_a.dtype == want.dtype


GRAD = [(op, c) for op, c in ALL if op.differentiable and
        any(not (isinstance(s, tuple) and s and s[0] in ("I", "B", "F", "C")) for s in c.inputs)]


@pytest.mark.parametrize("op,case", GRAD, ids=[ids(p) for p in GRAD])
def test_vjp_matches_finite_differences(op, case):
    leaves, call, _ = build(op, case)
    rtol, atol = op.tol or (1e-3, 1e-5)
    assert gradcheck(call, tuple(leaves), eps=op.fd_eps, atol=atol, rtol=rtol)


@pytest.mark.parametrize("op,case", GRAD, ids=[ids(p) for p in GRAD])
def test_vjp_with_threads_matches_serial(op, case):
    """the same gradients when every kernel is forced onto several threads"""
    leaves, call, _ = build(op, case, seed=1)
    y = call(*leaves)
    seed = np.random.default_rng(2).standard_normal(y.shape)
    g1 = cad.autograd.grad(call(*leaves), leaves, grad_outputs=cad.tensor(seed), allow_unused=True)
    old = _engine._set_parallel_min(1)
    n = cad.get_num_threads()
    cad.set_num_threads(2)
    try:
        g2 = cad.autograd.grad(call(*leaves), leaves, grad_outputs=cad.tensor(seed), allow_unused=True)
    finally:
        _engine._set_parallel_min(old)
        cad.set_num_threads(n)
    for a, b in zip(g1, g2):
        if a is None:
            assert b is None
        else:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-14)


def test_every_primitive_is_exercised_by_the_suite():
    seen = set()
    for op, case in GRAD:
        leaves, call, _ = build(op, case)
        y = call(*leaves)
        tape = _engine._tape_of(y)
        if tape is not None:
            seen.update(tape.ops())
    # bool ops have no gradient: their forward is checked above and in the replay suite;
    # to_device moves values between devices: tests/test_cuda.py exercises it; custom
    # records user primitives: tests/test_custom.py and tests/test_linalg.py
    missing = {op.name for op in primitives() if op.kind not in ("bool", "transfer", "custom")} - seen
    assert not missing, f"primitives no test case records: {sorted(missing)}"


def test_table_is_complete():
    for op in REGISTRY.values():
        internal = not op.export and op.api is None   # exercised through other ops (checked above)
        assert op.cases or internal, f"op {op.name} has no test cases"
        if op.kind == "ew":
            for a in op.args:
                assert a in op.d or a in op.nondiff_args, f"{op.name}: no derivative for {a}"
        if op.primitive and op.kind not in ("ew", "bool"):
            assert op.kernel, f"primitive {op.name} names no vjp kernel"
        if op.primitive:   # NOTE [ A primitive's rules ]: every filled slot, for every primitive
            assert op.vjp_rule and op.jvp_rule, f"primitive {op.name} lacks a differentiable rule"
            assert op.eval_rule, f"primitive {op.name} lacks an eval rule"
        if op.bilinear:   # NOTE [ Linear and bilinear ops ]: the jvp is derived, never written
            assert op.apply_rule and op.jvp_rule.__qualname__.startswith("bilinear_jvp"), \
                f"bilinear op {op.name}: its jvp must come from its apply rule"
            assert len(op.args or op.linear) == 2 and set(op.linear) == set(
                p for p in op.api.__wrapped__.__code__.co_varnames[:2]), op.name
            # the loader's check (cad/io.py reads it); cad.save refuses a tape with a
            # custom record, and cad.record one with CUDA values (no to_device record)
            assert op.check_rule or op.kind in ("transfer", "custom"), \
                f"primitive {op.name} lacks a loader check rule"
        if op.export:
            assert getattr(cad, op.name) is op.api, f"cad.{op.name} is not the table's function"
        if op.ref is None and op.name not in ("view", "gather", "cast", "xent", "custom"):
            pytest.fail(f"op {op.name} has no numpy reference")


def test_generated_files_are_current():
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    gen = os.path.join(root, "tools", "gen_ops.py")
    if not os.path.exists(gen) or not os.path.exists(os.path.join(root, "cad_kernels", "cpu", "_gen_ops.c")):
        pytest.skip("not a source checkout")
    r = subprocess.run([sys.executable, gen, "--check"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, "rebuild: " + r.stdout


F32 = [(op, c) for op, c in GRAD if op.name not in ("astype",)]


@pytest.mark.parametrize("op,case", F32, ids=[ids(p) for p in F32])
def test_float32_matches_float64(op, case):
    """the float32 kernels: same values and gradients as float64, to float32 precision"""
    leaves, call, _ = build(op, case)
    leaves32 = [cad.tensor(np.asarray(x), dtype=cad.float32, requires_grad=True) for x in leaves]
    y64 = call(*leaves)
    y32 = call(*leaves32)
    has_f64_data = any(isinstance(s, tuple) and s and s[0] == "F" for s in case.inputs)
    assert y32.dtype == (np.float64 if has_f64_data else np.float32)
    np.testing.assert_allclose(np.asarray(y32, dtype=np.float64), np.asarray(y64), rtol=2e-5, atol=2e-5)
    seed = np.random.default_rng(3).standard_normal(y64.shape)
    g64 = cad.autograd.grad(y64, leaves, grad_outputs=cad.tensor(seed), allow_unused=True)
    g32 = cad.autograd.grad(y32, leaves32, grad_outputs=cad.tensor(seed, dtype=y32.dtype),
                            allow_unused=True)
    for a, b in zip(g64, g32):
        if a is None:
            assert b is None
            continue
        assert b.dtype == np.float32
        np.testing.assert_allclose(np.asarray(b, dtype=np.float64), np.asarray(a), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op,case", GRAD, ids=[ids(p) for p in GRAD])
def test_jvp_matches_finite_differences(op, case):
    """forward mode: every op's JVP rule against central differences"""
    leaves, call, _ = build(op, case)
    rtol, atol = op.tol or (1e-3, 1e-5)
    assert gradcheck(call, tuple(leaves), eps=op.fd_eps, atol=atol, rtol=rtol, modes=("fwd",))


SECOND = [(op, c) for op, c in GRAD if op.second_order and op.name != "astype"]


@pytest.mark.parametrize("op,case", SECOND, ids=[ids(p) for p in SECOND])
def test_second_derivatives_reverse_over_reverse(op, case):
    """create_graph=True: the recorded backward is differentiated again"""
    leaves, call, _ = build(op, case)
    assert gradgradcheck(call, tuple(leaves), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("op,case", SECOND, ids=[ids(p) for p in SECOND])
def test_second_derivatives_every_mode_pair(op, case):
    """fwd-over-fwd, fwd-over-rev, rev-over-fwd, rev-over-rev (HIPS check_grads order=2)"""
    leaves, call, _ = build(op, case)
    assert gradcheck(call, tuple(leaves), atol=1e-4, rtol=1e-3, modes=("fwd", "rev"), order=2)


@pytest.mark.parametrize("op,case", GRAD, ids=[ids(p) for p in GRAD])
def test_jacfwd_equals_jacrev(op, case):
    leaves, call, _ = build(op, case)
    n = len(leaves)
    jr = cad.jacrev(call, argnums=tuple(range(n)))(*leaves)
    jf = cad.jacfwd(call, argnums=tuple(range(n)))(*leaves)
    for a, b in zip(jr, jf):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
