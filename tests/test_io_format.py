"""cad.save / cad.load: the format (NOTE [ File format ] in cad/io.py), files written by
earlier versions, file objects, and the validating loader against crafted files."""
import copy
import hashlib
import io
import json
import os
import random
import struct

import numpy as np
import pytest

import cad

DATA = os.path.join(os.path.dirname(__file__), "data")


def _g(x, i):   # the function tests/data/v1_tape.cad was recorded from
    y = x[1:] * 2.0
    z = y[np.array([0, 1, 1])]
    z[0] = 3.0
    w = cad.concatenate([z, x], 0) @ cad.linspace(0., 1., 7)
    u = cad.ones((2, 3)) @ x[:3]
    return (w + cad.cross_entropy(x.reshape(1, 4), i) + cad.max(x, axis=0)
            + cad.sin(x.astype(cad.float32)).sum() + u.sum() + cad.where(x > 1, x, 0.0).sum())


def test_version1_tape_file_still_loads():
    t = cad.load(os.path.join(DATA, "v1_tape.cad"))
    x = np.array([0.3, 1.2, -0.7, 2.5])
    lab = np.array([2])
    np.testing.assert_allclose(float(t(x, lab)), 14.702018421306501, rtol=1e-6)
    np.testing.assert_allclose(float(t(x, lab)), float(_g(cad.tensor(x), lab)), rtol=1e-6)
    want = cad.grad(lambda v: _g(v, lab))(x)
    np.testing.assert_allclose(t.grad(x, lab)[0].numpy(), want.numpy(), rtol=1e-6)
    np.testing.assert_allclose(t.grad(x, lab)[0].numpy(),
                               [3.5331424093802806, 4.220396001888398, 3.6267987358997766,
                                2.9010556953627495], rtol=1e-6)


def test_version1_value_file_still_loads():
    v = cad.load(os.path.join(DATA, "v1_value.cad"))
    assert v["t"].tolist() == [[1., 2.], [3., 4.]]
    assert v["i"].dtype == cad.int64 and v["i"].tolist() == [1, 2, 3]
    assert v["b"].tolist() == [True, False]
    assert v["f32"].dtype == cad.float32
    assert v["py"] == [1, 2.5, "s", None, True]
    assert isinstance(v["tup"], tuple) and float(v["tup"][0]) == 2.0


def test_save_writes_version2_with_checksum():
    raw = _base()
    assert raw[:4] == b"CAD\x00" and struct.unpack("<I", raw[4:8])[0] == 2
    assert hashlib.sha256(raw[48:]).digest() == raw[16:48]


def test_paths_must_be_paths_or_files():
    with pytest.raises(TypeError, match="path"):
        cad.load(0)     # (an int is a file descriptor to open(); cad.load refuses it)
    with pytest.raises(TypeError, match="path"):
        cad.save(cad.ones(2), 1)


def test_file_objects():
    t = cad.record(lambda a, b: (cad.sin(a) * b).sum(), cad.ones(3), cad.ones(3))
    buf = io.BytesIO()
    cad.save(t, buf)
    buf.seek(0)
    t2 = cad.load(buf)
    x = cad.tensor([0.1, 0.2, 0.3])
    np.testing.assert_allclose(float(t2(x, x)), float(t(x, x)))
    buf = io.BytesIO()
    cad.save([cad.ones(2), 3], buf)
    buf.seek(0)
    assert cad.load(buf)[1] == 3
    with pytest.raises(TypeError, match="text mode"):
        cad.load(io.StringIO("CAD"))


def _parts(raw):
    v, hl = struct.unpack("<IQ", raw[4:16])
    fixed = 48 if v == 2 else 16
    return json.loads(raw[fixed:fixed + hl]), raw[fixed + hl:]


def _build(h, data, version=1):
    """a file of header h: version 1 (no checksum), or 2 with a correct checksum (the
    validation is what stands between such a file and C)"""
    hb = json.dumps(h).encode()
    if version == 1:
        return b"CAD\x00" + struct.pack("<IQ", 1, len(hb)) + hb + data
    return b"CAD\x00" + struct.pack("<IQ", 2, len(hb)) + hashlib.sha256(hb + data).digest() + hb + data


