#!/usr/bin/env python3
"""Writes a prompt-contexts file for `cachebench run/sweep --contexts` (README "Prompt contexts").

The file is safetensors with one tensor per prompt id of a prompt set ("id<TAB>prompt" lines, as
datasets/prompts.h reads them) plus the negative prompt's under "__negative__" (--negative-key). Each tensor is
[n_tokens, 4096]: the umT5-XXL encoder output trimmed to the prompt's token count, exactly what
wan/text2video.py passes to the DiT as `context` / `context_null` (the DiT zero-pads it to text_len = 512).

With the official encoder (needs the Wan2.1 repository and its checkpoint folder, a GPU helps):
    python3 scripts/make_contexts.py --prompts datasets/prompts_short.txt --out contexts.safetensors \\
        --wan-repo ~/src/Wan2.1 --ckpt-dir ~/models/Wan2.1-T2V-1.3B [--negative-prompt TEXT] [--dtype bf16]

It imports wan.modules.t5.T5EncoderModel and builds it as WanT2V.__init__ does (text_len 512, the config's
t5_checkpoint and t5_tokenizer inside --ckpt-dir, t5_dtype), then encodes each prompt alone, as generate() does.
The negative prompt defaults to the official `sample_neg_prompt` (wan/configs/shared_config.py), read from the
repository so that it is the same string cachebench records by default.

Random contexts for tests and timing (numpy only; no model):
    python3 scripts/make_contexts.py --prompts P.txt --out C.safetensors --random --text-dim 4096 [--seed 0]
        [--tokens N] [--dtype f32|bf16|f16]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

NEGATIVE_KEY = "__negative__"


def read_prompts(path):
    """(id, text) pairs, with the rules of datasets/prompts.c: blank and '#' lines skipped, unique ids."""
    items, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if "\t" not in line:
                sys.exit(f"{path}:{lineno}: expected \"id<TAB>prompt\"")
            pid, text = line.split("\t", 1)
            if pid in seen:
                sys.exit(f"{path}:{lineno}: duplicate prompt id '{pid}'")
            seen.add(pid)
            items.append((pid, text))
    if not items:
        sys.exit(f"{path}: no prompts")
    return items


def random_contexts(prompts, args):
    rng = np.random.default_rng(args.seed)
    out = {}
    for key, _ in prompts + [(args.negative_key, None)]:
        n = args.tokens if args.tokens else int(rng.integers(1, 17))
        out[key] = rng.standard_normal((n, args.text_dim), dtype=np.float32)
    return out


def official_contexts(prompts, args):
    sys.path.insert(0, os.path.abspath(args.wan_repo))
    import torch
    from wan.configs import WAN_CONFIGS
    from wan.modules.t5 import T5EncoderModel

    config = WAN_CONFIGS[args.task]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = T5EncoderModel(text_len=config.text_len, dtype=config.t5_dtype, device=device,
                             checkpoint_path=os.path.join(args.ckpt_dir, config.t5_checkpoint),
                             tokenizer_path=os.path.join(args.ckpt_dir, config.t5_tokenizer))
    negative = args.negative_prompt or config.sample_neg_prompt
    out = {}
    with torch.no_grad():
        for key, text in prompts + [(args.negative_key, negative)]:
            # T5EncoderModel.__call__ returns one tensor per prompt, already trimmed to its token count.
            out[key] = encoder([text], device)[0].float().cpu().numpy()
    return out, negative


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", required=True, help="prompt set, lines id<TAB>prompt")
    ap.add_argument("--out", required=True, help="contexts file to write (.safetensors)")
    ap.add_argument("--negative-key", default=NEGATIVE_KEY, help="key of the negative context (default %(default)s)")
    ap.add_argument("--negative-prompt", default="", help="negative prompt (default: the official sample_neg_prompt)")
    ap.add_argument("--dtype", choices=["f32", "bf16", "f16"], default="bf16")
    ap.add_argument("--random", action="store_true", help="random contexts (tests, timing): no encoder")
    ap.add_argument("--text-dim", type=int, default=4096, help="--random: context width (default 4096)")
    ap.add_argument("--tokens", type=int, default=0, help="--random: tokens per context (default: random 1..16, within every model's text_len)")
    ap.add_argument("--seed", type=int, default=0, help="--random: seed")
    ap.add_argument("--wan-repo", help="the official Wan2.1 repository (github.com/Wan-Video/Wan2.1)")
    ap.add_argument("--ckpt-dir", help="the Wan2.1 checkpoint folder (holds the T5 checkpoint and tokenizer)")
    ap.add_argument("--task", default="t2v-1.3B", help="key of wan.configs.WAN_CONFIGS (default %(default)s)")
    ap.add_argument("--device", help="torch device for the encoder (default: cuda when available, else cpu)")
    args = ap.parse_args()

    prompts = read_prompts(args.prompts)
    if any(pid == args.negative_key for pid, _ in prompts):
        sys.exit(f"{args.prompts}: a prompt id equals the negative key '{args.negative_key}'")
    if args.random:
        if args.text_dim < 1 or args.tokens < 0:
            sys.exit("--text-dim must be >= 1 and --tokens >= 0")
        tensors = random_contexts(prompts, args)
        meta = {"encoder": "random", "seed": args.seed, "negative_prompt": args.negative_prompt}
    else:
        if not args.wan_repo or not args.ckpt_dir:
            sys.exit("give --wan-repo and --ckpt-dir (the official encoder), or --random")
        tensors, negative = official_contexts(prompts, args)
        meta = {"encoder": "umt5-xxl (wan.modules.t5.T5EncoderModel)", "task": args.task, "negative_prompt": negative}
    meta["prompts"] = args.prompts
    meta["negative_key"] = args.negative_key
    safetensors_np.write_arrays(args.out, tensors, args.dtype.upper(), meta)
    print(f"wrote {args.out}: {len(tensors)} contexts ({len(prompts)} prompts + negative '{args.negative_key}'), "
          f"{args.dtype}")


if __name__ == "__main__":
    main()
