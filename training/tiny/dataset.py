"""Procedural text-to-video dataset for the tiny model, generated on the fly.

One object (circle, square, triangle) in one colour (red, green, blue, yellow, white) moves left/right/up/down at
constant speed over a plain background (black, gray, white, blue). Prompt:
    "a {colour} {shape} moving {direction} on a {background} background"
The object never has the background's colour (white-on-white and blue-on-blue are excluded). Position, size and speed
vary; the object stays fully inside the 64x64 frame for all 8 frames. Edges are anti-aliased (signed distance,
1-pixel ramp). Videos are float32 [3, 8, 64, 64] (channels first, [C][F][H][W]) with values in [-1, 1].
"up" means towards row 0 (top of the image), "left" towards column 0.

    python3 training/tiny/dataset.py [out.png]   # writes a strip of a few random samples for a visual check
"""
import numpy as np

SHAPES = ["circle", "square", "triangle"]
COLOURS = {  # RGB in [0,1]
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.80, 0.15),
    "blue": (0.10, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "white": (1.00, 1.00, 1.00),
}
BACKGROUNDS = {
    "black": (0.0, 0.0, 0.0),
    "gray": (0.5, 0.5, 0.5),
    "white": (1.0, 1.0, 1.0),
    "blue": COLOURS["blue"],
}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # (dx, dy) per unit speed
OPPOSITE = {d: e for d, (dx, dy) in DIRECTIONS.items() for e, v in DIRECTIONS.items() if v == (-dx, -dy)}

FRAMES, H, W = 8, 64, 64

# All valid (colour, shape, direction, background) combinations.
COMBOS = [(c, s, d, b) for c in COLOURS for s in SHAPES for d in DIRECTIONS for b in BACKGROUNDS if c != b]


def prompt_of_params(p):
    """The prompt of a random_params() dict."""
    return prompt_of(p["colour"], p["shape"], p["direction"], p["background"])


def reversed_prompt(prompt):
    """The prompt of a video played backwards: the same words with the opposite direction ('' stays '')."""
    return " ".join(OPPOSITE.get(w, w) for w in prompt.split(" "))


def prompt_of(colour, shape, direction, background):
    return "a %s %s moving %s on a %s background" % (colour, shape, direction, background)


_YY, _XX = np.meshgrid(np.arange(H) + 0.5, np.arange(W) + 0.5, indexing="ij")


def _signed_distance(shape, dx, dy, size, xp=np):
    """Signed distance (pixels, > 0 inside) of offsets dx, dy from the centre to the shape's edge. xp: numpy or torch
    (both have sqrt, abs, maximum and minimum), so the training renderer on a GPU draws exactly these shapes."""
    if shape == "circle":
        return size - xp.sqrt(dx * dx + dy * dy)
    if shape == "square":
        s = size * 0.88  # similar area to the circle
        return s - xp.maximum(xp.abs(dx), xp.abs(dy))
    if shape == "triangle":
        # upward-pointing equilateral triangle, circumradius R, centroid at (cx, cy)
        R = size * 1.3
        d = None
        for k in range(3):
            a = -np.pi / 2 + np.pi + 2 * np.pi * k / 3  # outward normal of the edge opposite vertex k
            nx, ny = float(np.cos(a)), float(np.sin(a))
            dist = R / 2 - (dx * nx + dy * ny)  # inradius = R/2
            d = dist if d is None else xp.minimum(d, dist)
        return d
    raise ValueError(shape)


def _path(direction, cx0, cy0, speed):
    """The object's centre in every frame: cx, cy [F] (pixels)."""
    ddx, ddy = DIRECTIONS[direction]
    t = np.arange(FRAMES, dtype=np.float64)
    return cx0 + ddx * speed * t, cy0 + ddy * speed * t


def _coverage(shape, cx, cy, size):
    """Anti-aliased coverage [F,H,W] for centres cx, cy [F] (pixels) and half-size `size`."""
    dx = _XX[None] - cx[:, None, None]
    dy = _YY[None] - cy[:, None, None]
    return np.clip(_signed_distance(shape, dx, dy, size) + 0.5, 0.0, 1.0)


