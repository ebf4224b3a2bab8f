"""cad.save / cad.load: tensors, lists/tuples/dicts of tensors, and recorded tapes,
in a documented format that loads without running code (no pickle).

NOTE [ File format ]
    b"CAD\\x00" + format version (uint32 LE) + header length (uint64 LE)
    + (version 2) SHA-256 of everything after these 48 bytes (32 bytes)
    + header: UTF-8 JSON
    + data: raw little-endian C-order array bytes, each at an 8-byte aligned offset
The header's "kind" is "value" or "tape".  An array is {"dtype": "float64"|"float32"|
"int64"|"bool", "shape": [...], "offset": n} (offset into the data part).  A value is
{"t": "tensor"|"ndarray", "a": array} (a tensor that requires grad adds "rg": true),
{"t": "list"|"tuple", "items": [values]},
{"t": "dict", "items": {str: value}} or {"t": "py", "v": JSON scalar}.  A tape is
{"ops": [primitive names], "bufs": [{"dtype", "shape", "flags", "value": array|float|
null}], "records": [[op index, out, [inputs], [aux]]], "inputs": [handles],
"input_shapes", "input_dtypes": [dtype codes 0..3], "outputs": [handle or -1],
"out_consts": [array|null], "out_kind": null|"tuple"|"list", "diff": [bool],
"guards": [[handle, array, why]]}.  Op codes are stored by name, so a file outlives
changes to the op table's order.  Values on the GPU are saved from host copies: a tape
recorded on CUDA values loads as a tape that replays on the CPU.

Version 2 (what cad.save writes) adds the checksum to version 1's layout; cad.load
reads both (tests/data/v1_*.cad are version 1 files) and refuses versions it does not
know.  The checksum catches accidental damage (a truncated copy, flipped bytes,
a hand edit); it is no defence against a deliberate edit that recomputes it, which is
what the validation below is for.

Loading validates the whole file before it builds anything (``_check_tape``): the
magic, the version, the header length against the file size, every field's type,
every handle in range and defined before it is read (inputs, constants, earlier
records), every op name known, every shape non-negative and every array inside the
data part, dtypes known, and each record's inputs, aux values and output against its
op's check rule (the op table's `check` slot, written beside the op's entry; the same
shape and dtype rules the eager op applies, and the bounds a C
kernel relies on: a view's window inside its input, gather/scatter/setitem positions
inside their target).  A file that fails any check raises ``cad.FormatError`` (a
``ValueError``) naming the file and the field; nothing it describes reaches C.

NOTE [ Checkpoints (safetensors) ]
    cad.save(obj, "model.safetensors")  /  cad.save(obj, f, format="safetensors")
Values (tensors, ndarrays, numbers, strings, None, and lists/tuples/dicts of them: a
model's parameters, an optimizer's state_dict(), whose "state" has int keys) can also
be written in the safetensors format, so that safetensors.numpy / .torch / .flax
load_file read the tensors.  The format is picked by ``format=``, else by the name: a
path (or a file object's .name) ending in ".safetensors" gets safetensors, anything
else cad's own format above (the only one for tapes).  cad.load reads both and tells
them apart by the first bytes: b"CAD\\x00", or a u64 LE header length and then "{"
(a safetensors header would need 4,473,155 + k * 2**32 bytes to start with cad's magic,
and such a length is not the multiple of 8 that writers pad to).

    header length N: u64 LE | N bytes of UTF-8 JSON, padded with spaces to a multiple
    of 8 | the byte buffer: each tensor's little-endian C-order bytes, back to back
The JSON maps each tensor's name to {"dtype": "F64"|"F32"|"I64"|"BOOL", "shape": [..],
"data_offsets": [begin, end]} (offsets into the buffer), plus "__metadata__", a
str -> str map: cad puts {"format": "cad", "cad": <one JSON string>} there, the string
being {"version": 1, "sha256": _st_digest, "value": spec}; a spec is
{"t": "tensor", "name", "dtype", "shape", "rg": requires_grad} or {"t": "ndarray",
"name", "dtype", "shape"} (a leaf in the tensor table), {"t": "list"|"tuple", "items":
[specs]}, {"t": "dict", "items": [[key, spec], ...]} (keys are strings or integers,
in order) or {"t": "py", "v": JSON scalar}.  A tensor's name is its path of keys and
indices joined by "." ("state.0.exp_avg", "layers.1.w"; "tensor" for a lone tensor;
"~k" is appended when two paths give the same name).  Tensors on the GPU are saved
from host copies; loading gives CPU tensors.

Loading validates before it builds (``_st_loads``): the header length against the file
size and 100 MB (the safetensors limit), UTF-8 JSON without duplicate keys, each entry
exactly {dtype, shape, data_offsets} of the right JSON types, dtypes known, shapes
non-negative, end - begin equal to the shape's byte count, and the offsets, sorted,
tiling the buffer exactly (no gap, no overlap, nothing after the last: the spec's
rule); "__metadata__" a str -> str map.  A cad spec must then name every tensor of the
table exactly once, with its dtype and shape, and the digest (SHA-256 of the value
spec and the tensor table, both re-serialized canonically, and of the buffer) must
match, so that a truncated file, an edited header or number, or flipped data bytes
raise FormatError; a deliberate edit that recomputes the digest loads as what it
describes (as for cad's format, the checks are of structure, not intent).  A
safetensors file written by another tool (no "cad" metadata) loads as a dict {name:
tensor} in buffer order; its I8/I16/I32/U8/U16/U32 tensors become int64 and F16 float32
(cad's dtypes), other dtypes (BF16, F8, C64, ...) raise FormatError.
"""
from __future__ import annotations

import copyreg
import hashlib
import io
import json
import math
import os
import struct
from typing import Any, BinaryIO, Optional, Union

import numpy as np

from ._core import _engine as C
from .ops import primitives

MAGIC = b"CAD\x00"
VERSION = 2
_FIXED = {1: 16, 2: 48}    # bytes before the JSON header, by version
_DT = {"float64": np.float64, "float32": np.float32, "int64": np.int64, "bool": np.bool_}
_DTN = ("float64", "float32", "int64", "bool")
_ESZ = (8, 4, 8, 1)
_MAXDIM = 32
_MAXSIZE = 1 << 48        # elements of one value (a sanity bound far above any memory)
_MAXBYTES = 1 << 56       # bytes of all the values a tape computes
_BUF_INLINE, _BUF_RG, _BUF_INPUT = 1, 2, 32
_I64 = (-(1 << 63), (1 << 63) - 1)


