#!/usr/bin/env python3
"""Test helper for scripts/convert_wan_vae.py: turns a safetensors VAE checkpoint into a PyTorch .pth state dict
shaped like Wan2.1_VAE.pth (adds random `encoder.*` and top-level `conv1.*` tensors, which decode ignores).

    vae_make_pth.py IN.safetensors OUT.pth
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from safetensors_np import read as read_safetensors  # noqa: E402

tensors = read_safetensors(sys.argv[1])
sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
g = torch.Generator().manual_seed(0)
sd["encoder.conv1.weight"] = torch.randn(8, 3, 3, 3, 3, generator=g)
sd["encoder.conv1.bias"] = torch.randn(8, generator=g)
sd["conv1.weight"] = torch.randn(32, 32, 1, 1, 1, generator=g)
sd["conv1.bias"] = torch.randn(32, generator=g)
torch.save(sd, sys.argv[2])
