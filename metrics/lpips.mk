# LPIPS weights embedded at build time (DESIGN §7). metrics/lpips_embed.sh turns LPIPS_WEIGHTS_DIR into
# $(BUILD)/metrics/lpips_weights.c: .incbin of every tensor when the set is complete and valid, otherwise no data
# and a reason string, so the build always succeeds and LPIPS reports "unavailable" with that reason.

LPIPS_DIR_ABS := $(abspath $(LPIPS_WEIGHTS_DIR))
LPIPS_GEN     := $(BUILD)/metrics/lpips_weights
EXTRA_LIB_OBJ += $(LPIPS_GEN).o

# What the generated file depends on: the folder's path and the name, size and mtime of everything in it (symbolic
# links followed). Recomputed on every make but rewritten only when it differs, so an unchanged folder rebuilds
# nothing, and an added, removed or replaced file (or another LPIPS_WEIGHTS_DIR) regenerates the embedding.
$(LPIPS_GEN).stamp: lpips-weights-check
	@mkdir -p $(@D)
	@{ echo '$(LPIPS_DIR_ABS)'; LC_ALL=C ls -lnL --full-time '$(LPIPS_DIR_ABS)' 2>&1 || true; } > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi

$(LPIPS_GEN).c: $(LPIPS_GEN).stamp metrics/lpips_embed.sh
	sh metrics/lpips_embed.sh '$(LPIPS_DIR_ABS)' $@

$(LPIPS_GEN).o: $(LPIPS_GEN).c
	$(CC) $(CFLAGS) -c $< -o $@

.PHONY: lpips-weights-check
