#!/usr/bin/python3
"""Fetches the LPIPS v0.1 (AlexNet) weights and writes them in the layout cachebench embeds (LPIPS_WEIGHTS_DIR).

    /usr/bin/python3 scripts/fetch_lpips_weights.py --out DIR
    make clean && make LPIPS_WEIGHTS_DIR=DIR

Needs internet (or the two files given with --alexnet-pth / --lpips-pth) and torch (to read the .pth checkpoints).
Downloads
  - torchvision's ImageNet AlexNet, alexnet-owt-7be5be79.pth (its sha256 starts with 7be5be79, as torchvision checks),
    of which only the convolutions of alexnet.features are kept: features.{0,3,6,8,10}.{weight,bias};
  - the LPIPS v0.1 linear heads, lpips/weights/v0.1/alex.pth from richzhang/PerceptualSimilarity at commit
    082bb24f84c091ea94de2867d34c4544f68e0963 (BSD-2-Clause), keys linK.model.1.weight, written as linK.weight;
    they are checked against the sha256 of the copies in ../shared/lpips.
and writes one raw little-endian float32 file per tensor, C order, named NAME.f32, plus manifest.txt (file, shape,
sha256). Not run by the tests (no network there).
"""
import argparse
import hashlib
import os
import re
import sys
import tempfile
import urllib.request

ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_SHA256_PREFIX = "7be5be79"
LPIPS_URL = ("https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/"
             "082bb24f84c091ea94de2867d34c4544f68e0963/lpips/weights/v0.1/alex.pth")

FEATURES = [("features.0", (64, 3, 11, 11)), ("features.3", (192, 64, 5, 5)), ("features.6", (384, 192, 3, 3)),
            ("features.8", (256, 384, 3, 3)), ("features.10", (256, 256, 3, 3))]
LIN_CHANNELS = (64, 192, 384, 256, 256)
# sha256 of linK.weight.f32 as published in ../shared/lpips/manifest.txt
LIN_SHA256 = ["1b21ee01e0de563ae9c7d645f8c40534d878fe5fc00b00cc01a29e3887cb8822",
              "96b20e99719b4f1ac74b927546a2418913e87e95adc90a6629587fff450e3306",
              "ba5d4595d966dde9d19855d8e139ef6271f012a945b279cccffed2485e0e5992",
              "51c7dbf1c5c1e31db1baaf2618172ddd8b8240a8cd957a915582e0748cfb2a89",
              "60b6388e7b80292d96b8150f1f12605aa514f148847959ce322453731810029c"]


def fail(msg):
    sys.exit(f"fetch_lpips_weights.py: {msg}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url, folder):
    path = os.path.join(folder, url.rsplit("/", 1)[1])
    print(f"downloading {url}", file=sys.stderr)
    try:
        urllib.request.urlretrieve(url, path)
    except OSError as e:
        fail(f"cannot download {url}: {e}")
    return path


def check(ok, msg, allow_unverified):
    if ok:
        return
    if not allow_unverified:
        fail(msg + " (--allow-unverified to write anyway)")
    print(f"fetch_lpips_weights.py: warning: {msg}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder to write (created if missing)")
    p.add_argument("--alexnet-pth", help="use this torchvision alexnet checkpoint instead of downloading it")
    p.add_argument("--lpips-pth", help="use this LPIPS v0.1 alex.pth instead of downloading it")
    p.add_argument("--allow-unverified", action="store_true",
                   help="write even when a checksum differs (for other checkpoints; LPIPS values then differ)")
    args = p.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError as e:
        fail(f"{e}: reading the .pth checkpoints needs torch and numpy (Debian: python3-torch python3-numpy)")

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        alexnet_path = args.alexnet_pth or download(ALEXNET_URL, tmp)
        lpips_path = args.lpips_pth or download(LPIPS_URL, tmp)
        check(sha256_file(alexnet_path).startswith(ALEXNET_SHA256_PREFIX),
              f"{alexnet_path}: sha256 does not start with {ALEXNET_SHA256_PREFIX} (not alexnet-owt-7be5be79.pth)",
              args.allow_unverified)
        alexnet = torch.load(alexnet_path, map_location="cpu")
        heads = torch.load(lpips_path, map_location="cpu")

    tensors = []  # (name, array)
    for name, shape in FEATURES:
        for part, part_shape in (("weight", shape), ("bias", shape[:1])):
            key = f"{name}.{part}"
            if key not in alexnet:
                fail(f"{alexnet_path}: no tensor {key}; is it torchvision's alexnet state dict?")
            t = alexnet[key].detach().float().numpy()
            if t.shape != part_shape:
                fail(f"{alexnet_path}: {key} has shape {t.shape}, expected {part_shape}")
            tensors.append((key, t))
    for k, channels in enumerate(LIN_CHANNELS):
        # lpips' NetLinLayer is Sequential(Dropout, Conv2d): the conv is model.1 (model.0 when saved without dropout)
        keys = [key for key in heads if re.fullmatch(rf"lin{k}\.model\.\d+\.weight", key)]
        if len(keys) != 1:
            fail(f"{lpips_path}: expected one lin{k}.model.N.weight, found {keys}")
        t = heads[keys[0]].detach().float().numpy()
        if t.shape != (1, channels, 1, 1):
            fail(f"{lpips_path}: {keys[0]} has shape {t.shape}, expected (1, {channels}, 1, 1)")
        tensors.append((f"lin{k}.weight", t))

    lines = ["# file\tshape\tsha256 (raw little-endian float32, C order)"]
    for name, t in tensors:
        data = np.ascontiguousarray(t, dtype="<f4").tobytes()
        digest = hashlib.sha256(data).hexdigest()
        m = re.fullmatch(r"lin(\d)\.weight", name)
        if m:
            check(digest == LIN_SHA256[int(m.group(1))], f"{name}: sha256 {digest} differs from the published heads",
                  args.allow_unverified)
        with open(os.path.join(args.out, name + ".f32"), "wb") as f:
            f.write(data)
        lines.append(f"{name}.f32\t{list(t.shape)}\t{digest}")
    # The manifest last: its presence says the folder is complete (the build also checks each file against it).
    with open(os.path.join(args.out, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(tensors)} tensors and manifest.txt to {args.out}; now build with "
          f"make LPIPS_WEIGHTS_DIR={os.path.abspath(args.out)}", file=sys.stderr)


if __name__ == "__main__":
    main()
