"""cad.save / cad.load: tensors, lists/tuples/dicts of tensors, and recorded tapes,
in a documented format that loads without running code (no pickle).

NOTE [ File format ]
    b"CAD\\x00" + format version (uint32 LE) + header length (uint64 LE)
    + header: UTF-8 JSON
    + data: raw little-endian C-order array bytes, each at an 8-byte aligned offset
The header's "kind" is "tensor", "list", "tuple", "dict" or "tape".  An array is
{"dtype": "float64"|"float32"|"int64"|"bool", "shape": [...], "offset": n}.  A tape is
{"ops": [primitive names], "bufs": [{"dtype", "shape", "flags", "value": array|float|
null}], "records": [[op index, out, [inputs], [aux]]], "inputs": [handles],
"outputs": [handle or -1], "out_consts": [array|null], "out_kind", "diff": [bool],
"guards": [[handle, array, why]]}.  Op codes are stored by name, so a file outlives
changes to the op table's order.  Values on the GPU are saved from host copies: a tape
recorded on CUDA values loads as a tape that replays on the CPU.
"""
import io
import json
import struct

import numpy as np

from ._core import _engine as C
from .ops import primitives

MAGIC = b"CAD\x00"
VERSION = 1
_DT = {"float64": np.float64, "float32": np.float32, "int64": np.int64, "bool": np.bool_}


