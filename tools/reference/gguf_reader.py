"""Minimal, independent GGUF (v2/v3) reader for the kvinfer reference.

Layout (all little-endian):
  magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
  n_kv x (string key, u32 value_type, value)
  n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset)
  padding to `general.alignment` (default 32)
  tensor data; each tensor's offset is relative to the start of this section.
Strings are u64 length + UTF-8 bytes (no terminator). Arrays are u32 item
type + u64 count + items.  ne[0] is the fastest-varying dimension, so a
tensor with ne = {in, out} is returned as a row-major numpy array of shape
(out, in).

Only numpy + the standard library are used.
"""

import struct

import numpy as np

from quants import GGML_TYPES, dequantize, tensor_nbytes

GGUF_MAGIC = b"GGUF"

# GGUF metadata value types.
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, \
    T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR_FMT = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h",
    T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?",
    T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}
_SCALAR_NP = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2",
    T_UINT32: "<u4", T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1",
    T_UINT64: "<u8", T_INT64: "<i8", T_FLOAT64: "<f8",
}


class GGUFError(Exception):
    pass


class TensorInfo:
    def __init__(self, name, ne, ggml_type, offset):
        self.name = name
        self.ne = tuple(ne)          # GGML order, ne[0] fastest
        self.ggml_type = ggml_type
        self.offset = offset         # relative to data section
        self.abs_offset = None       # filled after parsing
        self.nbytes = tensor_nbytes(ggml_type, self.ne)

    @property
    def shape(self):
        """numpy (row-major) shape: reversed ne."""
        return tuple(reversed(self.ne))

    def __repr__(self):
        return "TensorInfo(%s, ne=%s, type=%s, off=%d)" % (
            self.name, self.ne, GGML_TYPES.get(self.ggml_type, ("?",))[0],
            self.offset)


class _Cursor:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def need(self, n, what):
        if self.pos + n > len(self.buf):
            raise GGUFError("truncated file reading %s at offset %d (need %d bytes, %d left)"
                            % (what, self.pos, n, len(self.buf) - self.pos))

    def scalar(self, vtype, what="scalar"):
        fmt = _SCALAR_FMT[vtype]
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what="u32"):
        return self.scalar(T_UINT32, what)

    def u64(self, what="u64"):
        return self.scalar(T_UINT64, what)

    def string(self, what="string"):
        n = self.u64(what + " length")
        self.need(n, what)
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8", errors="strict")
        self.pos += n
        return s

    def value(self, vtype, what):
        if vtype in _SCALAR_FMT:
            v = self.scalar(vtype, what)
            return bool(v) if vtype == T_BOOL else v
        if vtype == T_STRING:
            return self.string(what)
        if vtype == T_ARRAY:
            itype = self.u32(what + " array type")
            count = self.u64(what + " array count")
            if itype in _SCALAR_NP:
                dt = np.dtype(_SCALAR_NP[itype])
                self.need(count * dt.itemsize, what)
                arr = np.frombuffer(self.buf, dtype=dt, count=count, offset=self.pos).copy()
                self.pos += count * dt.itemsize
                if itype == T_BOOL:
                    arr = arr.astype(bool)
                return arr
            if itype == T_STRING:
                return [self.string(what + "[]") for _ in range(count)]
            if itype == T_ARRAY:
                return [self.value(T_ARRAY, what + "[]") for _ in range(count)]
            raise GGUFError("%s: unknown array item type %d" % (what, itype))
        raise GGUFError("%s: unknown value type %d" % (what, vtype))


class GGUFFile:
    """Parsed GGUF file. `metadata` maps key -> python/numpy value;
    `tensors` maps name -> TensorInfo (in file order)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.buf = f.read()
        c = _Cursor(self.buf)
        c.need(4, "magic")
        if self.buf[:4] != GGUF_MAGIC:
            raise GGUFError("%s: bad magic %r (expected b'GGUF')" % (path, self.buf[:4]))
        c.pos = 4
        self.version = c.u32("version")
        if self.version not in (2, 3):
            raise GGUFError("%s: unsupported GGUF version %d (expected 2 or 3)" % (path, self.version))
        n_tensors = c.u64("tensor count")
        n_kv = c.u64("kv count")
        self.metadata = {}
        self.metadata_types = {}
        for i in range(n_kv):
            key = c.string("key #%d" % i)
            vtype = c.u32("type of " + key)
            self.metadata[key] = c.value(vtype, key)
            self.metadata_types[key] = vtype
        self.tensors = {}
        for i in range(n_tensors):
            name = c.string("tensor name #%d" % i)
            n_dims = c.u32("n_dims of " + name)
            if n_dims > 4:
                raise GGUFError("tensor %s: n_dims %d > 4" % (name, n_dims))
            ne = [c.u64("dim of " + name) for _ in range(n_dims)]
            ttype = c.u32("type of " + name)
            off = c.u64("offset of " + name)
            if ttype not in GGML_TYPES:
                raise GGUFError("tensor %s: unsupported ggml type %d" % (name, ttype))
            if name in self.tensors:
                raise GGUFError("duplicate tensor name %s" % name)
            self.tensors[name] = TensorInfo(name, ne, ttype, off)
        self.alignment = int(self.metadata.get("general.alignment", 32))
        if self.alignment <= 0 or (self.alignment & (self.alignment - 1)):
            raise GGUFError("general.alignment %d is not a power of two" % self.alignment)
        self.data_offset = (c.pos + self.alignment - 1) // self.alignment * self.alignment
        for t in self.tensors.values():
            if t.offset % self.alignment:
                raise GGUFError("tensor %s offset %d not aligned to %d" % (t.name, t.offset, self.alignment))
            t.abs_offset = self.data_offset + t.offset
            if t.abs_offset + t.nbytes > len(self.buf):
                raise GGUFError("tensor %s data [%d, %d) past end of file (%d bytes)"
                                % (t.name, t.abs_offset, t.abs_offset + t.nbytes, len(self.buf)))

    def get(self, key, default=None):
        return self.metadata.get(key, default)

    def raw(self, name):
        t = self.tensors[name]
        return np.frombuffer(self.buf, dtype=np.uint8, count=t.nbytes, offset=t.abs_offset)

    def tensor(self, name, dtype=np.float64):
        """Dequantized tensor as numpy array of shape reversed(ne)."""
        t = self.tensors[name]
        flat = dequantize(t.ggml_type, self.raw(name), int(np.prod(t.ne)))
        return flat.reshape(t.shape).astype(dtype, copy=False)


if __name__ == "__main__":
    import sys
    g = GGUFFile(sys.argv[1])
    print("version", g.version, "alignment", g.alignment, "data_offset", g.data_offset)
    for k, v in g.metadata.items():
        if isinstance(v, (list, np.ndarray)) and len(v) > 8:
            print("%-45s [%d items] %r ..." % (k, len(v), list(v[:5])))
        else:
            print("%-45s %r" % (k, v))
    for t in g.tensors.values():
        print(t)
