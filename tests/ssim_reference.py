#!/usr/bin/python3
"""Reference PSNR and SSIM from scikit-image, the oracle for metrics/psnr.c and metrics/ssim.c (DESIGN §7).

    ssim_reference.py A.png B.png [A.png B.png ...]

Prints one line per pair: "psnr ssim" (%.17g; psnr "inf" when identical), computed as the oracle README pins it:
peak_signal_noise_ratio(a, b, data_range=1) and structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=-1) on the 8-bit RGB images scaled to [0, 1] in float64.
Exits 77 (the "skipped" status) when scikit-image or PIL is missing, so the C test can skip instead of failing.
"""
import sys

try:
    import numpy as np
    import skimage
    from PIL import Image
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
except ImportError as e:
    print(f"ssim_reference.py: {e} (install python3-skimage)", file=sys.stderr)
    sys.exit(77)


def load(path):
    img = Image.open(path)
    if img.mode != "RGB":
        sys.exit(f"ssim_reference.py: {path}: expected an 8-bit RGB PNG, got mode {img.mode}")
    return np.asarray(img).astype(np.float64) / 255.0


def main(paths):
    if len(paths) == 0 or len(paths) % 2:
        sys.exit("usage: ssim_reference.py A.png B.png [A.png B.png ...]")
    if not skimage.__version__.startswith("0.19"):
        print(f"ssim_reference.py: note: scikit-image {skimage.__version__}, the definition is pinned to 0.19",
              file=sys.stderr)
    for a_path, b_path in zip(paths[0::2], paths[1::2]):
        a, b = load(a_path), load(b_path)
        with np.errstate(divide="ignore"):  # identical images: MSE 0, PSNR inf
            psnr = peak_signal_noise_ratio(a, b, data_range=1)
        ssim = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=1, channel_axis=-1)
        print(f"{psnr:.17g} {ssim:.17g}")


if __name__ == "__main__":
    main(sys.argv[1:])
