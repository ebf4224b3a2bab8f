"""Checkpoints in the safetensors format (issue 15; NOTE [ Checkpoints (safetensors) ]
in cad/io.py): round trips, an optimizer's state continuing training, the files read by
the safetensors package's own loaders (when installed), and hostile files (loaded in a
child process: a signal is a failure) raising cad.FormatError."""
import io
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import cad
from cad.io import _st_digest

HERE = os.path.dirname(os.path.abspath(__file__))


def _same(a, b):
    """a and b equal as nested values: types, tensors' dtype/shape/values/requires_grad"""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, cad.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
        assert np.array_equal(a.detach().numpy(), b.detach().numpy(), equal_nan=a.dtype.kind == "f")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def _nested():
    g = cad.randn(4, 3)
    return {
        "w": cad.randn(3, 4, requires_grad=True),
        "w32": cad.randn(5, dtype="float32", requires_grad=True),
        "b": cad.tensor(1.5),
        "scalar32": cad.tensor(2.0, dtype="float32"),
        "empty": cad.zeros(0, 3),
        "ints": cad.tensor([1, -2, 3 << 40]),
        "mask": cad.tensor([True, False, True]),
        "noncontig": g.T,
        "strided": cad.arange(10.0)[::3],
        "arr": np.arange(6, dtype=np.int64).reshape(2, 3),
        "numbers": [1, 2.5, -0.0, float("inf"), float("nan"), True, None, "text", 10 ** 30],
        "tup": (cad.ones(2), (3, [cad.zeros(1, 1, 1)])),
        7: {"int key": 1, 0: cad.ones(1)},
        "a.b": cad.ones(1),                       # its name collides with the next one's path
        "a": {"b": cad.zeros(1)},
        "": [],
        "deep": {"x": [{"y": (cad.tensor(3.0, requires_grad=True),)}]},
    }


@pytest.mark.parametrize("obj", [
    cad.randn(2, 3),
    cad.randn(2, requires_grad=True),
    cad.tensor(3.0),
    [],
    {},
    (),
    [1, 2.0, None],
    "just a string",
    np.ones((2, 0)),
], ids=lambda o: type(o).__name__)
def test_round_trip_simple(obj, tmp_path):
    p = tmp_path / "x.safetensors"
    cad.save(obj, p)
    _same(obj, cad.load(p))


def test_round_trip_nested(tmp_path):
    obj = _nested()
    p = tmp_path / "ckpt.safetensors"
    cad.save(obj, p)
    with open(p, "rb") as f:
        raw = f.read()
    assert raw[8:9] == b"{" and struct.unpack("<Q", raw[:8])[0] % 8 == 0
    got = cad.load(p)
    _same(obj, got)
    assert got["w"].is_leaf and got["w"].requires_grad and not got["b"].requires_grad
    (got["w"] * 2).sum().backward()                # a leaf that trains
    assert np.array_equal(got["w"].grad.numpy(), np.full((3, 4), 2.0))


