#!/usr/bin/env python3
"""Wan2.1 VAE checkpoint (Wan2.1_VAE.pth, a PyTorch state dict) -> safetensors with the official key names.

    /usr/bin/python3 scripts/convert_wan_vae.py Wan2.1_VAE.pth wan21_vae.safetensors [--dtype f32|bf16|f16]
        [--decoder-only]

Names and layouts are kept as they are (`decoder.*`, `conv2.*`, and unless --decoder-only also `encoder.*` and
`conv1.*`), so `cachebench decode --vae` reads the result directly. Writes to OUT.tmp and renames.
Needs torch (to unpickle the .pth) and numpy; the safetensors package is not needed.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16}


def _to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (NaN stays NaN)."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    out[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def _from_bf16_bits(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors, dtype="F32"):
    """tensors: dict name -> float array. dtype: F32, F16 or BF16 for every tensor. Atomic (path.tmp + rename)."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name], dtype=np.float32)
        if dtype == "BF16":
            raw = _to_bf16_bits(a).astype("<u2").tobytes()
        else:
            raw = a.astype(np.dtype(_DTYPES[dtype]).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for raw in blobs:
                f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_safetensors(path):
    """-> dict name -> float32 numpy array (F32, F16 and BF16 tensors)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    base, out = 8 + n, {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = data[base + b:base + e]
        if info["dtype"] == "BF16":
            a = _from_bf16_bits(np.frombuffer(raw, dtype="<u2"))
        elif info["dtype"] in _DTYPES:
            a = np.frombuffer(raw, dtype=np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")).astype(np.float32)
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, info["dtype"]))
        out[name] = a.reshape(info["shape"]).copy()
    return out


def convert(state_dict, decoder_only=False):
    """state dict (name -> tensor or array) -> dict name -> float32 numpy array, names unchanged."""
    out = {}
    for name, value in state_dict.items():
        if decoder_only and not (name.startswith("decoder.") or name.startswith("conv2.")):
            continue
        a = value.detach().float().cpu().numpy() if hasattr(value, "detach") else np.asarray(value, np.float32)
        if not np.all(np.isfinite(a)):
            raise ValueError("tensor %s holds non-finite values" % name)
        out[name] = a
    if "conv2.weight" not in out or "decoder.head.2.weight" not in out:
        raise ValueError("not a Wan VAE state dict: no conv2.weight / decoder.head.2.weight")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pth")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="f32")
    ap.add_argument("--decoder-only", action="store_true", help="keep decoder.* and conv2.* only")
    args = ap.parse_args(argv)
    import torch

    sd = torch.load(args.pth, map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    try:
        tensors = convert(sd, args.decoder_only)
    except ValueError as e:
        print("convert_wan_vae: %s: %s" % (args.pth, e), file=sys.stderr)
        return 1
    write_safetensors(args.out, tensors, args.dtype.upper())
    print("wrote %s: %d tensors, %d parameters" % (args.out, len(tensors), sum(a.size for a in tensors.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