def render(colour, shape, direction, background, cx0, cy0, size, speed):
    """-> float32 video [3, F, H, W] in [-1, 1]."""
    cov = _coverage(shape, *_path(direction, cx0, cy0, speed), size)[None]  # [1,F,H,W]
    fg = np.asarray(COLOURS[colour], dtype=np.float64)[:, None, None, None]
    bg = np.asarray(BACKGROUNDS[background], dtype=np.float64)[:, None, None, None]
    img = bg * (1.0 - cov) + fg * cov
    return (img * 2.0 - 1.0).astype(np.float32)


def random_params(rng, combo=None):
    """Draw one video's parameters -> dict(colour, shape, direction, background, cx0, cy0, size, speed)."""
    if combo is None:
        combo = COMBOS[rng.integers(len(COMBOS))]
    colour, shape, direction, background = combo
    size = rng.uniform(6.0, 12.0)
    ext = size * (1.3 if shape == "triangle" else 1.0)  # conservative half-extent
    lo, hi = ext + 1.0, W - ext - 1.0
    max_speed = min(5.0, (hi - lo) / (FRAMES - 1))
    speed = rng.uniform(2.0, max_speed)
    travel = speed * (FRAMES - 1)
    ddx, ddy = DIRECTIONS[direction]
    # motion axis: start so that the whole path stays inside; other axis: anywhere inside
    if ddx != 0:
        start = rng.uniform(lo, hi - travel)
        cx0 = start if ddx > 0 else W - start
        cy0 = rng.uniform(lo, hi)
    else:
        start = rng.uniform(lo, hi - travel)
        cy0 = start if ddy > 0 else H - start
        cx0 = rng.uniform(lo, hi)
    return dict(colour=colour, shape=shape, direction=direction, background=background, cx0=cx0, cy0=cy0,
                size=size, speed=speed)


def random_sample(rng, combo=None):
    """-> (video [3,F,H,W] float32, prompt str, params dict)."""
    p = random_params(rng, combo)
    vid = render(p["colour"], p["shape"], p["direction"], p["background"], p["cx0"], p["cy0"], p["size"], p["speed"])
    return vid, prompt_of_params(p), p


def render_batch_torch(params, device):
    """render() for a list of random_params() dicts at once, with torch on `device` (float64 like render(), then
    float32): a batch of 256 takes ~0.3 s in numpy on one core, which would starve a GPU that takes a few tens of
    milliseconds per training step. -> tensor [B,3,F,H,W] in [-1, 1]."""
    import torch
    f64 = dict(dtype=torch.float64, device=device)
    col = lambda key: torch.tensor([[p[key]] for p in params], **f64)  # noqa: E731  [B,1]
    dirs = torch.tensor([DIRECTIONS[p["direction"]] for p in params], **f64)  # [B,2]
    t = torch.arange(FRAMES, **f64)[None]  # [1,F]
    cx = col("cx0") + dirs[:, :1] * col("speed") * t  # [B,F]
    cy = col("cy0") + dirs[:, 1:] * col("speed") * t
    xx = torch.arange(W, **f64) + 0.5
    yy = torch.arange(H, **f64) + 0.5
    dx = xx.view(1, 1, 1, W) - cx[:, :, None, None]  # [B,F,1,W]
    dy = yy.view(1, 1, H, 1) - cy[:, :, None, None]  # [B,F,H,1]
    size = col("size").view(-1, 1, 1, 1)
    shape_id = torch.tensor([SHAPES.index(p["shape"]) for p in params], device=device).view(-1, 1, 1, 1)
    d = None
    for i, shape in enumerate(SHAPES):  # every shape over the whole batch, then each video keeps its own
        sd = _signed_distance(shape, dx, dy, size, torch)
        d = sd if d is None else torch.where(shape_id == i, sd, d)
    cov = torch.clamp(d + 0.5, 0.0, 1.0)[:, None]  # [B,1,F,H,W]
    fg = torch.tensor([COLOURS[p["colour"]] for p in params], **f64).view(-1, 3, 1, 1, 1)
    bg = torch.tensor([BACKGROUNDS[p["background"]] for p in params], **f64).view(-1, 3, 1, 1, 1)
    img = bg * (1.0 - cov) + fg * cov
    return (img * 2.0 - 1.0).float()


