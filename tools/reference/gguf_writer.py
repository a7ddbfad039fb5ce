"""Minimal GGUF v3 writer (for small synthetic test models).

Metadata values are typed explicitly as (gguf_type, value) pairs, or
inferred: bool -> BOOL, int -> UINT32 (INT64 if it does not fit), float ->
FLOAT32, str -> STRING, list of str -> ARRAY[STRING], numpy arrays by dtype.
Tensors are given as raw bytes already in their GGML type (see quants.py).
"""

import struct

import numpy as np

import gguf_reader as R
from quants import tensor_nbytes

_NP_TO_GGUF = {
    np.dtype("uint8"): R.T_UINT8, np.dtype("int8"): R.T_INT8,
    np.dtype("uint16"): R.T_UINT16, np.dtype("int16"): R.T_INT16,
    np.dtype("uint32"): R.T_UINT32, np.dtype("int32"): R.T_INT32,
    np.dtype("float32"): R.T_FLOAT32, np.dtype("uint64"): R.T_UINT64,
    np.dtype("int64"): R.T_INT64, np.dtype("float64"): R.T_FLOAT64,
    np.dtype("bool"): R.T_BOOL,
}


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v):
    """Returns (type, encoded bytes)."""
    if isinstance(v, tuple):
        t, v = v
    elif isinstance(v, bool):
        t = R.T_BOOL
    elif isinstance(v, int):
        t = R.T_UINT32 if 0 <= v < 2 ** 32 else R.T_INT64
    elif isinstance(v, float):
        t = R.T_FLOAT32
    elif isinstance(v, str):
        t = R.T_STRING
    elif isinstance(v, np.ndarray):
        t = R.T_ARRAY
    elif isinstance(v, list):
        t = R.T_ARRAY
    else:
        raise TypeError("cannot encode %r" % (v,))
    if t == R.T_STRING:
        return t, _str(v)
    if t == R.T_ARRAY:
        if isinstance(v, np.ndarray):
            it = _NP_TO_GGUF[v.dtype]
            data = v.astype(R._SCALAR_NP[it]).tobytes()
            return t, struct.pack("<IQ", it, v.size) + data
        if all(isinstance(x, str) for x in v):
            return t, struct.pack("<IQ", R.T_STRING, len(v)) + b"".join(_str(x) for x in v)
        raise TypeError("list arrays must hold strings; use numpy arrays for numbers")
    return t, struct.pack(R._SCALAR_FMT[t], v)


def write_gguf(path, metadata, tensors, alignment=32):
    """metadata: dict key -> value; tensors: list of (name, ne tuple
    (ne[0] fastest), ggml_type, raw uint8 array)."""
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", 3, len(tensors), len(metadata) + (1 if alignment != 32 else 0))
    md = dict(metadata)
    if alignment != 32:
        md["general.alignment"] = (R.T_UINT32, alignment)
    for k, v in md.items():
        t, b = _value(v)
        out += _str(k) + struct.pack("<I", t) + b
    offset = 0
    offsets = []
    for name, ne, ttype, raw in tensors:
        nbytes = tensor_nbytes(ttype, ne)
        if raw.size != nbytes:
            raise ValueError("tensor %s: %d bytes given, %d expected" % (name, raw.size, nbytes))
        out += _str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", ttype, offset)
        offsets.append(offset)
        offset = (offset + nbytes + alignment - 1) // alignment * alignment
    out += b"\0" * ((-len(out)) % alignment)
    data_start = len(out)
    for (name, ne, ttype, raw), off in zip(tensors, offsets):
        out += b"\0" * (data_start + off - len(out))
        out += np.asarray(raw, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(bytes(out))
    return len(out)