def test_format_selection(tmp_path):
    """by suffix or format=; a file object by its name; cad.load tells them apart"""
    t = {"w": cad.ones(2, requires_grad=True)}
    cad.save(t, tmp_path / "a.safetensors")
    cad.save(t, tmp_path / "a.cad")
    cad.save(t, tmp_path / "b.bin", format="safetensors")
    buf = io.BytesIO()
    cad.save(t, buf, format="safetensors")
    buf2 = io.BytesIO()
    cad.save(t, buf2)
    assert (tmp_path / "a.cad").read_bytes()[:4] == b"CAD\x00"
    assert buf2.getvalue()[:4] == b"CAD\x00"
    for raw in [(tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.bin").read_bytes(), buf.getvalue()]:
        assert raw[8:9] == b"{"
    with open(tmp_path / "c.safetensors", "wb") as f:         # file object: its name decides
        cad.save(t, f)
    assert (tmp_path / "c.safetensors").read_bytes()[8:9] == b"{"
    for name in ["a.safetensors", "a.cad", "b.bin", "c.safetensors"]:
        _same(t, cad.load(tmp_path / name))      # requires_grad kept in both formats
    buf.seek(0)
    _same(t, cad.load(buf))
    with pytest.raises(ValueError, match="format"):
        cad.save(t, tmp_path / "x", format="pickle")
    tape = cad.record(lambda x: (x * x).sum(), cad.ones(2))
    with pytest.raises(TypeError, match="tape"):
        cad.save(tape, tmp_path / "t.safetensors")
    with pytest.raises(TypeError, match="keys"):
        cad.save({1.5: cad.ones(1)}, tmp_path / "k.safetensors")
    with pytest.raises(TypeError, match="cannot save"):
        cad.save({"f": object()}, tmp_path / "o.safetensors")
    with pytest.raises(TypeError):
        cad.save(cad.ones(1), 5, format="safetensors")


def test_numpy_and_python_scalars_inside(tmp_path):
    obj = {"a": np.float64(1.5), "b": np.int32(3), "c": np.bool_(True)}
    cad.save(obj, tmp_path / "s.safetensors")
    got = cad.load(tmp_path / "s.safetensors")
    assert got == {"a": 1.5, "b": 3, "c": True} and type(got["b"]) is int and type(got["c"]) is bool


def _train_steps(params, opt, sched, xs, n):
    for k in range(n):
        opt.zero_grad()
        x = xs[k % len(xs)]
        loss = (cad.tanh(x @ params["w"] + params["b"]) ** 2).sum()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("kind", ["Adam", "AdamW", "SGD"])
def test_optimizer_state_round_trip_continues_identically(kind, tmp_path):
    rng = np.random.default_rng(0)
    xs = [cad.tensor(rng.standard_normal((4, 3))) for _ in range(5)]

    def fresh(params):
        kw = dict(lr=0.05, momentum=0.9) if kind == "SGD" else dict(lr=0.05, amsgrad=True)
        opt = getattr(cad.optim, kind)([params["w"], params["b"]], **kw)
        sched = cad.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
        return opt, sched

    p1 = {"w": cad.tensor(rng.standard_normal((3, 2)), requires_grad=True),
          "b": cad.tensor(rng.standard_normal(2), requires_grad=True)}
    o1, s1 = fresh(p1)
    _train_steps(p1, o1, s1, xs, 6)
    ck = tmp_path / "ck.safetensors"
    cad.save({"params": p1, "opt": o1.state_dict(), "sched": s1.state_dict(), "epoch": 6}, ck)
    _train_steps(p1, o1, s1, xs, 5)                      # the uninterrupted run

    got = cad.load(ck)                                   # a fresh start from the checkpoint
    assert got["epoch"] == 6 and isinstance(next(iter(got["opt"]["state"])), int)
    p2 = got["params"]
    assert p2["w"].requires_grad and p2["w"].is_leaf
    o2, s2 = fresh(p2)
    o2.load_state_dict(got["opt"])
    s2.load_state_dict(got["sched"])
    _train_steps(p2, o2, s2, xs, 5)
    for k in p1:
        assert np.array_equal(p1[k].detach().numpy(), p2[k].detach().numpy()), k


def test_optimizer_state_dict_round_trip_exact(tmp_path):
    p = [cad.randn(3, requires_grad=True), cad.randn(2, 2, dtype="float32", requires_grad=True)]
    opt = cad.optim.Adam([{"params": p[:1]}, {"params": p[1:], "lr": 0.01}], lr=0.1, amsgrad=True)
    for _ in range(3):
        opt.zero_grad()
        (p[0].sum() + (p[1] ** 2).sum()).backward()
        opt.step()
    sd = opt.state_dict()
    cad.save(sd, tmp_path / "o.safetensors")
    _same(sd, cad.load(tmp_path / "o.safetensors"))


# ---------------------------------------------------------------- the safetensors package


def test_read_by_safetensors_numpy(tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    obj = _nested()
    p = tmp_path / "c.safetensors"
    cad.save(obj, p)
    arrays = sn.load_file(str(p))
    assert arrays["w"].dtype == np.float64 and arrays["w32"].dtype == np.float32
    np.testing.assert_array_equal(arrays["w"], obj["w"].detach().numpy())
    np.testing.assert_array_equal(arrays["noncontig"], obj["noncontig"].numpy())
    np.testing.assert_array_equal(arrays["strided"], [0.0, 3.0, 6.0, 9.0])
    np.testing.assert_array_equal(arrays["mask"], [True, False, True])
    assert arrays["empty"].shape == (0, 3) and arrays["b"].shape == ()
    np.testing.assert_array_equal(arrays["7.0"], [1.0])
    np.testing.assert_array_equal(arrays["deep.x.0.y.0"], 3.0)
    assert {"a.b", "a.b~1"} <= set(arrays)
    from safetensors import safe_open
    with safe_open(str(p), framework="numpy") as f:
        meta = f.metadata()
    assert meta["format"] == "cad" and json.loads(meta["cad"])["version"] == 1


def test_read_by_safetensors_torch(tmp_path):
    pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    obj = {"layer": {"w": cad.randn(4, 3, requires_grad=True), "b": cad.randn(4, dtype="float32")},
           "steps": cad.tensor([1, 2, 3]), "on": cad.tensor(True)}
    p = tmp_path / "t.safetensors"
    cad.save(obj, p)
    ts = st.load_file(str(p))
    assert set(ts) == {"layer.w", "layer.b", "steps", "on"}
    np.testing.assert_array_equal(ts["layer.w"].numpy(), obj["layer"]["w"].detach().numpy())
    assert str(ts["layer.b"].dtype) == "torch.float32" and str(ts["steps"].dtype) == "torch.int64"
    assert ts["on"].item() is True


def test_load_files_from_the_safetensors_package(tmp_path):
    """a file another tool wrote (no cad metadata) loads as {name: tensor}"""
    sn = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.arange(6.0).reshape(2, 3), "i": np.array([1, 2], dtype=np.int32),
              "h": np.array([0.5], dtype=np.float16), "u": np.array([255], dtype=np.uint8),
              "z": np.zeros((0,), dtype=np.float32)}
    p = str(tmp_path / "np.safetensors")
    sn.save_file(arrays, p, metadata={"format": "np"})
    got = cad.load(p)
    assert set(got) == set(arrays)
    np.testing.assert_array_equal(got["a"].numpy(), arrays["a"])
    assert str(got["i"].dtype) == "int64" and got["i"].tolist() == [1, 2]
    assert str(got["h"].dtype) == "float32" and got["u"].tolist() == [255]
    sn.save_file({"bf": np.zeros(2, dtype=np.float64)}, p)
    with open(p, "rb") as fh:
        raw = fh.read()
    n = struct.unpack("<Q", raw[:8])[0]
    bad = raw[:8] + raw[8:8 + n].replace(b'"F64"', b'"C64"') + raw[8 + n:]
    with pytest.raises(cad.FormatError, match="dtype 'C64'"):
        cad.io.loads(bad)


def test_cuda_tensors_saved_from_host(tmp_path):
    if not cad.cuda.is_available():
        pytest.skip("no CUDA device")
    x = cad.randn(3, 2).to("cuda").requires_grad_()
    cad.save({"x": x}, tmp_path / "g.safetensors")
    got = cad.load(tmp_path / "g.safetensors")["x"]
    assert not got.is_cuda and got.requires_grad
    np.testing.assert_array_equal(got.detach().numpy(), x.detach().to("cpu").numpy())


# ---------------------------------------------------------------- hostile files


def _file(header, buf, pad=True, meta=None):
    """safetensors bytes from a header dict (tensor table, and __metadata__ if given)"""
    h = dict(header)
    if meta is not None:
        h["__metadata__"] = meta
    hb = json.dumps(h).encode()
    if pad:
        hb += b" " * ((-len(hb)) % 8)
    return struct.pack("<Q", len(hb)) + hb + buf


def _cad_meta(value, table, buf, **over):
    m = {"version": 1, "sha256": _st_digest(value, table, buf), "value": value}
    m.update(over)
    return {"format": "cad", "cad": json.dumps(m)}


def _hostile_files():
    """(id, bytes) of files that must raise FormatError"""
    good_obj = {"w": cad.randn(2, 3, requires_grad=True), "n": [1, 2.5], "i": cad.tensor([4, 5])}
    b = io.BytesIO()
    cad.save(good_obj, b, format="safetensors")
    good = b.getvalue()
    out = [(f"truncated to {n}", good[:n]) for n in range(len(good))]
    n = struct.unpack("<Q", good[:8])[0]
    for hl in [n + 1, len(good), 1 << 40, (1 << 63) - 1, (1 << 64) - 1, 100_000_001]:
        out.append((f"header length {hl}", struct.pack("<Q", hl) + good[8:]))
    out.append(("header length 0", struct.pack("<Q", 0) + b"{}"))
    out.append(("trailing byte", good + b"\0"))
    w = {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}
    buf16 = np.arange(2.0).tobytes()
    T = [
        ("bad json", b"{\"w\": {\"dtype\": ", b""),
        ("not utf-8", b"{\"w\xff\": 1}", b""),
        ("json array", b"{}", None),
        ("nan in table", b"{\"w\": NaN}", b""),
    ]
    for tid, hb, bf in T:
        if bf is None:
            continue
        out.append((tid, struct.pack("<Q", len(hb)) + hb + bf))
    out.append(("header a list", struct.pack("<Q", 4) + b"{  }"[:0] + b"[1] "))   # not '{': not detected
    dup = b'{"w": %s, "w": %s}' % (json.dumps(w).encode(), json.dumps(w).encode())
    out.append(("duplicate key", struct.pack("<Q", len(dup)) + dup + buf16))
    cases = {
        "entry not an object": ({"w": 5}, buf16),
        "entry extra key": ({"w": dict(w, extra=1)}, buf16),
        "entry missing key": ({"w": {"dtype": "F64", "shape": [2]}}, buf16),
        "dtype unknown": ({"w": dict(w, dtype="F65")}, buf16),
        "dtype lowercase": ({"w": dict(w, dtype="f64")}, buf16),
        "dtype int": ({"w": dict(w, dtype=64)}, buf16),
        "dtype BF16": ({"w": {"dtype": "BF16", "shape": [8], "data_offsets": [0, 16]}}, buf16),
        "dtype C64": ({"w": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}, buf16),
        "shape negative": ({"w": dict(w, shape=[-2])}, buf16),
        "shape float": ({"w": dict(w, shape=[2.0])}, buf16),
        "shape not list": ({"w": dict(w, shape=2)}, buf16),
        "shape huge": ({"w": dict(w, shape=[1 << 40, 1 << 40])}, buf16),
        "shape 40 dims": ({"w": dict(w, shape=[1] * 40)}, buf16),
        "shape vs bytes": ({"w": dict(w, shape=[3])}, buf16),
        "shape bool": ({"w": dict(w, shape=[True, True])}, buf16),
        "offsets reversed": ({"w": dict(w, data_offsets=[16, 0])}, buf16),
        "offsets negative": ({"w": dict(w, data_offsets=[-16, 0])}, buf16),
        "offsets three": ({"w": dict(w, data_offsets=[0, 8, 16])}, buf16),
        "offsets float": ({"w": dict(w, data_offsets=[0.0, 16.0])}, buf16),
        "offsets out of range": ({"w": dict(w, data_offsets=[8, 24])}, buf16),
        "offsets past the end": ({"w": dict(w, data_offsets=[0, 16])}, buf16[:8]),
        "offsets huge": ({"w": dict(w, data_offsets=[1 << 62, (1 << 62) + 16])}, buf16),
        "overlap": ({"w": w, "v": dict(w)}, buf16),
        "overlap partial": ({"w": w, "v": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}},
                            buf16 + bytes(8)),
        "gap": ({"w": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}}, buf16),
        "gap between": ({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]},
                         "v": {"dtype": "F64", "shape": [1], "data_offsets": [16, 24]}}, bytes(24)),
        "buffer longer": ({"w": w}, buf16 + bytes(8)),
        "metadata not object": ({"w": w, "__metadata__": [1]}, buf16),
        "metadata non-string value": ({"w": w, "__metadata__": {"format": 5}}, buf16),
    }
    for cid, (hdr, bf) in cases.items():
        out.append((cid, _file(hdr, bf)))
    table = {"w": w}
    ok_val = {"t": "dict", "items": [["w", {"t": "tensor", "name": "w", "dtype": "F64", "shape": [2],
                                            "rg": True}]]}
    lies = {
        "meta names a missing tensor": {"t": "tensor", "name": "nope", "dtype": "F64", "shape": [2], "rg": False},
        "meta leaves a tensor out": {"t": "list", "items": []},
        "meta names a tensor twice": {"t": "list", "items": [ok_val["items"][0][1]] * 2},
        "meta dtype lies": {"t": "tensor", "name": "w", "dtype": "F32", "shape": [2], "rg": False},
        "meta shape lies": {"t": "tensor", "name": "w", "dtype": "F64", "shape": [2, 1], "rg": False},
        "meta rg not bool": {"t": "tensor", "name": "w", "dtype": "F64", "shape": [2], "rg": 1},
        "meta unknown t": {"t": "pickle", "items": []},
        "meta t missing": {"items": []},
        "meta extra key": dict(ok_val, extra=1),
        "meta dict items not pairs": {"t": "dict", "items": [["w"]]},
        "meta dict key float": {"t": "dict", "items": [[1.5, ok_val["items"][0][1]]]},
        "meta dict dup key": {"t": "dict", "items": [["a", {"t": "py", "v": 1}], ["a", ok_val["items"][0][1]]]},
        "meta dict items object": {"t": "dict", "items": {"w": ok_val["items"][0][1]}},
        "meta list items object": {"t": "list", "items": {"0": 1}},
        "meta py value list": {"t": "list", "items": [{"t": "py", "v": [1]}, ok_val["items"][0][1]]},
        "meta nested 200": None,
    }
    for cid, val in lies.items():
        if val is None:
            val = ok_val
            for _ in range(200):
                val = {"t": "list", "items": [val]}
        out.append((cid, _file(table, buf16, meta=_cad_meta(val, table, buf16))))
    int_table = {"i": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}
    rg_int = {"t": "tensor", "name": "i", "dtype": "I64", "shape": [2], "rg": True}
    out.append(("meta rg on int", _file(int_table, buf16, meta=_cad_meta(rg_int, int_table, buf16))))
    out.append(("meta sha wrong", _file(table, buf16, meta=_cad_meta(ok_val, table, buf16, sha256="0" * 64))))
    out.append(("meta sha not str", _file(table, buf16, meta=_cad_meta(ok_val, table, buf16, sha256=5))))
    out.append(("meta version 2", _file(table, buf16, meta=_cad_meta(ok_val, table, buf16, version=2))))
    out.append(("meta version true", _file(table, buf16, meta=_cad_meta(ok_val, table, buf16, version=True))))
    out.append(("meta not json", _file(table, buf16, meta={"format": "cad", "cad": "{nope"})))
    out.append(("meta a list", _file(table, buf16, meta={"format": "cad", "cad": "[]"})))
    out.append(("meta format changed", _file(table, buf16, meta=dict(_cad_meta(ok_val, table, buf16),
                                                                      format="pt"))))
    out.append(("meta cad key missing", _file(table, buf16, meta={"format": "cad"})))
    out.append(("meta extra key", _file(table, buf16, meta=dict(_cad_meta(ok_val, table, buf16), x="1"))))
    out.append(("data edited", _file(table, buf16[:-1] + b"\x01", meta=_cad_meta(ok_val, table, buf16))))
    # a number edited in the metadata (the digest covers the value spec)
    v2 = {"t": "list", "items": [ok_val, {"t": "py", "v": 0.1}]}
    f = _file(table, buf16, meta=_cad_meta(v2, table, buf16))
    out.append(("number edited", f.replace(b"0.1", b"0.3")))
    # the table edited consistently (shape [2] -> [1, 2]; metadata updated, digest not)
    t2 = {"w": dict(w, shape=[1, 2])}
    v3 = {"t": "tensor", "name": "w", "dtype": "F64", "shape": [1, 2], "rg": False}
    m3 = _cad_meta(v3, t2, buf16)
    m3["cad"] = m3["cad"].replace(_st_digest(v3, t2, buf16), _st_digest(v3, {"w": w}, buf16))
    out.append(("table edited", _file(t2, buf16, meta=m3)))
    # single-byte edits of a valid file: every one refused
    rng = np.random.default_rng(15)
    for k in rng.choice(len(good), size=min(len(good), 150), replace=False):
        x = int(rng.integers(1, 256))
        if good[k] == 0x20 and (0x20 ^ x) in (0x09, 0x0A, 0x0D):   # padding space to whitespace
            continue
        out.append((f"byte {k} ^ {x}", good[:k] + bytes([good[k] ^ x]) + good[k + 1:]))
    return [(i, r) for i, r in out if r is not None], good


