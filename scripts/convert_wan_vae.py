#!/usr/bin/env python3
"""Wan2.1 VAE checkpoint (Wan2.1_VAE.pth, a PyTorch state dict) -> safetensors with the official key names.

    /usr/bin/python3 scripts/convert_wan_vae.py Wan2.1_VAE.pth wan21_vae.safetensors [--dtype f32|bf16|f16]
        [--decoder-only]

Names and layouts are kept as they are (`decoder.*`, `conv2.*`, and unless --decoder-only also `encoder.*` and
`conv1.*`), so `cachebench decode --vae` reads the result directly. Writes to OUT.tmp and renames.
Needs torch (to unpickle the .pth) and numpy; the safetensors package is not needed.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

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
    safetensors_np.write_arrays(args.out, tensors, args.dtype.upper())
    print("wrote %s: %d tensors, %d parameters" % (args.out, len(tensors), sum(a.size for a in tensors.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
