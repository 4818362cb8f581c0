"""The safetensors format with numpy alone (the safetensors package is not a dependency): what the project's scripts
write (convert_wan.py, convert_wan_vae.py, make_contexts.py) and the test oracles read.

write() stores F32/F16/BF16 little-endian, wider elements first so every tensor starts aligned to its element size
(cachebench then uses F32 tensors in place from its memory map), the header padded to 8 bytes, to PATH.tmp, fsync'ed
and renamed. bfloat16 rounds to nearest even, as torch does.
"""
import json
import os
import struct

import numpy as np

ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
            "I8": 1, "U8": 1, "BOOL": 1}


def to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (NaN stays NaN)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    out[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def from_bf16_bits(bits):
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def encode(a, dtype):
    """A float array as the raw little-endian bytes of dtype F32, F16 or BF16."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "BF16":
        return to_bf16_bits(a).astype("<u2").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    raise ValueError(f"dtype {dtype} is not F32, F16 or BF16")


def write(path, entries, metadata=None):
    """entries: iterable of (name, dtype tag, shape, raw bytes). Returns (count, data bytes)."""
    entries = sorted(entries, key=lambda e: (-ITEMSIZE.get(e[1], 1), e[0]))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data section starts 8-aligned
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for entry in entries:
                f.write(entry[3])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return len(entries), offset


def write_arrays(path, tensors, dtype="F32", metadata=None):
    """tensors: {name: float array}, all stored as dtype."""
    return write(path, [(n, dtype, np.shape(a), encode(a, dtype)) for n, a in tensors.items()], metadata)


def read(path):
    """-> {name: float32 array} for the F32, F16 and BF16 tensors of a file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    base, out = 8 + n, {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        raw = data[base + b:base + end]
        if e["dtype"] == "BF16":
            a = from_bf16_bits(np.frombuffer(raw, dtype="<u2"))
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name!r} has dtype {e['dtype']}, not F32/F16/BF16")
        out[name] = a.reshape(e["shape"])
    return out
