"""Independent transcription of Pyramid Attention Broadcast as VideoSys runs it, the oracle of tests/test_pab.c.

Source (read with the search tools, not copied): NUS-HPC-AI-Lab/VideoSys
  videosys/core/pab/pab_mgr.py           PABManager.if_broadcast_spatial / if_broadcast_cross (a6f635d)
  videosys/models/transformers/cogvideox_transformer_3d.py   CogVideoXBlock.forward: attn_count, last_attn (ff918ec)
The rule, per attention module instance with its own counter `count` (0 at the start):
  broadcast = enabled and count % range != 0 and lo < int(timestep) < hi;  count = (count + 1) % steps
VideoSys batches cond and uncond, so each module sees one call per step; the harness calls the model once per branch,
so this transcription gives every branch its own module instances (its own counters and cached outputs), which is
what the batched official code amounts to. `warmup` (steps always computed) is cachebench's addition, applied on top.

Usage:
  pab_official.py flags STEPS LAYERS BRANCHES VIDEOS WARMUP SELF CROSS TIMESTEPS
    SELF, CROSS: "range,lo,hi" (range 0 = the kind is off); TIMESTEPS: comma-separated model timesteps.
    Prints one '0'/'1' per (video, step, branch, layer, kind self then cross): 1 = the module broadcasts.
  pab_official.py replay CASE [OUT WARMUP SELF CROSS]...
    The tiny model through tests/strategy_replay.py (the runner's CFG Euler loop on fixture_replay_case's inputs),
    each model call composed as VideoSys's blocks do: self-attention broadcast or computed, gated residual; then
    cross-attention on the updated tokens, broadcast or computed, residual; then the FFN, always computed. Writes OUT
    (safetensors): flags [steps, 2, layers, 2] (kind self, cross) and latents [steps, C, F, H, W].
"""
import sys


class Manager:
    """The per-kind broadcast rule (PABManager) with the run's step count (update_steps)."""

    def __init__(self, steps, kinds):
        self.steps = steps
        self.kinds = kinds  # name -> (enabled, range, lo, hi)

    def if_broadcast(self, kind, timestep, count):
        enabled, rng, lo, hi = self.kinds[kind]
        flag = bool(enabled and timestep is not None and count % rng != 0 and lo < timestep < hi)
        return flag, (count + 1) % self.steps


class Block:
    """One block's PAB state: a counter and the last computed output per attention kind."""

    def __init__(self):
        self.count = {"self": 0, "cross": 0}
        self.last = {"self": None, "cross": None}

    def module(self, mgr, kind, timestep, compute, enabled_any, allow=True):
        """Returns (output, broadcast): the cached output when broadcasting, else compute() (stored).
        allow=False (cachebench's warm-up) computes whatever the rule says; the counter still advances."""
        broadcast = False
        if enabled_any:
            broadcast, self.count[kind] = mgr.if_broadcast(kind, timestep, self.count[kind])
        broadcast = broadcast and allow
        if broadcast:
            return self.last[kind], True
        out = compute()
        if enabled_any:
            self.last[kind] = out
        return out, False


def parse_kind(text):
    rng, lo, hi = text.split(",")
    rng = int(rng)
    return (rng >= 1, max(rng, 1), float(lo), float(hi))


def make_manager(steps, self_kind, cross_kind):
    return Manager(steps, {"self": self_kind, "cross": cross_kind})


def flags(argv):
    steps, layers, branches, videos, warmup = (int(a) for a in argv[:5])
    mgr = make_manager(steps, parse_kind(argv[5]), parse_kind(argv[6]))
    enabled_any = mgr.kinds["self"][0] or mgr.kinds["cross"][0]
    timesteps = [float(t) for t in argv[7].split(",")]
    assert len(timesteps) == steps
    blocks = [[Block() for _ in range(layers)] for _ in range(branches)]
    out = []
    for _ in range(videos):
        for step in range(steps):
            t = int(timesteps[step])  # VideoSys passes int(timestep[0])
            for b in range(branches):
                for layer in range(layers):
                    for kind in ("self", "cross"):
                        _, broadcast = blocks[b][layer].module(mgr, kind, t, lambda: object(), enabled_any,
                                                               step >= warmup)
                        out.append("1" if broadcast else "0")
    print("".join(out))


class Replay:
    """One model call of the tiny model with PAB: what CogVideoXBlock.forward does for its attention (and the
    Open-Sora/Latte blocks for cross-attention), on the driver's per-module stages."""

    def __init__(self, model, steps, warmup, self_kind, cross_kind):
        import numpy as np
        self.model, self.warmup = model, warmup
        self.mgr = make_manager(steps, self_kind, cross_kind)
        self.enabled_any = self_kind[0] or cross_kind[0]
        self.blocks = [[Block() for _ in range(model.num_layers)] for _ in range(2)]
        self.flags = np.zeros((steps, 2, model.num_layers, 2))

    def __call__(self, step, branch, x, t, text):
        m = self.model
        c = m.embed(x, t, text)
        timestep = int(t)  # VideoSys: int(timestep[0])
        x = c.tokens
        for layer in range(m.num_layers):
            blk = self.blocks[branch][layer]
            gate_msa, gate_mlp = m.gates(layer, c)
            y, b_self = blk.module(self.mgr, "self", timestep, lambda: m.self_attn(layer, c, x), self.enabled_any,
                                   step >= self.warmup)
            x = x + y * gate_msa
            y, b_cross = blk.module(self.mgr, "cross", timestep, lambda: m.cross_attn(layer, c, x), self.enabled_any,
                                    step >= self.warmup)
            x = x + y
            x = x + m.ffn(layer, c, x) * gate_mlp
            self.flags[step, branch, layer] = (b_self, b_cross)
        return m.head(c, x)


def replay(argv):
    import strategy_replay as R
    case = R.Case(argv[0])
    model = R.Tiny(case.weights)
    runs = argv[1:]
    for at in range(0, len(runs), 4):
        out_path, warmup = runs[at], int(runs[at + 1])
        strategy = Replay(model, case.steps, warmup, parse_kind(runs[at + 2]), parse_kind(runs[at + 3]))
        out = R.sample(case, strategy)
        R.write(out_path, flags=strategy.flags, latents=out["latents"])


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "flags":
        flags(sys.argv[2:])
    elif len(sys.argv) >= 2 and sys.argv[1] == "replay":
        replay(sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