def coverage_means(rng, n):
    """E[coverage] [F,H,W] (float64) for each (shape, direction), over n random_params() draws each. A video is
    bg * (1 - cov) + fg * cov, so these 12 maps give E[x0 | prompt] for every prompt (mean_video). The data is exactly
    symmetric under playing a video backwards with the opposite word (random_params starts the object uniformly where
    its path fits), so each pair of opposite directions shares one estimate from 2n draws: the mean of "left" is the
    mean of "right" played backwards, exactly, not only within the Monte Carlo error."""
    raw = {}
    for s in SHAPES:
        for d in DIRECTIONS:
            acc = np.zeros((FRAMES, H, W))
            for _ in range(n):
                p = random_params(rng, ("white", s, d, "black"))
                acc += _coverage(s, *_path(d, p["cx0"], p["cy0"], p["speed"]), p["size"])
            raw[(s, d)] = acc / n
    out = {}
    for (s, d), m in raw.items():
        out[(s, d)] = (m + raw[(s, OPPOSITE[d])][::-1]) / 2
    return out


def mean_video(combo, cov_means):
    """E[x0 | prompt] for a (colour, shape, direction, background) combination: float32 [3, F, H, W] in [-1, 1]. At
    sigma = 1 (pure noise in) this is the flow-matching loss's ideal x0 prediction."""
    colour, shape, direction, background = combo
    cov = cov_means[(shape, direction)][None]
    fg = np.asarray(COLOURS[colour], dtype=np.float64)[:, None, None, None]
    bg = np.asarray(BACKGROUNDS[background], dtype=np.float64)[:, None, None, None]
    return ((bg * (1.0 - cov) + fg * cov) * 2.0 - 1.0).astype(np.float32)


def mean_videos(cov_means):
    """{prompt: E[x0 | prompt]} for every valid prompt (mean_video), and "" (the empty prompt): E[x0], the mean over
    all combinations, which random_params draws uniformly."""
    out = {prompt_of(*c): mean_video(c, cov_means) for c in COMBOS}
    out[""] = np.mean(list(out.values()), axis=0).astype(np.float32)
    return out


def same_words_means(means):
    """{prompt: the mean of means[q] over every prompt q with the same words}: E[x0 | the prompt's words]. The model
    reads its prompt as a bag of words, so "a white X moving D on a blue background" and "a blue X moving D on a white
    background" are one input to it, and its ideal prediction at sigma 1 is their average. Every other prompt keeps
    its own mean. (Training towards each order's own mean instead puts a whole-background flip into 24 of the 216
    combinations' targets: ~50x the loss of the rest, none of it learnable; TRAINING.md run 11.)"""
    groups = {}
    for q in means:
        groups.setdefault(tuple(sorted(q.split())), []).append(q)
    out = {}
    for qs in groups.values():
        avg = np.mean([means[q] for q in qs], axis=0).astype(np.float32)
        for q in qs:
            out[q] = avg
    return out


def random_batch(rng, n):
    vids, prompts = [], []
    for _ in range(n):
        v, p, _ = random_sample(rng)
        vids.append(v)
        prompts.append(p)
    return np.stack(vids), prompts


def to_uint8_strip(video):
    """[3,F,H,W] in [-1,1] -> uint8 [H, F*(W+2)-2, 3] strip (2-px separators)."""
    v = np.clip((np.asarray(video) + 1.0) * 0.5, 0, 1)
    C, F, Hh, Ww = v.shape
    strip = np.full((Hh, F * (Ww + 2) - 2, 3), 0.35, dtype=np.float64)
    for f in range(F):
        strip[:, f * (Ww + 2):f * (Ww + 2) + Ww] = v[:, f].transpose(1, 2, 0)
    return (strip * 255 + 0.5).astype(np.uint8)


def write_png(path, rgb, scale=1):
    """Minimal PNG writer (uint8 [H,W,3]); no PIL needed."""
    import struct
    import zlib
    rgb = np.asarray(rgb, dtype=np.uint8)
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    import sys
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/dataset_preview.png"
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(6):
        v, p, prm = random_sample(rng)
        print(p, {k: (round(x, 1) if isinstance(x, float) else x) for k, x in prm.items()})
        rows.append(to_uint8_strip(v))
        rows.append(np.full((4, rows[-1].shape[1], 3), 128, np.uint8))
    write_png(out, np.concatenate(rows), scale=2)
    print("wrote", out, "combos:", len(COMBOS))