class _Writer:
    def __init__(self):
        self.blob = io.BytesIO()

    def array(self, a):
        a = np.asarray(a, order="C")   # (ascontiguousarray would make 0-d arrays 1-d)
        name = {np.dtype(v): k for k, v in _DT.items()}.get(a.dtype)
        if name is None:
            raise TypeError(f"cad.save: dtype {a.dtype} is not saved")
        pad = (-self.blob.tell()) % 8
        self.blob.write(b"\0" * pad)
        off = self.blob.tell()
        self.blob.write(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
        return {"dtype": name, "shape": list(a.shape), "offset": off}


def _read_array(spec, data):
    dt = np.dtype(_DT[spec["dtype"]]).newbyteorder("<")
    n = int(np.prod(spec["shape"], dtype=np.int64))
    a = np.frombuffer(data, dtype=dt, count=n, offset=spec["offset"])
    return a.reshape(spec["shape"]).astype(dt.newbyteorder("="))


def save(obj, path):
    """Save a tensor, a list/tuple/dict of tensors (or numbers), or a recorded tape."""
    from .record import StaticTape
    w = _Writer()
    if isinstance(obj, StaticTape):
        header = {"kind": "tape", "tape": _tape_spec(obj, w)}
    else:
        header = {"kind": "value", "value": _value_spec(obj, w)}
    hb = json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<IQ", VERSION, len(hb)) + hb)
        f.write(w.blob.getvalue())


def load(path):
    """Load what cad.save wrote (no code runs: the file is JSON plus raw arrays)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] != MAGIC:
        raise ValueError(f"cad.load: {path!r} is not a cad file")
    version, hlen = struct.unpack("<IQ", raw[4:16])
    if version > VERSION:
        raise ValueError(f"cad.load: {path!r} has format version {version}; this cad reads {VERSION}")
    header = json.loads(raw[16:16 + hlen].decode("utf-8"))
    data = memoryview(raw)[16 + hlen:]
    if header["kind"] == "tape":
        return _load_tape(header["tape"], data)
    return _load_value(header["value"], data)


def _value_spec(obj, w):
    if isinstance(obj, C.Tensor):
        return {"t": "tensor", "a": w.array(C.host(obj.detach()))}
    if isinstance(obj, np.ndarray):
        return {"t": "ndarray", "a": w.array(obj)}
    if isinstance(obj, (list, tuple)):
        return {"t": type(obj).__name__, "items": [_value_spec(o, w) for o in obj]}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise TypeError(f"cad.save: dict keys must be strings, got {k!r}")
        return {"t": "dict", "items": {k: _value_spec(v, w) for k, v in obj.items()}}
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return {"t": "py", "v": obj}
    raise TypeError(f"cad.save: cannot save a {type(obj).__name__} (tensors, arrays, numbers, "
                    "strings, lists, tuples, dicts and recorded tapes)")


def _load_value(spec, data):
    t = spec["t"]
    if t == "tensor":
        return C.from_numpy(_read_array(spec["a"], data), None, False, False)
    if t == "ndarray":
        return _read_array(spec["a"], data)
    if t in ("list", "tuple"):
        items = [_load_value(s, data) for s in spec["items"]]
        return items if t == "list" else tuple(items)
    if t == "dict":
        return {k: _load_value(s, data) for k, s in spec["items"].items()}
    if t == "py":
        return spec["v"]
    raise ValueError(f"cad.load: unknown entry {t!r}")


def _tape_spec(st, w):
    tp = st._tape
    names = [op.name for op in primitives()]
    in_h, in_shape, in_dtype = C.replay_inputs(st._replay)
    out_h, out_const = C.replay_outputs(st._replay)
    bufs = []
    made = set()
    recs = []
    for op, out, args, aux in C.tape_records(tp, 0):
        recs.append([op, out, list(args), list(aux)])
        made.add(out)
    inputs = set(in_h)
    for h in range(C.tape_buf_count(tp)):
        shape, dt, flags = C.tape_info(tp, h)
        spec = {"dtype": ("float64", "float32", "int64", "bool")[dt], "shape": list(shape),
                "flags": flags & (1 | 2 | 32), "value": None}
        if h not in made and h not in inputs:       # a constant
            v = C.host(C.tape_value(tp, h))
            spec["value"] = float(v) if flags & 1 else w.array(v)
        bufs.append(spec)
    return {"ops": names, "bufs": bufs, "records": recs, "inputs": in_h,
            "input_shapes": [list(s) for s in in_shape], "input_dtypes": in_dtype,
            "outputs": out_h,
            "out_consts": [None if c is None else w.array(C.host(c) if isinstance(c, C.Tensor) else np.asarray(c))
                           for c in out_const],
            "out_kind": None if st._kind is None else st._kind.__name__,
            "diff": list(st._diff),
            "guards": [[g.handle, w.array(g.value), g.why] for g in st._replay.guards]}


def _load_tape(spec, data):
    from .record import Guard, StaticTape
    current = {op.name: op.code for op in primitives()}
    try:
        opmap = [current[n] for n in spec["ops"]]
    except KeyError as e:
        raise ValueError(f"cad.load: the tape uses op {e.args[0]!r}, which this cad does not "
                         "have") from None
    tp = C.Tape()
    dts = {"float64": 0, "float32": 1, "int64": 2, "bool": 3}
    for b in spec["bufs"]:
        v = b["value"]
        if isinstance(v, dict):
            v = _read_array(v, data)
        C.tape_push_buf(tp, v, dts[b["dtype"]], tuple(b["shape"]), b["flags"])
    for op, out, args, aux in spec["records"]:
        C.tape_push_rec(tp, opmap[op], out, tuple(args), tuple(aux))
    nodes = []
    for h, shape, dt in zip(spec["inputs"], spec["input_shapes"], spec["input_dtypes"]):
        nodes.append(C.tape_node_of(tp, h, np.zeros(shape, dtype=list(_DT.values())[dt])
                                    if shape or dt != 0 else 0.0))
    outs = []
    for h, c in zip(spec["outputs"], spec["out_consts"]):
        if h >= 0:
            outs.append(C.tape_node_of(tp, h, np.zeros(C.tape_info(tp, h)[0],
                                                       dtype=list(_DT.values())[C.tape_info(tp, h)[1]])))
        else:
            outs.append(C.from_numpy(_read_array(c, data), None, False, False))
    guards = [Guard(h, _read_array(v, data), why, k) for k, (h, v, why) in enumerate(spec["guards"])]
    kind = {"tuple": tuple, "list": list}.get(spec["out_kind"])
    return StaticTape._from_parts(tp, nodes, outs, guards, kind, tuple(spec["diff"]))
