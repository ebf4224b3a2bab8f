"""Calls that leave nothing for the garbage collector: a reference cycle through a
transform or the checkpoint code kept tapes (and arrays, file buffers) alive until a
collection, and the next tape of that size paid a page fault per 4 KB (found through
grad(grad(f)): 930 -> 360 us on a 3000-op chain)."""
import numpy as np

import cad


def test_transforms_leave_no_reference_cycles():
    """a transform's call leaves nothing for the garbage collector: the pytree walks were
    closures calling themselves (a cycle through their cell) holding the leaves, and so
    each call's tape (grad(grad) of a 1000-op chain: ~600 KB) lived until a collection,
    which cost a page fault per 4 KB on the next call (tree.py's comment)"""
    import gc
    chain = lambda x: cad.sin(cad.sin(x) * 0.9 + 0.1) * x
    calls = [lambda: cad.grad(cad.grad(chain))(0.3),
             lambda: cad.hessian(lambda v: cad.sum(cad.sin(v) ** 2))(np.ones(3)),
             lambda: cad.vmap(cad.grad(lambda v: cad.sum(cad.sin(v))))(np.ones((4, 3))),
             lambda: cad.grad(lambda p: cad.sum(p["a"] * p["b"]))({"a": np.ones(3), "b": np.ones(3)}),
             lambda: cad.tree_unflatten(cad.tree_flatten({"a": (1, 2), "b": [3]})[1], iter([5, 6, 7]))]
    for fn in calls:
        fn()
        fn()
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for fn in calls:
            fn()
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()


def test_tree_unflatten_takes_an_iterator():
    leaves, d = cad.tree_flatten({"a": (1, 2), "b": [3]})
    assert cad.tree_unflatten(d, (v * 10 for v in leaves)) == {"a": (10, 20), "b": [30]}


def test_save_and_load_leave_no_reference_cycles(tmp_path):
    """cad.save / cad.load's recursive walks were closures calling themselves: a cycle
    that held the arrays (on load, the file's buffer) until a collection"""
    import gc
    obj = {"w": cad.tensor(np.ones(3), requires_grad=True), "l": [1, 2.0, "s", (np.zeros(2),)]}
    p = str(tmp_path / "a.safetensors")
    cad.save(obj, p)
    cad.load(p)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(3):
            cad.save(obj, p)
            got = cad.load(p)
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()
    np.testing.assert_array_equal(np.asarray(got["w"]), np.ones(3))