class FormatError(ValueError, C.CadError):
    """A file cad.load cannot read: not a cad file, truncated, an unknown version, or a
    header that does not describe a valid value or tape (names the file and the field)."""


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


def _name_of(f):
    if isinstance(f, (str, bytes, os.PathLike)):
        return os.fsdecode(f)
    return getattr(f, "name", None) or f"<{type(f).__name__}>"


def _pick_format(path, format):
    if format is None:
        name = path if isinstance(path, (str, bytes, os.PathLike)) else getattr(path, "name", None)
        if isinstance(name, (str, bytes, os.PathLike)) and os.fsdecode(name).endswith(".safetensors"):
            return "safetensors"
        return "cad"
    if format not in ("cad", "safetensors"):
        raise ValueError(f"cad.save: format must be 'cad', 'safetensors' or None, got {format!r}")
    return format


def _write_blob(blob, path):
    if hasattr(path, "write"):
        path.write(blob)
        return
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"cad.save: expected a path or a binary file object, got {type(path).__name__}")
    with open(path, "wb") as f:
        f.write(blob)


def save(obj: Any, path: Union[str, os.PathLike[str], BinaryIO], format: Optional[str] = None) -> None:
    """Save a tensor, a list/tuple/dict of tensors (or numbers), or a recorded tape,
    to a path or a binary file object (anything with ``write``).

    ``format``: "cad" (cad's own format, NOTE [ File format ]; values and tapes),
    "safetensors" (values only, NOTE [ Checkpoints (safetensors) ]: readable by the
    safetensors package's numpy/torch/flax loaders, with cad's structure, numbers,
    requires_grad and int dict keys in its metadata), or None: safetensors when the
    path (or file object's name) ends in ".safetensors", else cad."""
    from .record import StaticTape
    if _pick_format(path, format) == "safetensors":
        if isinstance(obj, StaticTape):
            raise TypeError("cad.save: a recorded tape is saved in cad's format, not safetensors "
                            "(use a path without the .safetensors suffix, or format='cad')")
        if not hasattr(path, "write") and not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"cad.save: expected a path or a binary file object, got {type(path).__name__}")
        _write_blob(_st_dumps(obj), path)
        return
    w = _Writer()
    from .record import TreeTape
    if isinstance(obj, TreeTape):
        raise TypeError("cad.save: a tape recorded on pytree arguments cannot be saved yet; "
                        "record it with tensor arguments")
    if isinstance(obj, StaticTape):
        header = {"kind": "tape", "tape": _tape_spec(obj, w)}
    else:
        header = {"kind": "value", "value": _value_spec(obj, w)}
    hb = json.dumps(header).encode("utf-8")
    body = hb + w.blob.getvalue()
    blob = MAGIC + struct.pack("<IQ", VERSION, len(hb)) + hashlib.sha256(body).digest() + body
    _write_blob(blob, path)


def load(path: Union[str, os.PathLike[str], BinaryIO]) -> Any:
    """Load what cad.save wrote, from a path or a binary file object (anything with
    ``read``).  No code runs: the file is JSON plus raw arrays, and it is validated in
    full before anything is built; a malformed file raises ``cad.FormatError``."""
    name = _name_of(path)
    if not hasattr(path, "read") and not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"cad.load: expected a path or a binary file object, got {type(path).__name__}")
    if hasattr(path, "read"):
        raw = path.read()
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise TypeError(f"cad.load: {name!r} was opened in text mode; open it with 'rb'")
        raw = bytes(raw)
    else:
        with open(path, "rb") as f:
            raw = f.read()
    return loads(raw, name)