_CHILD = r"""
import json, os, sys, cad
d = sys.argv[1]
for fn in sorted(os.listdir(d)):
    print("START " + fn, flush=True)
    try:
        cad.load(os.path.join(d, fn))
        err = None
    except BaseException as e:
        err = type(e).__name__ + ": " + str(e)[:200]
    print("DONE " + fn + " " + json.dumps(err), flush=True)
"""


def test_hostile_files_raise_format_error(tmp_path):
    files, good = _hostile_files()
    assert len(files) > 300
    names = {}
    for k, (cid, raw) in enumerate(files):
        fn = f"{k:04d}.safetensors"
        names[fn] = cid
        (tmp_path / fn).write_bytes(raw)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE)] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True,
                       timeout=600, env=env, stdin=subprocess.DEVNULL)
    started = None
    got = {}
    for line in p.stdout.splitlines():
        if line.startswith("START "):
            started = line.split()[1]
        elif line.startswith("DONE "):
            _, fn, rest = line.split(" ", 2)
            got[fn] = json.loads(rest)
    assert p.returncode == 0, (f"the child died (rc {p.returncode}) loading {names.get(started)!r}:\n"
                               f"{p.stderr[-2000:]}")
    bad = {names[fn]: err for fn, err in got.items() if not (err or "").startswith("FormatError:")}
    assert not bad, f"not refused with FormatError: {dict(list(bad.items())[:10])}"
    assert len(got) == len(files)
    assert cad.io.loads(good)["n"] == [1, 2.5]


