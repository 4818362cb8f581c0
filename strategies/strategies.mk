# The strategy table is generated from the strategies themselves: a strategy file registers each StrategyInfo it
# defines with a line
#     STRATEGY_REGISTER(strategy_foo_info, ORDER) = { ... };
# at the start of a line (strategies/strategy.h), and this rule collects those lines, sorted by ORDER (the rank in
# listings, reports and plots), into $(BUILD)/strategy_table.h, which strategies/registry.c includes. A new strategy
# is therefore one new file, no table row and no Makefile edit. Each entry also carries the sha256 of the file that
# registers it (strategy_source_sha256): run records store it, and a resumed sweep calls runs of changed code
# stale. A generated table rather than a linker section: objects of a static library that nothing references are
# not linked, and every binary here links libcachebench.a.
STRATEGY_SRC := $(filter-out strategies/registry.c strategies/strategy.c,$(wildcard strategies/*.c))

$(BUILD)/strategy_table.h: $(STRATEGY_SRC) strategies/strategies.mk
	@mkdir -p $(BUILD)
	@for f in $(STRATEGY_SRC); do h=$$(sha256sum $$f | cut -c1-64); \
	    sed -n "s/^STRATEGY_REGISTER(\([A-Za-z0-9_]*\), *\([0-9][0-9]*\)).*/\2 \1 $$h/p" $$f; done | \
	    sort -n -s -k1,1 | awk '{ print "STRATEGY_ENTRY(" $$2 ", \"" $$3 "\")" }' > $@.new
	@if cmp -s $@ $@.new; then rm $@.new; else mv $@.new $@; fi

$(BUILD)/strategies/registry.o: $(BUILD)/strategy_table.h