def loads(raw: bytes, name: str = "<bytes>") -> Any:
    """cad.load from bytes in memory (cad's format or safetensors, told by the first bytes)"""
    raw = bytes(raw)
    chk = _Checker(name)
    if raw[:4] != MAGIC and len(raw) >= 9 and raw[8:9] == b"{":
        return _st_loads(raw, name)
    if raw[:4] != MAGIC and not (len(raw) < 4 and MAGIC.startswith(raw)):
        raise FormatError(f"cad.load: {name!r} is not a cad file (it does not start with {MAGIC!r}) "
                          "nor a safetensors file (8 bytes of header length, then '{')")
    if len(raw) < 16:
        raise FormatError(f"cad.load: {name!r} is truncated: {len(raw)} bytes, the fixed header "
                          "alone is 16")
    version, hlen = struct.unpack("<IQ", raw[4:16])
    if version not in _FIXED:
        raise FormatError(f"cad.load: {name!r} has format version {version}; this cad reads "
                          f"versions {', '.join(map(str, _FIXED))}")
    fixed = _FIXED[version]
    if len(raw) < fixed:
        raise FormatError(f"cad.load: {name!r} is truncated: {len(raw)} bytes, the fixed header of "
                          f"version {version} alone is {fixed}")
    if hlen > len(raw) - fixed:
        raise FormatError(f"cad.load: {name!r}: header length {hlen} is more than the {len(raw) - fixed} "
                          "bytes after the fixed header (a truncated or damaged file)")
    if version >= 2 and hashlib.sha256(raw[fixed:]).digest() != raw[16:48]:
        raise FormatError(f"cad.load: {name!r}: checksum mismatch: the file was damaged or edited after "
                          "cad.save wrote it (or truncated)")
    try:
        header = json.loads(raw[fixed:fixed + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"cad.load: {name!r}: the header is not valid UTF-8 JSON ({e})") from None
    data = memoryview(raw)[fixed + hlen:]
    chk.data_len = len(data)
    chk.data = data
    chk.dict_(header, "header", ("kind",))
    kind = header["kind"]
    if kind == "tape":
        chk.dict_(header, "header", ("tape",))
        spec = chk.check_tape(header["tape"])
        try:
            return _load_tape(spec, data)
        except FormatError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:  # pragma: no cover
            raise FormatError(f"cad.load: {name!r}: the tape cannot be built ({e})") from None
    if kind == "value":
        chk.dict_(header, "header", ("value",))
        chk.value(header["value"], "value", 0)
        return _load_value(header["value"], data)
    raise FormatError(f"cad.load: {name!r}: field kind is {kind!r}; expected 'value' or 'tape'")


# ---------------------------------------------------------------- pickling

# NOTE [ Pickling ]
# Tensors and recorded tapes pickle (multiprocessing, Dask, Ray and mpi4py's lowercase
# calls move objects that way) as the bytes cad.save writes, rebuilt by cad.loads:
# the pickle holds a reference to _unpickle_tensor / _unpickle_tape and one bytes
# object, so unpickling cad's objects runs no code of the sender's, and loading a file
# (cad.load) never unpickles anything.  A tensor travels as its value and its
# requires_grad flag (a leaf on the other side: the tape stays behind, as with
# cad.save), to its device when that exists there (else the CPU).  The engine's Tensor
# type is registered with copyreg here (its own __reduce__ still refuses, for an engine
# built before this); StaticTape defines __reduce__ (cad/record.py).

def dumps(obj: Any) -> bytes:
    """What cad.save(obj, f) writes to f, as bytes (cad.loads reads them)."""
    b = io.BytesIO()
    save(obj, b)
    return b.getvalue()


def _reduce_tensor(t):
    return _unpickle_tensor, (dumps(t), str(t.device))


def _unpickle_tensor(raw, device="cpu"):
    t = loads(raw, "<pickled cad tensor>")
    if not isinstance(t, C.Tensor):
        raise FormatError("cad: a pickled tensor's bytes hold no tensor")
    if device != "cpu":
        try:
            t = t.to(device).detach().requires_grad_(t.requires_grad)
        except (C.DeviceError, ValueError):   # no such device here: keep the host copy
            pass
    return t


def _unpickle_tape(raw):
    from .record import StaticTape
    t = loads(raw, "<pickled cad tape>")
    if not isinstance(t, StaticTape):
        raise FormatError("cad: a pickled tape's bytes hold no tape")
    return t


copyreg.pickle(C.Tensor, _reduce_tensor)


def _value_spec(obj, w):
    if isinstance(obj, C.Tensor):
        sp = {"t": "tensor", "a": w.array(C.host(obj.detach()))}
        if obj.requires_grad:    # (the keys are left out otherwise: such files read as before)
            sp["rg"] = True
        if C._raw_names(obj) is not None:
            sp["names"] = list(C._raw_names(obj))
        return sp
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


def _named(t, names):
    """a loaded tensor with its saved dim names (checked by _Checker.names)"""
    if names is None:
        return t
    from . import names as N
    n = N.check(tuple(names), t.ndim, "cad.load")
    if n is not None:
        N._on()
        C._put_names(t, n)
    return t


def _load_value(spec, data):
    t = spec["t"]
    if t == "tensor":
        return _named(C.from_numpy(_read_array(spec["a"], data), None, spec.get("rg", False), False),
                      spec.get("names"))
    if t == "ndarray":
        return _read_array(spec["a"], data)
    if t in ("list", "tuple"):
        items = [_load_value(s, data) for s in spec["items"]]
        return items if t == "list" else tuple(items)
    if t == "dict":
        return {k: _load_value(s, data) for k, s in spec["items"].items()}
    return spec["v"]


# ---------------------------------------------------------------- validation

class _Checker:
    """Checks a parsed header field by field; every failure is a FormatError naming
    the file and the field (a JSON path such as tape.records[3].args[0])."""

    def __init__(self, name):
        self.name = name
        self.data_len = 0
        self.data = b""

    def fail(self, field, msg):
        raise FormatError(f"cad.load: {self.name!r}: field {field}: {msg}")

    # ---- JSON types
    def dict_(self, v, field, keys=()):
        if not isinstance(v, dict):
            self.fail(field, f"expected an object, got {_jtype(v)}")
        for k in keys:
            if k not in v:
                self.fail(f"{field}.{k}", "missing")
        return v

    def list_(self, v, field, n=None):
        if not isinstance(v, list):
            self.fail(field, f"expected a list, got {_jtype(v)}")
        if n is not None and len(v) != n:
            self.fail(field, f"expected {n} entries, got {len(v)}")
        return v

    def int_(self, v, field, lo=_I64[0], hi=_I64[1]):
        if type(v) is not int:
            self.fail(field, f"expected an integer, got {_jtype(v)}")
        if not lo <= v <= hi:
            self.fail(field, f"{v} is out of range [{lo}, {hi}]")
        return v

    def dtype(self, v, field):
        if v not in _DTN:
            self.fail(field, f"unknown dtype {v!r}; expected one of {', '.join(_DTN)}")
        return _DTN.index(v)

    def shape(self, v, field):
        self.list_(v, field)
        if len(v) > _MAXDIM:
            self.fail(field, f"{len(v)} dims; at most {_MAXDIM}")
        size = 1
        for d, s in enumerate(v):
            self.int_(s, f"{field}[{d}]", 0, _MAXSIZE)
            size *= s
        if size > _MAXSIZE:
            self.fail(field, f"shape {v} has {size} elements; at most {_MAXSIZE}")
        return tuple(v)

    def array(self, v, field, dtype=None, shape=None):
        """an array spec; returns (dtype code, shape)"""
        self.dict_(v, field, ("dtype", "shape", "offset"))
        dt = self.dtype(v["dtype"], f"{field}.dtype")
        sh = self.shape(v["shape"], f"{field}.shape")
        off = self.int_(v["offset"], f"{field}.offset", 0, self.data_len)
        nbytes = math.prod(sh) * _ESZ[dt]
        if off + nbytes > self.data_len:
            self.fail(field, f"an array of shape {list(sh)} {_DTN[dt]} needs {nbytes} bytes at offset "
                             f"{off}, but the data part has {self.data_len} (shape larger than its "
                             "data, or a truncated file)")
        if dtype is not None and dt != dtype:
            self.fail(f"{field}.dtype", f"{_DTN[dt]}, but the value it belongs to is {_DTN[dtype]}")
        if shape is not None and sh != tuple(shape):
            self.fail(f"{field}.shape", f"{list(sh)}, but the value it belongs to has shape {list(shape)}")
        return dt, sh

    def names(self, v, field, ndim):
        """a tensor's dim names: a list of strings or nulls, one per dim, no repeats"""
        self.list_(v, field, ndim)
        named = [n for n in v if n is not None]
        for k, n in enumerate(v):
            if not (n is None or (isinstance(n, str) and n and n != "...")):
                self.fail(f"{field}[{k}]", f"a dim name must be a non-empty string or null, got "
                                           f"{_jtype(n)}")
        if len(set(named)) != len(named):
            self.fail(field, "a dim name is repeated")

    def value(self, v, field, depth):
        if depth > 100:
            self.fail(field, "nested more than 100 levels")
        self.dict_(v, field, ("t",))
        t = v["t"]
        if t in ("tensor", "ndarray"):
            self.dict_(v, field, ("a",))
            dt, _ = self.array(v["a"], f"{field}.a")
            if t == "tensor" and "names" in v:
                self.names(v["names"], f"{field}.names", len(v["a"]["shape"]))
            if t == "tensor" and "rg" in v:
                if type(v["rg"]) is not bool:
                    self.fail(f"{field}.rg", f"expected true or false, got {_jtype(v['rg'])}")
                if v["rg"] and dt > 1:
                    self.fail(f"{field}.rg", f"requires grad on a {_DTN[dt]} value; gradients are "
                                             "for float values")
        elif t in ("list", "tuple"):
            self.dict_(v, field, ("items",))
            for k, s in enumerate(self.list_(v["items"], f"{field}.items")):
                self.value(s, f"{field}.items[{k}]", depth + 1)
        elif t == "dict":
            self.dict_(v, field, ("items",))
            for k, s in self.dict_(v["items"], f"{field}.items").items():
                self.value(s, f"{field}.items[{k!r}]", depth + 1)
        elif t == "py":
            self.dict_(v, field, ("v",))
            if not (v["v"] is None or isinstance(v["v"], (bool, int, float, str))):
                self.fail(f"{field}.v", f"expected a number, a string or null, got {_jtype(v['v'])}")
        else:
            self.fail(f"{field}.t", f"unknown entry {t!r}; expected tensor, ndarray, list, tuple, "
                                    "dict or py")

    # ---- the tape
    def check_tape(self, sp):
        F = "tape"
        self.dict_(sp, F, ("ops", "bufs", "records", "inputs", "input_shapes", "input_dtypes",
                           "outputs", "out_consts", "out_kind", "diff", "guards"))
        if ("input_names" in sp) != ("output_names" in sp):
            self.fail(F, "input_names and output_names come together")
        if "input_names" in sp:
            for key, n in (("input_names", len(self.list_(sp["inputs"], f"{F}.inputs"))),
                           ("output_names", len(self.list_(sp["outputs"], f"{F}.outputs")))):
                for k, v in enumerate(self.list_(sp[key], f"{F}.{key}", n)):
                    if v is not None:
                        self.names(v, f"{F}.{key}[{k}]", None)
            for k, (v, shp) in enumerate(zip(sp["input_names"], self.list_(sp["input_shapes"], f"{F}.input_shapes"))):
                if v is not None and isinstance(shp, list) and len(v) != len(shp):
                    self.fail(f"{F}.input_names[{k}]", f"{len(v)} names for an input of {len(shp)} dims")
        current = {op.name: op for op in primitives()}
        ops = []
        for k, n in enumerate(self.list_(sp["ops"], f"{F}.ops")):
            if not isinstance(n, str):
                self.fail(f"{F}.ops[{k}]", f"expected an op name, got {_jtype(n)}")
            if n not in current:
                self.fail(f"{F}.ops[{k}]", f"the tape uses op {n!r}, which this cad does not have")
            ops.append(current[n])
        # values
        bufs = []        # (dtype, shape, flags, kind: 'const' | 'input' | None)
        consts = {}      # handle -> array spec (for values the checks read) or float
        for h, b in enumerate(self.list_(sp["bufs"], f"{F}.bufs")):
            f = f"{F}.bufs[{h}]"
            self.dict_(b, f, ("dtype", "shape", "flags", "value"))
            dt = self.dtype(b["dtype"], f"{f}.dtype")
            sh = self.shape(b["shape"], f"{f}.shape")
            fl = self.int_(b["flags"], f"{f}.flags", 0, 255)
            if fl & ~(_BUF_INLINE | _BUF_RG | _BUF_INPUT):
                self.fail(f"{f}.flags", f"{fl} has bits other than inline (1), requires grad (2) "
                                        "and input (32)")
            if fl & _BUF_INLINE and (dt != 0 or sh != ()):
                self.fail(f"{f}.flags", f"inline (1) is for 0-d float64 values; this one is "
                                        f"{_DTN[dt]}{list(sh)}")
            if fl & _BUF_RG and dt > 1:
                self.fail(f"{f}.flags", f"requires grad (2) on a {_DTN[dt]} value; gradients are for "
                                        "float values")
            v = b["value"]
            if dt == 0 and sh == () and not fl & _BUF_INLINE:   # (a CUDA tape's 0-d values)
                fl |= _BUF_INLINE
                b["flags"] = fl
                if isinstance(v, dict):
                    self.array(v, f"{f}.value", dt, sh)
                    v = b["value"] = float(_read_array(v, self.data))
            kind = None
            if v is None:
                pass
            elif fl & _BUF_INLINE:
                if type(v) not in (int, float):
                    self.fail(f"{f}.value", f"an inline value is a number, got {_jtype(v)}")
                kind = "const"
                try:
                    consts[h] = float(v)
                except OverflowError:
                    self.fail(f"{f}.value", f"{v} does not fit a float64")
            else:
                self.array(v, f"{f}.value", dt, sh)
                kind = "const"
                consts[h] = v
            if kind == "const" and fl & _BUF_INPUT:
                self.fail(f"{f}.value", "an input slot (flag 32) has a stored value")
            bufs.append([dt, sh, fl, kind])
        nb = len(bufs)
        # inputs
        ins = self.list_(sp["inputs"], f"{F}.inputs")
        self.list_(sp["input_shapes"], f"{F}.input_shapes", len(ins))
        self.list_(sp["input_dtypes"], f"{F}.input_dtypes", len(ins))
        self.list_(sp["diff"], f"{F}.diff", len(ins))
        seen = set()
        for k, h in enumerate(ins):
            f = f"{F}.inputs[{k}]"
            self.int_(h, f, 0, nb - 1)
            if h in seen:
                self.fail(f, f"handle {h} is listed twice")
            seen.add(h)
            dt, sh, fl, kind = bufs[h]
            if not fl & _BUF_INPUT or kind is not None:
                self.fail(f, f"handle {h} is not an input slot (its flags lack 32 or it holds a value)")
            if self.shape(sp["input_shapes"][k], f"{F}.input_shapes[{k}]") != sh:
                self.fail(f"{F}.input_shapes[{k}]", f"{sp['input_shapes'][k]}, but value {h} has "
                                                    f"shape {list(sh)}")
            if self.int_(sp["input_dtypes"][k], f"{F}.input_dtypes[{k}]", 0, 3) != dt:
                self.fail(f"{F}.input_dtypes[{k}]", f"{sp['input_dtypes'][k]}, but value {h} is {_DTN[dt]}")
            d = sp["diff"][k]
            if type(d) is not bool:
                self.fail(f"{F}.diff[{k}]", f"expected true or false, got {_jtype(d)}")
            if d != (dt <= 1):
                self.fail(f"{F}.diff[{k}]", f"{d} for a {_DTN[dt]} input (true exactly for float inputs)")
            if bool(fl & _BUF_RG) != (dt <= 1):
                self.fail(f"{F}.bufs[{h}].flags", "an input slot requires grad (2) exactly when it is float")
            bufs[h][3] = "input"
        for h in range(nb):
            if bufs[h][2] & _BUF_INPUT and bufs[h][3] != "input":
                self.fail(f"{F}.bufs[{h}].flags", "input (32) on a value that is not in tape.inputs")
        # records, in execution order
        defined = [b[3] is not None for b in bufs]
        recs = []
        for i, r in enumerate(self.list_(sp["records"], f"{F}.records")):
            f = f"{F}.records[{i}]"
            self.list_(r, f, 4)
            op = ops[self.int_(r[0], f"{f}.op", 0, len(ops) - 1)] if ops else self.fail(f"{f}.op", "no ops")
            out = self.int_(r[1], f"{f}.out", 0, nb - 1)
            args = self.list_(r[2], f"{f}.args")
            aux = self.list_(r[3], f"{f}.aux")
            if len(args) > 64 or len(aux) > 80:
                self.fail(f, f"{len(args)} inputs and {len(aux)} aux values; at most 64 and 80")
            for k, a in enumerate(args):
                self.int_(a, f"{f}.args[{k}]", 0, nb - 1)
                if not defined[a]:
                    self.fail(f"{f}.args[{k}]", f"handle {a} is read before any record computes it")
            for k, a in enumerate(aux):
                self.int_(a, f"{f}.aux[{k}]")
            if defined[out]:
                self.fail(f"{f}.out", f"handle {out} already holds a value (an input, a constant or an "
                                      "earlier record's output)")
            self._check_rec(f, op, out, args, aux, bufs, consts, sp)
            defined[out] = True
            recs.append((op.code, out, tuple(args), tuple(aux)))
        for h in range(nb):
            if not defined[h]:
                self.fail(f"{F}.bufs[{h}]", "neither an input, a constant nor computed by a record")
        total = sum(math.prod(bufs[out][1]) * _ESZ[bufs[out][0]] for _, out, _, _ in recs)
        if total > _MAXBYTES:   # (the replay's arena: its offsets must not overflow)
            self.fail(f"{F}.records", f"the records' values need {total} bytes; at most {_MAXBYTES}")
        # outputs and guards
        outs = self.list_(sp["outputs"], f"{F}.outputs")
        self.list_(sp["out_consts"], f"{F}.out_consts", len(outs))
        if not outs:
            self.fail(f"{F}.outputs", "a tape has at least one output")
        for k, h in enumerate(outs):
            self.int_(h, f"{F}.outputs[{k}]", -1, nb - 1)
            c = sp["out_consts"][k]
            if h < 0:
                if c is None:
                    self.fail(f"{F}.out_consts[{k}]", "output -1 (a constant) needs its value")
                self.array(c, f"{F}.out_consts[{k}]")
            elif c is not None:
                self.fail(f"{F}.out_consts[{k}]", f"expected null for output handle {h}")
        if sp["out_kind"] not in (None, "tuple", "list"):
            self.fail(f"{F}.out_kind", f"{sp['out_kind']!r}; expected null, 'tuple' or 'list'")
        if sp["out_kind"] is None and len(outs) != 1:
            self.fail(f"{F}.out_kind", f"null (one output) with {len(outs)} outputs")
        for k, g in enumerate(self.list_(sp["guards"], f"{F}.guards")):
            f = f"{F}.guards[{k}]"
            self.list_(g, f, 3)
            h = self.int_(g[0], f"{f}[0]", 0, nb - 1)
            self.array(g[1], f"{f}[1]")
            if not isinstance(g[2], str):
                self.fail(f"{f}[2]", f"expected a string, got {_jtype(g[2])}")
        return sp

    def _check_rec(self, f, op, out, args, aux, bufs, consts, sp):
        """one record against its op's rule (the op table's check slot)"""
        if op.check_rule is None:
            self.fail(f"{f}.op", f"op {op.name!r} ({op.kind}) cannot appear in a saved tape")
        op.check_rule(RecordCheck(self, f, op, out, args, aux, bufs, consts))
        if bufs[out][2] & _BUF_RG:
            if not any(bufs[a][2] & _BUF_RG for a in args):
                self.fail(f"tape.bufs[{out}].flags", f"op {op.name!r}: the output requires grad (flag 2) "
                          "but no input does")


class RecordCheck:
    """One record of a file under its op's check rule (NOTE [ A primitive's rules ]):
    the record's inputs (dts, shs: dtype codes and shapes), output (odt, osh) and
    aux; each helper raises cad.FormatError naming the record's field."""

    DTN = _DTN
    MAXDIM = _MAXDIM
    MAXSIZE = _MAXSIZE

    def __init__(self, ck, f, op, out, args, aux, bufs, consts):
        self.ck, self.f, self.op, self.out, self.args, self.aux = ck, f, op, out, args, aux
        self._bufs, self._consts = bufs, consts
        self.odt, self.osh = bufs[out][0], bufs[out][1]
        self.dts = [bufs[a][0] for a in args]
        self.shs = [bufs[a][1] for a in args]
        self.desc = f"op {op.name!r}"

    def fail(self, field, msg):
        self.ck.fail(field, f"{self.desc}: {msg}")

    def need(self, cond, msg, field=None):
        """field: the record's own field (args[0], aux, ...) or None (the record)"""
        if not cond:
            self.fail(self.f if field is None else f"{self.f}.{field}", msg)

    def nargs(self, n):
        self.need(len(self.args) == n, f"takes {n} inputs, the record has {len(self.args)}", "args")

    def naux(self, n):
        self.need(len(self.aux) == n, f"takes {n} aux values, the record has {len(self.aux)}", "aux")

    def sig(self):
        return _sig(self.dts, self.shs)

    def out_is(self, shape, dt):
        self.need(tuple(shape) == self.osh and dt == self.odt,
                  f"computes {_DTN[dt]}{list(shape)} from inputs {self.sig()}, but the output value "
                  f"{self.out} is {_DTN[self.odt]}{list(self.osh)}", "out")

    def bshape(self):
        try:
            return np.broadcast_shapes(*self.shs)
        except ValueError:
            self.fail(f"{self.f}.args", f"input shapes {[list(s) for s in self.shs]} do not broadcast")

    def const_lin(self, k, hi):
        """the shape of input k, int64 positions in [0, hi) stored in the file"""
        h = self.args[k]
        b = self._bufs[h]
        self.need(b[3] == "const" and b[0] == 2 and not isinstance(self._consts.get(h), float),
                  f"input {k} (positions) must be an int64 constant of the tape", f"args[{k}]")
        spec = self._consts[h]
        lin = np.frombuffer(self.ck.data, dtype="<i8", count=math.prod(b[1]), offset=spec["offset"])
        if lin.size and (lin.min() < 0 or lin.max() >= hi):
            self.ck.fail(f"tape.bufs[{h}].value", f"{self.desc}: a position out of range [0, {hi})")
        return b[1]


def _sig(dts, shs):
    return ", ".join(f"{_DTN[d]}{list(s)}" for d, s in zip(dts, shs))


def _jtype(v):
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _tape_spec(st, w):
    if not (st._kind is None or st._kind in (tuple, list)):
        raise TypeError("cad.save: this tape returns a nested pytree (a dict, or containers "
                        "inside a tuple); the file format holds a tensor, a tuple or a list "
                        "of tensors: return a flat tuple to save it")
    tp = st._tape
    names = [op.name for op in primitives()]
    in_h, in_shape, in_dtype = C.replay_inputs(st._replay)
    out_h, out_const = C.replay_outputs(st._replay)
    bufs = []
    made = set()
    recs = []
    for op, out, args, aux in C.tape_records(tp, 0):
        if names[op] == "custom":
            raise TypeError("cad.save: the tape calls a cad.primitive (Python code, which a saved "
                            "file never holds); save the inputs and record the function again")
        recs.append([op, out, list(args), list(aux)])
        made.add(out)
    inputs = set(in_h)
    # The requires-grad flags (2) as every float input selects them: a replay with
    # argnums leaves the flags of its own selection on the tape (_set_rg in
    # replay.pxi), and the file must not depend on which call came last.
    nb = C.tape_buf_count(tp)
    info = [C.tape_info(tp, h) for h in range(nb)]
    rg = [False] * nb
    for h in in_h:
        rg[h] = info[h][1] <= 1
    for op, out, args, aux in recs:
        rg[out] = info[out][1] <= 1 and any(a >= 0 and rg[a] for a in args)
    for h in range(nb):
        shape, dt, flags = info[h]
        spec = {"dtype": ("float64", "float32", "int64", "bool")[dt], "shape": list(shape),
                "flags": (flags & (1 | 32)) | (2 if rg[h] else 0), "value": None}
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
            "guards": [[g.handle, w.array(g.value), g.why] for g in st._replay.guards],
            **({"input_names": [None if n is None else list(n) for n in st._in_names],
                "output_names": [None if n is None else list(n) for n in st._out_names]}
               if st._in_names is not None else {})}