def _base():
    t = cad.record(lambda a, b: (cad.sin(a) * b).sum(), cad.ones(3), cad.ones(3))
    buf = io.BytesIO()
    cad.save(t, buf)
    return buf.getvalue()


def _swap(a, b):
    def f(h):
        ops = h["tape"]["ops"]
        i, j = ops.index(a), ops.index(b)
        ops[i], ops[j] = ops[j], ops[i]
    return f


def _set(path, value):
    def f(h):
        o = h
        for k in path[:-1]:
            o = o[k]
        o[path[-1]] = value
    return f


MUTATIONS = {
    "input handle 10**6": _set(("tape", "records", 0, 2, 0), 10 ** 6),
    "input handle -5": _set(("tape", "records", 0, 2, 0), -5),
    "output handle": _set(("tape", "records", 0, 1), 10 ** 6),
    "output handle reused": _set(("tape", "records", 1, 1), 2),
    "read before computed": _set(("tape", "records", 0, 2, 0), 3),
    "tape inputs": _set(("tape", "inputs", 0), 99),
    "tape inputs negative": _set(("tape", "inputs", 0), -1),
    "tape outputs": _set(("tape", "outputs", 0), 99),
    "tape outputs -5": _set(("tape", "outputs", 0), -5),
    "tape outputs empty": _set(("tape", "outputs"), []),
    "swapped sin/mul": _swap("sin", "mul"),
    "swapped sum/mul": _swap("sum", "mul"),
    "swapped sin/sum": _swap("sin", "sum"),
    "swapped mul/where": _swap("mul", "where"),
    "swapped sin/view": _swap("sin", "view"),
    "swapped sin/eq": _swap("sin", "eq"),
    "unknown op": _set(("tape", "ops", 3), "frobnicate"),
    "shape larger": _set(("tape", "bufs", 0, "shape"), [300]),
    "shape [-4]": _set(("tape", "bufs", 0, "shape"), [-4]),
    "shape of a record output": _set(("tape", "bufs", 2, "shape"), [4]),
    "shape 2**70": _set(("tape", "bufs", 2, "shape"), [2 ** 70]),
    "shape float": _set(("tape", "bufs", 2, "shape"), [3.0]),
    "33 dims": _set(("tape", "bufs", 2, "shape"), [1] * 33),
    "dtype unknown": _set(("tape", "bufs", 2, "dtype"), "complex128"),
    "dtype changed": _set(("tape", "bufs", 2, "dtype"), "float32"),
    "dtype int": _set(("tape", "bufs", 3, "dtype"), "int64"),
    "flags": _set(("tape", "bufs", 2, "flags"), 255),
    "inline constant 10**400": lambda h: h["tape"]["bufs"].__setitem__(4, {"dtype": "float64", "shape": [],
                                                                          "flags": 1, "value": 10 ** 400}),
    "inline on an array": _set(("tape", "bufs", 2, "flags"), 3),
    "aux garbage": _set(("tape", "records", 2, 3), [12345]),
    "aux huge": _set(("tape", "records", 2, 3), [2 ** 80]),
    "aux missing": _set(("tape", "records", 2, 3), []),
    "aux on sin": _set(("tape", "records", 0, 3), [1, 2]),
    "op index": _set(("tape", "records", 0, 0), 999),
    "record not a list": _set(("tape", "records", 0), "sin"),
    "record short": _set(("tape", "records", 0), [3, 2]),
    "records not a list": _set(("tape", "records"), {}),
    "input_shapes": _set(("tape", "input_shapes", 0), [4]),
    "input_dtypes": _set(("tape", "input_dtypes", 0), 7),
    "diff": _set(("tape", "diff"), [True]),
    "out_kind": _set(("tape", "out_kind"), "set"),
    "guard handle": _set(("tape", "guards"), [[99, {"dtype": "bool", "shape": [], "offset": 0}, "x"]]),
    "guard array": _set(("tape", "guards"), [[2, {"dtype": "bool", "shape": [10 ** 6], "offset": 0}, "x"]]),
    "kind": _set(("kind",), "pickle"),
    "no tape": lambda h: h.pop("tape"),
    "bufs missing": lambda h: h["tape"].pop("bufs"),
    "value array past data": _set(("tape", "bufs", 0), {"dtype": "float64", "shape": [3], "flags": 2,
                                                        "value": {"dtype": "float64", "shape": [3],
                                                                  "offset": 10 ** 9}}),
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_crafted_tape_files_raise_format_error(name, version):
    h, data = _parts(_base())
    h = copy.deepcopy(h)
    MUTATIONS[name](h)
    with pytest.raises(cad.FormatError) as e:
        t = cad.load(io.BytesIO(_build(h, data, version)))
        x = cad.ones(3)
        t(x, x)
        t.grad(x, x)
    assert "cad.load" in str(e.value) and "<BytesIO>" in str(e.value)
    assert isinstance(e.value, ValueError)


RAW = {
    "truncated half": lambda r: r[:len(r) // 2],
    "truncated 10": lambda r: r[:10],
    "truncated data": lambda r: r[:-8],
    "empty": lambda r: b"",
    "magic only": lambda r: b"CAD",
    "random bytes": lambda r: bytes(random.Random(0).getrandbits(8) for _ in range(200)),
    "header length 2**63": lambda r: r[:8] + struct.pack("<Q", 2 ** 63) + r[16:],
    "header length 0": lambda r: r[:8] + struct.pack("<Q", 0) + r[16:],
    "version 3": lambda r: r[:4] + struct.pack("<I", 3) + r[8:],
    "version 1 header of a version 2 file": lambda r: r[:4] + struct.pack("<I", 1) + r[8:],
    "checksum": lambda r: r[:20] + bytes([r[20] ^ 1]) + r[21:],
    "one data byte flipped": lambda r: r[:-1] + bytes([r[-1] ^ 0x40]),
    "header edited (stale checksum)": lambda r: r.replace(b'"sin"', b'"cos"'),
    "truncated fixed header": lambda r: r[:30],
    "version 0": lambda r: r[:4] + struct.pack("<I", 0) + r[8:],
    "header not utf8": lambda r: _build_raw(b"\xff" * 8),
    "header not json": lambda r: _build_raw(b"{not json"),
    "header a list": lambda r: _build_raw(b"[1, 2]"),
    "deep nesting": lambda r: _build_raw(b'{"kind": "value", "value": ' + b"[" * 100000 + b"]" * 100000 + b"}"),
    "deep values": lambda r: _build_raw(json.dumps({"kind": "value", "value": _deep(200)}).encode()),
    "value bad t": lambda r: _build_raw(b'{"kind": "value", "value": {"t": "pickle"}}'),
    "value bad array": lambda r: _build_raw(b'{"kind": "value", "value": {"t": "tensor", "a": '
                                            b'{"dtype": "float64", "shape": [-4], "offset": 0}}}'),
    "value past data": lambda r: _build_raw(b'{"kind": "value", "value": {"t": "tensor", "a": '
                                            b'{"dtype": "float64", "shape": [4], "offset": 0}}}'),
    "value py object": lambda r: _build_raw(b'{"kind": "value", "value": {"t": "py", "v": {"a": 1}}}'),
}


def _build_raw(hb, data=b""):
    return b"CAD\x00" + struct.pack("<IQ", 1, len(hb)) + hb + data


def _deep(n):
    v = {"t": "py", "v": 1}
    for _ in range(n):
        v = {"t": "list", "items": [v]}
    return v


@pytest.mark.parametrize("name", sorted(RAW))
def test_damaged_files_raise_format_error(name, tmp_path):
    p = tmp_path / "f.cad"
    p.write_bytes(RAW[name](_base()))
    with pytest.raises(cad.FormatError) as e:
        cad.load(str(p))
    assert str(p) in str(e.value)


def _rec_of(h, opname, k=0):
    code = h["tape"]["ops"].index(opname)
    return [r for r in h["tape"]["records"] if r[0] == code][k]


def _lin_to(h, data, opname, value):
    r = _rec_of(h, opname)
    spec = h["tape"]["bufs"][r[2][-1]]["value"]
    d = bytearray(data)
    d[spec["offset"]:spec["offset"] + 8] = struct.pack("<q", value)
    return bytes(d)


FIXTURE_MUTATIONS = {
    "view offset past the end": lambda h, d: (_rec_of(h, "view")[3].__setitem__(0, 10 ** 6), d)[1],
    "view negative offset": lambda h, d: (_rec_of(h, "view")[3].__setitem__(0, -1), d)[1],
    "view stride": lambda h, d: (_rec_of(h, "view")[3].__setitem__(3, 1000), d)[1],
    "view ndim": lambda h, d: (_rec_of(h, "view")[3].__setitem__(1, 40), d)[1],
    "gather position": lambda h, d: _lin_to(h, d, "gather", 10 ** 9),
    "gather negative position": lambda h, d: _lin_to(h, d, "gather", -3),
    "setitem position": lambda h, d: _lin_to(h, d, "setitem", 7),
    "gather aux": lambda h, d: (_rec_of(h, "gather")[3].__setitem__(1, 300), d)[1],
    "gather positions computed": lambda h, d: (_rec_of(h, "gather")[2].__setitem__(1, 0), d)[1],
    "concat axis": lambda h, d: (_rec_of(h, "concatenate")[3].__setitem__(0, 1), d)[1],
    "matmul aux": lambda h, d: (_rec_of(h, "matmul")[3].__setitem__(0, 0), d)[1],
    "matmul operands swapped": lambda h, d: (_rec_of(h, "matmul", 1)[2].reverse(), d)[1],
    "xent labels swapped": lambda h, d: (_rec_of(h, "xent")[2].reverse(), d)[1],
    "max over a new axis": lambda h, d: (_rec_of(h, "max")[3].__setitem__(0, 2), d)[1],
    "cast aux": lambda h, d: (_rec_of(h, "cast")[3].append(1), d)[1],
    "where condition": lambda h, d: (_rec_of(h, "where")[2].reverse(), d)[1],
}


def test_tape_whose_values_overflow_memory_is_refused():
    """broadcasting two inputs of 2**24 elements to 2**48, 5000 times: 2**64 bytes"""
    h = {"ops": ["add"], "bufs": [{"dtype": "float64", "shape": [2 ** 24, 1], "flags": 34, "value": None},
                                  {"dtype": "float64", "shape": [1, 2 ** 24], "flags": 34, "value": None}],
         "records": [], "inputs": [0, 1], "input_shapes": [[2 ** 24, 1], [1, 2 ** 24]], "input_dtypes": [0, 0],
         "outputs": [2], "out_consts": [None], "out_kind": None, "diff": [True, True], "guards": []}
    for k in range(5000):
        h["bufs"].append({"dtype": "float64", "shape": [2 ** 24, 2 ** 24], "flags": 2, "value": None})
        h["records"].append([0, 2 + k, [0, 1], []])
    with pytest.raises(cad.FormatError, match="bytes"):
        cad.load(io.BytesIO(_build({"kind": "tape", "tape": h}, b"")))


@pytest.mark.parametrize("name", sorted(FIXTURE_MUTATIONS))
def test_crafted_fixture_files_raise_format_error(name):
    with open(os.path.join(DATA, "v1_tape.cad"), "rb") as f:
        h, data = _parts(f.read())
    data = FIXTURE_MUTATIONS[name](h, data)
    with pytest.raises(cad.FormatError):
        t = cad.load(io.BytesIO(_build(h, data)))
        t(np.ones(4), np.array([2]))


def test_tape_saved_after_a_replay_with_argnums_loads(tmp_path):
    """a replay with argnums leaves its selection's requires-grad flags on the tape;
    the file holds every float input's (the loader refused the file before)"""
    x, t = cad.tensor([0.5, 1.0]), cad.tensor([2.0, 3.0])
    for argnums in (0, 1, (0, 1), None):
        tape = cad.record(lambda x, t: (cad.sin(x) * t).sum(), x, t)
        tape.grad(x, t, argnums=argnums)
        cad.save(tape, tmp_path / "f.cad")
        loaded = cad.load(tmp_path / "f.cad")
        for a, b in zip(loaded.grad(x, t), tape.grad(x, t)):
            np.testing.assert_allclose(a.numpy(), b.numpy())
