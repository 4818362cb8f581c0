"""Independent transcription of the official FBCache (chengzeyi/ParaAttention 4de137c,
src/para_attn/first_block_cache/utils.py + taylorseer.py) and DBCache (vipshop/cache-dit f86744a,
src/cache_dit/caching/cache_blocks/pattern_base.py, cache_contexts/cache_manager.py, cache_context.py,
calibrators/taylorseer.py) block-level caches, for tests/test_dbcache.c's tiny-model replay.

Written for the test from the official code, not from strategies/dbcache.c: the counters are the official ones
(transformer calls counted by mark_step_begin, the odd calls being the CFG branch), the buffers are dicts keyed as
the official ones, and the TaylorSeer state is created when the official code creates it.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strategy_replay as R  # noqa: E402 (beside this file)
from taylorseer_official import TaylorSeerState  # noqa: E402


# ------------------------------------------------------------------------------------------------ TaylorSeer

class TaylorSeer(TaylorSeerState):
    """ParaAttention's TaylorSeer and cache-dit's TaylorSeerState are the same recurrence (tests/taylorseer_official.py
    transcribes it); both advance current_step by one in mark_step_begin."""

    def mark_step_begin(self):
        self.current_step += 1


def rel_l1(prev, cur):
    """are_two_tensors_similar / similarity: mean|prev - cur| / mean|prev|."""
    return R.rel_l1(cur, prev)


# ------------------------------------------------------------------------------------------------ ParaAttention

class ParaAttentionFBCache:
    """CacheContext with enable_alter_cache=True (diffusers_adapters/wan.py), CachedTransformerBlocks.forward."""

    def __init__(self, threshold, warmup_steps=0, taylorseer=False, n_derivatives=2):
        self.threshold = threshold
        self.warmup_steps = warmup_steps
        self.enable_taylorseer = taylorseer
        self.buffers = {}
        self.executed_steps = 0
        self.is_alter_cache = True
        if taylorseer:  # __post_init__: both created with the context
            self.taylorseer = TaylorSeer(n_derivatives)
            self.alter_taylorseer = TaylorSeer(n_derivatives)

    def _name(self, name):
        return name + "_alter" if self.is_alter_cache else name

    def get_taylorseer(self):
        return self.alter_taylorseer if self.is_alter_cache else self.taylorseer

    def mark_step_begin(self):
        self.is_alter_cache = not self.is_alter_cache
        if not self.is_alter_cache:
            self.executed_steps += 1
        if self.enable_taylorseer:
            self.get_taylorseer().mark_step_begin()

    def forward(self, h, blocks):
        """h: block-stack input; blocks: list of callables h -> h. Returns (h_out, used_cache, diff, layers_run)."""
        original = h
        h = blocks[0](h)
        r1 = h - original
        self.mark_step_begin()
        diff = None
        can = False
        step = self.executed_steps - 1
        if not (step < self.warmup_steps) and self.threshold > 0.0:
            prev = self.buffers.get(self._name("first_hidden_states_residual"))
            if prev is not None:
                diff = rel_l1(prev, r1)
                can = diff < self.threshold
        if can:
            if self.enable_taylorseer:
                resid = self.get_taylorseer().approximate()
            else:
                resid = self.buffers[self._name("hidden_states_residual")]
            return resid + h, True, diff, 1
        self.buffers[self._name("first_hidden_states_residual")] = r1
        start = h
        for blk in blocks[1:]:
            h = blk(h)
        if self.enable_taylorseer:
            self.get_taylorseer().update(h - start)
        else:
            self.buffers[self._name("hidden_states_residual")] = h - start
        return h, False, diff, len(blocks)


# ------------------------------------------------------------------------------------------------ cache-dit

class CacheDitDBCache:
    """CachedContext + CachedContextManager (enable_separate_cfg=True as the Wan adapter, cfg_compute_first=False)
    and CachedBlocks_Pattern_Base.forward (Pattern_2: hidden states only)."""

    def __init__(self, Fn=8, Bn=0, threshold=0.08, max_warmup_steps=8, warmup_interval=1, max_cached_steps=-1,
                 max_continuous_cached_steps=-1, max_accumulated_residual_diff_threshold=None,
                 cfg_diff_compute_separate=True, taylorseer=False, taylorseer_order=1):
        self.Fn, self.Bn = Fn, Bn
        self.threshold = threshold
        self.max_warmup_steps, self.warmup_interval = max_warmup_steps, warmup_interval
        self.max_cached_steps = max_cached_steps
        self.max_continuous_cached_steps = max_continuous_cached_steps
        self.max_acc = max_accumulated_residual_diff_threshold
        self.cfg_diff_compute_separate = cfg_diff_compute_separate
        self.taylorseer = taylorseer
        self.taylorseer_order = taylorseer_order
        self.buffers = {}
        self.executed_steps = 0
        self.transformer_executed_steps = 0
        self.cached_steps, self.cfg_cached_steps = [], []
        self.residual_diffs, self.cfg_residual_diffs = {}, {}
        self.continuous_cached_steps = self.cfg_continuous_cached_steps = 0
        self.accumulated_residual_diff = self.cfg_accumulated_residual_diff = 0.0
        # TaylorSeerCalibrator: its states are created at the first update (maybe_init_state)
        self.calibrators = {False: {}, True: {}}

    def is_cfg(self):
        return (self.transformer_executed_steps - 1) % 2 != 0

    def current_step(self):
        return self.executed_steps - 1

    def mark_step_begin(self):
        self.transformer_executed_steps += 1
        if not self.is_cfg():
            self.executed_steps += 1
        if self.transformer_executed_steps - 1 == 0:
            self.cached_steps.clear(), self.residual_diffs.clear()
            self.cfg_cached_steps.clear(), self.cfg_residual_diffs.clear()
            for states in self.calibrators.values():
                for st in states.values():
                    st.reset()
        for st in self.calibrators[self.is_cfg()].values():
            st.mark_step_begin()

    def add_residual_diff(self, diff):
        step = str(self.current_step())
        if not self.is_cfg():
            if step not in self.residual_diffs:
                self.residual_diffs[step] = diff
                if diff > 0.0:
                    self.accumulated_residual_diff += diff
        else:
            if step not in self.cfg_residual_diffs:
                self.cfg_residual_diffs[step] = diff
                if diff > 0.0:
                    self.cfg_accumulated_residual_diff += diff

    def add_cached_step(self):
        cur = self.current_step()
        if not self.is_cfg():
            if self.cached_steps:
                if cur - self.cached_steps[-1] == 1:
                    self.continuous_cached_steps += 2 if self.continuous_cached_steps == 0 else 1
            else:
                self.continuous_cached_steps += 1
            self.cached_steps.append(cur)
        else:
            if self.cfg_cached_steps:
                if cur - self.cfg_cached_steps[-1] == 1:
                    self.cfg_continuous_cached_steps += 2 if self.cfg_continuous_cached_steps == 0 else 1
            else:
                self.cfg_continuous_cached_steps += 1
            self.cfg_cached_steps.append(cur)

    def _buf(self, name):
        return name + "_cfg" if self.is_cfg() else name

    def similarity(self, t1, t2):
        """Returns (similar, diff measured or None)."""
        if self.threshold <= 0.0:
            self.add_residual_diff(-0.0)
            return False, None
        if self.threshold >= 1.0:
            self.add_residual_diff(-1.0)
            return True, None
        step = str(self.current_step())
        if self.is_cfg() and not self.cfg_diff_compute_separate and step in self.residual_diffs:
            diff = self.residual_diffs[step]
        else:
            diff = rel_l1(t1, t2)
        self.add_residual_diff(diff)
        return diff < self.threshold, diff

    def can_cache(self, r):
        if self.current_step() in range(0, self.max_warmup_steps, self.warmup_interval):
            return False, None
        cached = self.cfg_cached_steps if self.is_cfg() else self.cached_steps
        if self.max_cached_steps >= 0 and len(cached) >= self.max_cached_steps:
            return False, None
        cont = self.cfg_continuous_cached_steps if self.is_cfg() else self.continuous_cached_steps
        if self.max_continuous_cached_steps >= 0 and cont >= self.max_continuous_cached_steps:
            if self.is_cfg():
                self.cfg_continuous_cached_steps = 0
            else:
                self.continuous_cached_steps = 0
            return False, None
        if self.max_acc is not None and self.max_acc > 0.0:
            acc = self.cfg_accumulated_residual_diff if self.is_cfg() else self.accumulated_residual_diff
            if acc >= self.max_acc:
                return False, None
        if self.threshold <= 0.0:
            return False, None
        prev = self.buffers.get(self._buf("Fn_residual"))
        if prev is None:
            return False, None
        return self.similarity(prev, r)

    def forward(self, h, blocks):
        N = len(blocks)
        original = h
        for blk in blocks[:self.Fn]:
            h = blk(h)
        r = h - original
        self.mark_step_begin()
        can, diff = self.can_cache(r)
        cal = self.calibrators[self.is_cfg()]
        if can:
            self.add_cached_step()
            if self.taylorseer:
                resid = cal["Bn"].approximate()
            else:
                resid = self.buffers[self._buf("Bn_residual")]
            h = resid + h
            for blk in blocks[N - self.Bn:] if self.Bn > 0 else []:
                h = blk(h)
            return h, True, diff, self.Fn + self.Bn
        self.buffers[self._buf("Fn_residual")] = r
        start = h
        for blk in (blocks[self.Fn:N - self.Bn] if self.Bn > 0 else blocks[self.Fn:]):
            h = blk(h)
        if self.taylorseer:
            if "Bn" not in cal:
                cal["Bn"] = TaylorSeer(self.taylorseer_order)
            cal["Bn"].update(h - start)
        else:
            self.buffers[self._buf("Bn_residual")] = h - start
        for blk in blocks[N - self.Bn:] if self.Bn > 0 else []:
            h = blk(h)
        return h, False, diff, N


# ------------------------------------------------------------------------------------------------ replay

def official(spec):
    """The official object for one of our specs (name:key=value,...), with the official code's names."""
    name, _, rest = spec.partition(":")
    p = dict(kv.split("=") for kv in rest.split(",")) if rest else {}
    ts = int(p.get("taylorseer", 0)) == 1
    if name == "fbcache":
        return ParaAttentionFBCache(float(p["thresh"]), int(p.get("warmup", 0)), ts, int(p.get("taylorseer_order", 2)))
    acc = float(p.get("max_accumulated", 0))
    return CacheDitDBCache(Fn=int(p["fn"]), Bn=int(p.get("bn", 0)), threshold=float(p["thresh"]),
                           max_warmup_steps=int(p.get("warmup", 8)), warmup_interval=int(p.get("warmup_interval", 1)),
                           max_cached_steps=int(p.get("max_cached", -1)),
                           max_continuous_cached_steps=int(p.get("max_continuous", -1)),
                           max_accumulated_residual_diff_threshold=acc if acc > 0 else None,
                           cfg_diff_compute_separate=int(p.get("separate_cfg_diff", 1)) == 1,
                           taylorseer=ts, taylorseer_order=int(p.get("taylorseer_order", 1)))


def main():
    """`dbcache_official.py CASE OUT SPEC...`: for each spec i, the run's per-(step, branch) decisions dec<i>
    (1 computed, 0 cached), measured diffs diff<i> (NaN when none) and final latent x<i>, into OUT."""
    case = R.Case(sys.argv[1])
    model = R.Tiny(case.weights)
    out = {}
    for i, spec in enumerate(sys.argv[3:]):
        cache = official(spec)
        dec = np.full((case.steps, 2), -1.0)
        diff = np.full((case.steps, 2), np.nan)

        def call(step, branch, x, t, text):
            c = model.embed(x, t, text)
            blocks = [lambda h, layer=layer: model.block(layer, c, h) for layer in range(model.num_layers)]
            h, hit, d, _ = cache.forward(c.tokens, blocks)
            dec[step, branch] = 0.0 if hit else 1.0
            if d is not None:
                diff[step, branch] = d
            return model.head(c, h)

        run = R.sample(case, call)
        out["dec%d" % i], out["diff%d" % i], out["x%d" % i] = dec, diff, run["x"]
    R.write(sys.argv[2], **out)


if __name__ == "__main__":
    main()