def _load_tape(spec, data):
    from .record import Guard, StaticTape
    current = {op.name: op.code for op in primitives()}
    opmap = [current[n] for n in spec["ops"]]     # (checked by _Checker.check_tape)
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
    st = StaticTape._from_parts(tp, nodes, outs, guards, kind, tuple(spec["diff"]))
    if "input_names" in spec:
        from . import names as N
        N._on()
        st._set_names([None if n is None else tuple(n) for n in spec["input_names"]],
                      [None if n is None else tuple(n) for n in spec["output_names"]])
    return st


# ---------------------------------------------------------------- safetensors

_ST_DT = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "BOOL": np.bool_}
_ST_NAME = {np.dtype(v): k for k, v in _ST_DT.items()}
# what other tools write and cad reads (as cad's dtypes: ints to int64, F16 to float32)
_ST_READ = dict(_ST_DT, I32=np.int32, I16=np.int16, I8=np.int8, U8=np.uint8, U16=np.uint16,
                U32=np.uint32, F16=np.float16)
_ST_MAXHEADER = 100_000_000     # the safetensors package's limit
_ST_VERSION = 1


def _st_dumps(obj):
    """the bytes of a safetensors file holding obj (NOTE [ Checkpoints (safetensors) ])"""
    arrays = []        # (name, C-order little-endian ndarray)
    names = set()

    def leaf(a, path):
        a = np.asarray(a, order="C")
        dt = _ST_NAME.get(a.dtype)
        if dt is None:
            raise TypeError(f"cad.save: dtype {a.dtype} is not saved (at {'.'.join(path) or 'the root'})")
        name = ".".join(path) or "tensor"
        base, k = name, 1
        while name in names or name == "__metadata__":
            name = f"{base}~{k}"
            k += 1
        names.add(name)
        arrays.append((name, a))
        return name, dt, list(a.shape)

    def spec(o, path, depth):
        if depth > 100:
            raise ValueError("cad.save: the value is nested more than 100 levels")
        if isinstance(o, C.Tensor):
            name, dt, sh = leaf(C.host(o.detach()), path)
            sp = {"t": "tensor", "name": name, "dtype": dt, "shape": sh, "rg": bool(o.requires_grad)}
            if C._raw_names(o) is not None:   # (left out otherwise: such files read as before)
                sp["names"] = list(C._raw_names(o))
            return sp
        if isinstance(o, np.ndarray):
            name, dt, sh = leaf(o, path)
            return {"t": "ndarray", "name": name, "dtype": dt, "shape": sh}
        if isinstance(o, (list, tuple)):
            return {"t": "tuple" if isinstance(o, tuple) else "list",
                    "items": [spec(v, path + [str(k)], depth + 1) for k, v in enumerate(o)]}
        if isinstance(o, dict):
            items = []
            for k, v in o.items():
                if type(k) is not str and type(k) is not int:
                    raise TypeError(f"cad.save: dict keys must be strings or integers, got {k!r}")
                items.append([k, spec(v, path + [str(k)], depth + 1)])
            return {"t": "dict", "items": items}
        if o is None or type(o) in (bool, int, float, str):
            return {"t": "py", "v": o}
        for kind in (bool, np.bool_, int, np.integer, float, np.floating, str):  # subclasses
            if isinstance(o, kind):
                return {"t": "py", "v": o.item() if isinstance(o, np.generic) else kind(o)}
        raise TypeError(f"cad.save: cannot save a {type(o).__name__} in a safetensors checkpoint "
                        "(tensors, arrays, numbers, strings, None, lists, tuples and dicts)")

    try:
        value = spec(obj, [], 0)
    finally:
        spec = None   # the closure calls itself: a reference cycle (holding the arrays) otherwise
    header = {}
    chunks = []
    off = 0
    for name, a in arrays:
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_NAME[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        off += len(b)
        chunks.append(b)
    buf = b"".join(chunks)
    meta = {"version": _ST_VERSION, "sha256": _st_digest(value, header, buf), "value": value}
    header["__metadata__"] = {"format": "cad", "cad": json.dumps(meta, allow_nan=True)}
    hb = json.dumps(header).encode("utf-8")
    hb += b" " * ((-len(hb)) % 8)
    return struct.pack("<Q", len(hb)) + hb + buf


def _st_digest(value, table, buf):
    """SHA-256 of cad's value spec, the tensor table and the buffer: both JSON parts
    written canonically (sorted keys; Python's float repr round-trips), so the digest
    of what was read equals the writer's when nothing changed"""
    h = hashlib.sha256()
    h.update(json.dumps(value, sort_keys=True, allow_nan=True).encode("utf-8"))
    h.update(json.dumps(table, sort_keys=True).encode("utf-8"))
    h.update(buf)
    return h.hexdigest()


def _no_dup_keys(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _st_loads(raw, name):
    """load a safetensors file's bytes, validated in full first (NOTE [ Checkpoints
    (safetensors) ])"""
    def fail(msg):
        raise FormatError(f"cad.load: {name!r} (safetensors): {msg}")

    if len(raw) < 8:
        fail(f"truncated: {len(raw)} bytes, the header length alone is 8")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        fail(f"header length {hlen} is more than the {len(raw) - 8} bytes after it (a truncated or "
             "damaged file)")
    if hlen > _ST_MAXHEADER:
        fail(f"header length {hlen} is over the format's limit of {_ST_MAXHEADER} bytes")
    try:
        header = json.loads(raw[8:8 + hlen].decode("utf-8"), object_pairs_hook=_no_dup_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        fail(f"the header is not valid UTF-8 JSON ({e})")
    if not isinstance(header, dict):
        fail(f"the header is {_jtype(header)}, not an object")
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict):
            fail(f"__metadata__ is {_jtype(meta)}; expected an object of strings")
        for k, v in meta.items():
            if not isinstance(v, str):
                fail(f"__metadata__[{k!r}] is {_jtype(v)}; the format allows only strings")
    buf = memoryview(raw)[8 + hlen:]
    table = {}          # name -> (dtype string, shape, begin, end)
    for tname, e in header.items():
        f = f"tensor {tname!r}"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            got = sorted(e) if isinstance(e, dict) else _jtype(e)
            fail(f"{f}: expected an object with exactly dtype, shape and data_offsets, got {got}")
        dt = e["dtype"]
        if not isinstance(dt, str) or dt not in _ST_READ:
            fail(f"{f}: dtype {dt!r} is not one cad reads ({', '.join(_ST_READ)})")
        sh = e["shape"]
        if not isinstance(sh, list) or len(sh) > _MAXDIM:
            fail(f"{f}: shape {sh!r} is not a list of at most {_MAXDIM} sizes")
        for s in sh:
            if type(s) is not int or not 0 <= s <= _MAXSIZE:
                fail(f"{f}: shape {sh!r} has a size that is not an integer in [0, {_MAXSIZE}]")
        if math.prod(sh) > _MAXSIZE:
            fail(f"{f}: shape {sh!r} has more than {_MAXSIZE} elements")
        offs = e["data_offsets"]
        if (not isinstance(offs, list) or len(offs) != 2
                or any(type(o) is not int for o in offs) or not 0 <= offs[0] <= offs[1]):
            fail(f"{f}: data_offsets {offs!r} is not [begin, end] with 0 <= begin <= end")
        nbytes = math.prod(sh) * np.dtype(_ST_READ[dt]).itemsize
        if offs[1] - offs[0] != nbytes:
            fail(f"{f}: data_offsets {offs} hold {offs[1] - offs[0]} bytes, but shape {sh} {dt} "
                 f"needs {nbytes}")
        if offs[1] > len(buf):
            fail(f"{f}: data_offsets {offs} end after the buffer's {len(buf)} bytes (a truncated "
                 "file?)")
        table[tname] = (dt, tuple(sh), offs[0], offs[1])
    end = 0
    for tname, (_, _, b, e) in sorted(table.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if b != end:
            fail(f"tensor {tname!r} starts at byte {b} of the buffer, where {end} was expected "
                 "(the tensors must tile the buffer: no gap, no overlap)")
        end = e
    if end != len(buf):
        fail(f"the tensors end at byte {end} of the buffer, which has {len(buf)} (trailing bytes "
             "or a damaged file)")

    def array(tname):
        dt, sh, b, _ = table[tname]
        a = np.frombuffer(buf, dtype=np.dtype(_ST_READ[dt]).newbyteorder("<"),
                          count=math.prod(sh), offset=b).reshape(sh)
        if dt == "BOOL":
            return a.view(np.uint8) != 0     # bytes other than 0 and 1 become True
        target = _ST_DT.get(dt) or (np.float32 if dt == "F16" else np.int64)
        return a.astype(target)          # a native-order copy that owns its memory

    if meta is None or ("cad" not in meta and meta.get("format") != "cad"):
        # a file from another tool: {name: tensor} in buffer order
        return {t: C.from_numpy(array(t), None, False, False)
                for t in sorted(table, key=lambda t: (table[t][2], table[t][3]))}
    if set(meta) != {"format", "cad"} or meta["format"] != "cad":
        fail(f"__metadata__ has keys {sorted(meta)[:5]} and format {meta.get('format')!r}; cad "
             "writes exactly format='cad' and cad")
    try:
        cm = json.loads(meta["cad"], object_pairs_hook=_no_dup_keys)
    except (ValueError, RecursionError) as e:
        fail(f"__metadata__['cad'] is not valid JSON ({e})")
    if not isinstance(cm, dict) or set(cm) != {"version", "sha256", "value"}:
        fail("__metadata__['cad'] is not an object with exactly version, sha256 and value")
    if cm["version"] != _ST_VERSION or type(cm["version"]) is not int:
        fail(f"cad metadata version {cm['version']!r}; this cad reads version {_ST_VERSION}")
    if not isinstance(cm["sha256"], str):
        fail("cad metadata sha256 is not a string")
    used = set()

    def check(v, field, depth):
        if depth > 100:
            fail(f"cad metadata {field}: nested more than 100 levels")
        if not isinstance(v, dict) or not isinstance(v.get("t"), str):
            fail(f"cad metadata {field}: expected an object with a string 't'")
        t = v["t"]
        keys = {"tensor": {"t", "name", "dtype", "shape", "rg"}, "ndarray": {"t", "name", "dtype", "shape"},
                "list": {"t", "items"}, "tuple": {"t", "items"}, "dict": {"t", "items"},
                "py": {"t", "v"}}.get(t)
        if keys is None:
            fail(f"cad metadata {field}.t: unknown entry {t!r}; expected tensor, ndarray, list, "
                 "tuple, dict or py")
        if t == "tensor" and "names" in v:
            keys = keys | {"names"}
            nm = v["names"]
            if not (isinstance(nm, list) and isinstance(v.get("shape"), list) and len(nm) == len(v["shape"])
                    and all(n is None or (isinstance(n, str) and n and n != "...") for n in nm)
                    and len({n for n in nm if n is not None}) == len([n for n in nm if n is not None])):
                fail(f"cad metadata {field}.names: expected one distinct string or null per dim, got "
                     f"{str(nm)[:80]}")
        if set(v) != keys:
            fail(f"cad metadata {field}: a {t!r} entry has keys {sorted(v)}; expected {sorted(keys)}")
        if t in ("tensor", "ndarray"):
            n = v["name"]
            if not isinstance(n, str) or n not in table:
                fail(f"cad metadata {field}.name: {n!r} is not a tensor of the file")
            if n in used:
                fail(f"cad metadata {field}.name: tensor {n!r} is named twice")
            used.add(n)
            if v["dtype"] != table[n][0] or v["dtype"] not in _ST_DT:
                fail(f"cad metadata {field}.dtype: {v['dtype']!r}, but tensor {n!r} is {table[n][0]}")
            if not isinstance(v["shape"], list) or tuple(v["shape"]) != table[n][1]:
                fail(f"cad metadata {field}.shape: {v['shape']!r}, but tensor {n!r} has shape "
                     f"{list(table[n][1])}")
            if t == "tensor":
                if type(v["rg"]) is not bool:
                    fail(f"cad metadata {field}.rg: expected true or false, got {_jtype(v['rg'])}")
                if v["rg"] and v["dtype"] not in ("F64", "F32"):
                    fail(f"cad metadata {field}.rg: requires_grad on a {v['dtype']} tensor; "
                         "gradients are for float tensors")
        elif t in ("list", "tuple"):
            if not isinstance(v["items"], list):
                fail(f"cad metadata {field}.items: expected a list, got {_jtype(v['items'])}")
            for k, s in enumerate(v["items"]):
                check(s, f"{field}.items[{k}]", depth + 1)
        elif t == "dict":
            if not isinstance(v["items"], list):
                fail(f"cad metadata {field}.items: expected a list of [key, value], got "
                     f"{_jtype(v['items'])}")
            seen = set()
            for k, kv in enumerate(v["items"]):
                if not (isinstance(kv, list) and len(kv) == 2 and type(kv[0]) in (str, int)):
                    fail(f"cad metadata {field}.items[{k}]: expected [string or integer key, value]")
                if kv[0] in seen:
                    fail(f"cad metadata {field}.items[{k}]: key {kv[0]!r} appears twice")
                seen.add(kv[0])
                check(kv[1], f"{field}.items[{kv[0]!r}]", depth + 1)
        elif not (v["v"] is None or type(v["v"]) in (bool, int, float, str)):
            fail(f"cad metadata {field}.v: expected a number, a string or null, got {_jtype(v['v'])}")

    try:
        check(cm["value"], "value", 0)
    finally:
        check = None   # break the self-referencing closure's cycle
    if used != set(table):
        fail(f"tensor(s) {sorted(set(table) - used)[:5]} are in the file but not in cad's metadata "
             "(the metadata does not describe this file)")
    if _st_digest(cm["value"], header, buf) != cm["sha256"]:
        fail("checksum mismatch: the header or the tensors' bytes were damaged or edited after "
             "cad.save wrote them")

    def build(v):
        t = v["t"]
        if t == "tensor":
            return _named(C.from_numpy(array(v["name"]), None, v["rg"], False), v.get("names"))
        if t == "ndarray":
            return array(v["name"])
        if t == "list":
            return [build(s) for s in v["items"]]
        if t == "tuple":
            return tuple(build(s) for s in v["items"])
        if t == "dict":
            return {k: build(s) for k, s in v["items"]}
        return v["v"]

    try:
        return build(cm["value"])
    finally:
        build = None   # the closure calls itself: a cycle that held the file's buffer until a GC
