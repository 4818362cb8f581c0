#!/usr/bin/env python3
"""Convert a PyTorch state dict (.pth, e.g. an official Wan2.1 checkpoint) to safetensors, keeping every name.

    python3 scripts/convert_wan.py IN.pth OUT.safetensors [--dtype keep|f32|f16|bf16]

cachebench reads safetensors only (README "Running Wan2.1"). The state dict may be wrapped in {"state_dict": ...}
or {"model": ...}; tensor names are written unchanged. --dtype keep (default) stores each floating tensor in its
own dtype (F32, F16, BF16); f32/f16/bf16 convert every floating tensor. The file is written under OUT.tmp and
renamed when complete, so a failure leaves nothing behind. Needs torch and numpy (no safetensors package: the
format is written by scripts/safetensors_np.py).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402  (numpy only)


def torch_dtypes():
    """torch dtype -> (safetensors dtype, numpy dtype of the raw little-endian bytes)."""
    return {
        torch.float32: ("F32", np.dtype(np.float32)),
        torch.float16: ("F16", np.dtype(np.float16)),
        torch.bfloat16: ("BF16", np.dtype(np.int16)),  # raw bits: numpy has no bfloat16
        torch.float64: ("F64", np.dtype(np.float64)),
        torch.int64: ("I64", np.dtype(np.int64)),
        torch.int32: ("I32", np.dtype(np.int32)),
        torch.int16: ("I16", np.dtype(np.int16)),
        torch.int8: ("I8", np.dtype(np.int8)),
        torch.uint8: ("U8", np.dtype(np.uint8)),
        torch.bool: ("BOOL", np.dtype(np.bool_)),
    }


def fail(msg):
    print(f"convert_wan.py: {msg}", file=sys.stderr)
    sys.exit(1)


def load_state_dict(path):
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds for a bad pickle
        fail(f"{path}: cannot read as a PyTorch checkpoint: {e}")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        fail(f"{path}: not a state dict (a non-empty mapping of names to tensors)")
    for name, value in obj.items():
        if not isinstance(name, str) or not torch.is_tensor(value):
            fail(f"{path}: entry {name!r} is not a named tensor")
    return obj


def tensor_bytes(t, target, dtypes):
    t = t.detach().cpu()
    if target is not None and t.is_floating_point():
        t = t.to(target)
    if t.dtype not in dtypes:
        raise ValueError(f"dtype {t.dtype} has no safetensors equivalent here")
    name, np_dtype = dtypes[t.dtype]
    t = t.contiguous()
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    return name, list(t.shape), raw.numpy().astype(np_dtype.newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path, state, target):
    dtypes = torch_dtypes()
    entries = []
    for name in state:
        try:
            entries.append((name, *tensor_bytes(state[name], target, dtypes)))
        except ValueError as e:
            fail(f"tensor {name!r}: {e}")
    try:
        return safetensors_np.write(path, entries, {"format": "pt"})
    except OSError as e:
        fail(f"{path}: write failed: {e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="PyTorch state dict (.pth)")
    parser.add_argument("output", help="safetensors file to write")
    parser.add_argument("--dtype", choices=["keep", "f32", "f16", "bf16"], default="keep")
    args = parser.parse_args()
    if not os.path.isfile(args.input):
        fail(f"{args.input}: no such file")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        fail(f"{args.output}: would overwrite the input")
    global np, torch  # imported only now: argument errors are reported without torch's start-up time
    import numpy as np
    import torch

    state = load_state_dict(args.input)
    target = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}.get(args.dtype)
    count, nbytes = write_safetensors(args.output, state, target)
    print(f"{args.output}: {count} tensors, {nbytes / 2**20:.1f} MiB of data")


if __name__ == "__main__":
    main()
