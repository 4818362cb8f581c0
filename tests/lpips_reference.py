#!/usr/bin/python3
"""Reference LPIPS v0.1 (AlexNet) in torch, the oracle for metrics/lpips.c.

    lpips_reference.py --weights DIR [--synthetic SEED --lin-from LINDIR] A.png B.png [A.png B.png ...]

Reads the weights from DIR in the LPIPS_WEIGHTS_DIR layout (features.N.{weight,bias}.f32, linK.weight.f32: raw
little-endian float32, C order). With --synthetic, first writes a seeded synthetic AlexNet backbone there (He-normal
weights, so activations neither vanish nor blow up through the five layers; small random biases) plus the linear
heads copied from LINDIR, and a manifest.txt: the real backbone is not available here, and what is checked is that
the C code computes the same function as torch for the same weights.

Prints one LPIPS value per pair (%.17g). The network is richzhang/PerceptualSimilarity's lpips.LPIPS(net='alex',
version='0.1') forward with normalize=True, written out in plain torch ops: [0,1] -> 2x-1 -> (x - shift) / scale ->
torchvision alexnet.features tapped after each ReLU -> normalize_tensor (x / (sqrt(sum x^2) + 1e-10)) -> squared
difference -> 1x1 conv with linK (no bias) -> spatial mean -> sum over taps.
Exits 77 (the "skipped" status) when torch, numpy or PIL is missing.
"""
import argparse
import hashlib
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
except ImportError as e:
    print(f"lpips_reference.py: {e} (install python3-torch, python3-numpy, python3-pil)", file=sys.stderr)
    sys.exit(77)

# name, shape, and for convs (stride, padding, max pool before)
CONVS = [("features.0", (64, 3, 11, 11), 4, 2, False),
         ("features.3", (192, 64, 5, 5), 1, 2, True),
         ("features.6", (384, 192, 3, 3), 1, 1, True),
         ("features.8", (256, 384, 3, 3), 1, 1, False),
         ("features.10", (256, 256, 3, 3), 1, 1, False)]
LINS = [(f"lin{k}", (1, c, 1, 1)) for k, c in enumerate((64, 192, 384, 256, 256))]
SHIFT = torch.tensor([-.030, -.088, -.188])[None, :, None, None]
SCALE = torch.tensor([.458, .448, .450])[None, :, None, None]


def write_tensor(folder, name, array, manifest):
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    with open(os.path.join(folder, name + ".f32"), "wb") as f:
        f.write(data)
    manifest.append(f"{name}.f32\t{list(array.shape)}\t{hashlib.sha256(data).hexdigest()}")


def write_synthetic(folder, seed, lin_from):
    rng = np.random.default_rng(seed)
    manifest = ["# file\tshape\tsha256 (raw little-endian float32, C order)"]
    for name, shape, _, _, _ in CONVS:
        fan_in = shape[1] * shape[2] * shape[3]
        write_tensor(folder, name + ".weight", rng.normal(0.0, np.sqrt(2.0 / fan_in), shape), manifest)
        write_tensor(folder, name + ".bias", rng.uniform(-0.05, 0.05, shape[0]), manifest)
    for name, shape in LINS:
        lin = np.fromfile(os.path.join(lin_from, name + ".weight.f32"), dtype="<f4").reshape(shape)
        write_tensor(folder, name + ".weight", lin, manifest)
    with open(os.path.join(folder, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


def read_tensor(folder, name, shape):
    data = np.fromfile(os.path.join(folder, name + ".f32"), dtype="<f4")
    return torch.from_numpy(data.reshape(shape).copy())


def load_image(path):
    img = Image.open(path)
    if img.mode != "RGB":
        sys.exit(f"lpips_reference.py: {path}: expected an 8-bit RGB PNG, got mode {img.mode}")
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255.0
    return x


def features(x, w):
    taps = []
    for name, _, stride, padding, pool_before in CONVS:
        if pool_before:
            x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.relu(F.conv2d(x, w[name + ".weight"], w[name + ".bias"], stride=stride, padding=padding))
        taps.append(x)
    return taps


def normalize_tensor(x, eps=1e-10):
    return x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + eps)


def lpips(a, b, w):
    a, b = (2 * a - 1 - SHIFT) / SCALE, (2 * b - 1 - SHIFT) / SCALE
    total = 0
    for k, (fa, fb) in enumerate(zip(features(a, w), features(b, w))):
        diff = (normalize_tensor(fa) - normalize_tensor(fb)) ** 2
        total = total + F.conv2d(diff, w[f"lin{k}.weight"]).mean([2, 3], keepdim=True)
    return total.item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", required=True)
    p.add_argument("--synthetic", type=int, metavar="SEED")
    p.add_argument("--lin-from", metavar="LINDIR")
    p.add_argument("images", nargs="+")
    args = p.parse_args()
    if len(args.images) % 2:
        p.error("images come in pairs")
    if args.synthetic is not None:
        if not args.lin_from:
            p.error("--synthetic needs --lin-from")
        write_synthetic(args.weights, args.synthetic, args.lin_from)
    torch.set_num_threads(1)  # tests run two at a time on two cores
    w = {}
    for name, shape, _, _, _ in CONVS:
        w[name + ".weight"] = read_tensor(args.weights, name + ".weight", shape)
        w[name + ".bias"] = read_tensor(args.weights, name + ".bias", (shape[0],))
    for name, shape in LINS:
        w[name + ".weight"] = read_tensor(args.weights, name + ".weight", shape)
    with torch.no_grad():
        for a_path, b_path in zip(args.images[0::2], args.images[1::2]):
            # (2a - 1 - shift) / scale is the same float32 ops as lpips' 2*in0 - 1 followed by ScalingLayer
            print(f"{lpips(load_image(a_path), load_image(b_path), w):.17g}")


if __name__ == "__main__":
    main()
