# cachebench build. `make` builds build/cachebench; `make test` runs the Criterion suite; `make bench` the benchmarks.
# Sources are found by wildcard: a new module is a new file, no Makefile edit needed.

BUILD      ?= build
OPT        ?= -O2
CC         ?= cc
BLAS_DIR   ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC   ?= /usr/include/x86_64-linux-gnu/openblas-openmp
HDF5_INC   ?= /usr/include/hdf5/serial
LPIPS_WEIGHTS_DIR ?= ../shared/lpips
PYTHON     ?= /usr/bin/python3

CFLAGS  := $(OPT) -g -std=gnu11 -Wall -Wextra -fopenmp -I. -I$(BUILD) -I$(BLAS_INC) -I$(HDF5_INC) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) $(EXTRA_LDFLAGS)
LDLIBS  := -lopenblas -lcjson -lpng -lhdf5_serial_hl -lhdf5_serial -linih -lm

# The layers, lowest first (README "Layout"; scripts/check-layers.sh keeps includes pointing down). A folder's
# subfolders (models/dit/, harness/solvers/, ...) are part of it.
MODULE_DIRS := core models datasets metrics strategies results harness
LIB_SRC  := $(filter-out harness/main.c,$(wildcard $(addsuffix /*.c,$(MODULE_DIRS)) $(addsuffix /*/*.c,$(MODULE_DIRS))))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_SRC := $(wildcard bench/*.c)

.PHONY: all test test-slurm bench demo clean deps install FORCE
all: $(BUILD)/cachebench

# The version string recorded in every run; the header is rewritten only when the version changes.
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/version.h: FORCE
	@mkdir -p $(BUILD)
	@echo '#define CACHEBENCH_VERSION "$(VERSION)"' > $@.new
	@if cmp -s $@ $@.new; then rm $@.new; else mv $@.new $@; fi
$(BUILD)/harness/experiment.o: $(BUILD)/version.h

# Module-specific rules (generated sources, embedded data, CUDA) live beside their module.
-include $(wildcard */*.mk */*/*.mk)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcachebench.a: $(LIB_OBJ) $(EXTRA_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# -rdynamic: strategy plug-ins (--plugin) call the helpers of include/cachebench/strategy.h from the executable.
$(BUILD)/cachebench: $(BUILD)/harness/main.o $(BUILD)/libcachebench.a
	$(CC) $(LDFLAGS) -rdynamic $^ -o $@ $(LDLIBS) $(EXTRA_LDLIBS)

$(BUILD)/test_all: $(TEST_OBJ) $(BUILD)/libcachebench.a
	$(CC) $(LDFLAGS) $^ -o $@ -lcriterion $(LDLIBS) $(EXTRA_LDLIBS)

# Tests run from the repository root (they read fixtures by relative path and call build/cachebench).
# -j2: the CI machine has two cores; OMP_NUM_THREADS=1 keeps parallel tests from oversubscribing them.
test: deps $(BUILD)/cachebench $(BUILD)/test_all
	OMP_NUM_THREADS=1 CACHEBENCH_PYTHON=$(PYTHON) $(BUILD)/test_all -j2 $(TEST_ARGS)

# Opt-in: scripts/slurm/sweep.sbatch as a real 2-task job array on a one-node Slurm cluster the script starts and
# stops (installs slurm-wlm and munge when missing; root). Prints SKIPPED when it cannot run here.
test-slurm: $(BUILD)/cachebench
	bash scripts/slurm/test-local.sh $(BUILD)/cachebench

$(BUILD)/bench_%: bench/%.c $(BUILD)/libcachebench.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(EXTRA_LDLIBS)

bench: $(BENCH_SRC:bench/%.c=$(BUILD)/bench_%)
	@for b in $^; do echo "== $$b"; ./$$b || exit 1; done

deps:
	sh scripts/install-deps.sh

# The main job. Uses the embedded tiny model when its weights are present, random weights otherwise.
DEMO_OUT ?= results/demo
DEMO_WEIGHTS = $(if $(wildcard models/tiny/tiny.safetensors),models/tiny/tiny.safetensors,random:1)
demo: deps $(BUILD)/cachebench
	@# The grid is datasets/demo_sweep.ini: none and every strategy at two or three settings on the 4 short prompts,
	@# seed 0, 50 steps. TeaCache and MagCache need tables fitted to the weights: fitted once, beside them, when
	@# missing. Random weights have no place for them, so their demo leaves both out. Interrupted: run make demo again.
	@if [ "$(DEMO_WEIGHTS)" = random:1 ]; then \
	    echo "make demo: no trained tiny model; random weights, TeaCache and MagCache left out"; \
	    $(BUILD)/cachebench sweep --config datasets/demo_sweep.ini --weights random:1 --out $(DEMO_OUT) \
	        --strategy 'static:interval=2|3|4,warmup=5' --strategy 'easycache:thresh=0.025|0.05|0.1,warmup=10' \
	        --strategy 'taylorseer:interval=3|5' --strategy 'taylorseer:interval=3,lite=1' \
	        --strategy 'fbcache:thresh=0.08|0.12' --strategy 'dbcache:fn=1,bn=1,thresh=0.12|0.2' \
	        --strategy 'pab' --strategy 'dicache:thresh=0.08|0.2'; \
	else \
	    if [ ! -f $(dir $(DEMO_WEIGHTS))teacache_coeffs_e.txt ]; then \
	        $(BUILD)/cachebench calibrate --weights $(DEMO_WEIGHTS) --prompts datasets/prompts_short.txt || exit 1; \
	    fi; \
	    if [ ! -f $(dir $(DEMO_WEIGHTS))magcache_ratios.txt ]; then \
	        $(BUILD)/cachebench calibrate --for magcache --weights $(DEMO_WEIGHTS) \
	            --prompts datasets/prompts_short.txt || exit 1; \
	    fi; \
	    $(BUILD)/cachebench sweep --config datasets/demo_sweep.ini --weights $(DEMO_WEIGHTS) --out $(DEMO_OUT); \
	fi
	@echo "make demo: report in $(DEMO_OUT)/report.md, plots in $(DEMO_OUT)/plots/"

# make install PREFIX=DIR: the binary, the plug-in header (include/cachebench/strategy.h), the library and the plot
# templates (found by the binary as $PREFIX/share/cachebench/plots).
PREFIX ?= /usr/local
install: $(BUILD)/cachebench $(BUILD)/libcachebench.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/cachebench $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/share/cachebench/plots
	install -m 755 $(BUILD)/cachebench $(DESTDIR)$(PREFIX)/bin/cachebench
	install -m 644 include/cachebench/strategy.h $(DESTDIR)$(PREFIX)/include/cachebench/strategy.h
	install -m 644 $(BUILD)/libcachebench.a $(DESTDIR)$(PREFIX)/lib/libcachebench.a
	install -m 644 plots/*.gp $(DESTDIR)$(PREFIX)/share/cachebench/plots/

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/harness/main.d