def test_hand_made_file_loads():
    """the control for the hostile cases: a minimal hand-made file with cad metadata loads"""
    w = {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}
    buf = np.array([1.0, 2.0]).tobytes()
    val = {"t": "dict", "items": [[3, {"t": "tensor", "name": "w", "dtype": "F64", "shape": [2], "rg": True}]]}
    got = cad.io.loads(_file({"w": w}, buf, meta=_cad_meta(val, {"w": w}, buf)))
    assert list(got) == [3] and got[3].requires_grad and got[3].tolist() == [1.0, 2.0]
    got = cad.io.loads(_file({"w": w}, buf, pad=False))            # no padding, no metadata
    assert got["w"].tolist() == [1.0, 2.0]


def test_error_names_file_and_field(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(_file({"w": {"dtype": "F64", "shape": [3], "data_offsets": [0, 16]}}, bytes(16)))
    with pytest.raises(cad.FormatError, match=r"bad\.safetensors.*tensor 'w'.*needs 24"):
        cad.load(p)
    with pytest.raises(ValueError, match="not a cad file"):
        cad.io.loads(b"PK\x03\x04 a zip file, not a checkpoint")


def test_cad_format_keeps_requires_grad_and_checks_it():
    """cad's own format also keeps requires_grad now (an optional "rg" key: older files,
    which lack it, load as before)"""
    b = io.BytesIO()
    cad.save([cad.ones(2, requires_grad=True), cad.ones(2)], b)
    got = cad.io.loads(b.getvalue())
    assert [t.requires_grad for t in got] == [True, False]
    import hashlib
    raw = b.getvalue()
    hlen = struct.unpack("<Q", raw[8:16])[0]
    for repl, msg in [(b'"rg": 1', "expected true or false"), (b'"rg": true', "requires grad on a int64")]:
        h = raw[48:48 + hlen].replace(b'"rg": true', repl)
        if b"int64" in msg.encode():
            h = h.replace(b'"float64"', b'"int64"', 1)
        body = h + raw[48 + hlen:]
        bad = raw[:8] + struct.pack("<Q", len(h)) + hashlib.sha256(body).digest() + body
        with pytest.raises(cad.FormatError, match=msg):
            cad.io.loads(bad)


def test_bool_bytes_are_normalised():
    """a BOOL tensor's bytes other than 0 and 1 load as True (never as a bool byte of 7)"""
    raw = _file({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}}, bytes([0, 1, 7]))
    m = cad.io.loads(raw)["m"]
    assert m.tolist() == [False, True, True]
    assert m.numpy().view(np.uint8).tolist() == [0, 1, 1]
