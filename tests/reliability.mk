# Reliability checks (README "Reliability"): `make sanitize`, `make valgrind`, `make fuzz`.
# Included by the top-level Makefile (every */*.mk), so it sees BUILD, CFLAGS, LIB_SRC, PYTHON, ... Each check
# builds into its own folder under build/ (so `make clean` removes it and git ignores it), through a recursive make
# with BUILD pointing there, so none of them disturbs the normal build or each other.
# The instrumented builds are CPU-only (CUDA=0): ASan and the CUDA runtime do not mix (the driver maps memory where
# ASan keeps its shadow), and clang's libFuzzer instrumentation cannot cover nvcc's objects anyway.

SAN_BUILD  ?= build/asan
FUZZ_BUILD ?= build/fuzz
FUZZ_SECONDS ?= 60

# -fno-sanitize-recover: undefined behaviour aborts the test instead of printing and carrying on.
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# Every sanitizer report of every process (the Criterion runner, its forked test workers, the CLI they exec) goes to
# $(SAN_LOGS)/report.<pid> instead of stderr, and any such file fails the run. This matters for leaks: a Criterion
# worker sends its result before it exits, so LeakSanitizer's exit-time report would otherwise be printed and ignored.
# An exit code no command of ours uses (we use 0/1/2) makes a finding in an exec'd CLI fail the test that ran it.
# (The sanitizers share one set of common flags, so log_path and exitcode are given once, in ASAN_OPTIONS.)
# Third-party leaks are suppressed in tests/lsan.supp (each entry says why).
SAN_LOGS := $(SAN_BUILD)/sanitizer-reports
SAN_COMMON := log_path=$(CURDIR)/$(SAN_LOGS)/report:exitcode=86
SAN_ASAN := $(SAN_COMMON):detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1
SAN_ENV := OMP_NUM_THREADS=1 CACHEBENCH_PYTHON=$(PYTHON) CACHEBENCH_BIN=$(SAN_BUILD)/cachebench \
	ASAN_OPTIONS=$(SAN_ASAN):strict_string_checks=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Fails when any process left a report; prints them.
SAN_CHECK_REPORTS = if ls $(SAN_LOGS)/report.* >/dev/null 2>&1; then cat $(SAN_LOGS)/report.*; \
	echo "sanitize: sanitizer reports above (also in $(SAN_LOGS)/)"; exit 1; fi

.PHONY: sanitize sanitize-build valgrind fuzz fuzz-build fuzz-corpus reliability-deps

# What these checks need beyond `make deps` (Debian 12 names), installed the same way: apt-get when root, otherwise
# a list of what is missing. gcc's ASan/UBSan runtimes come with build-essential already.
RELIABILITY_PKGS := clang libclang-rt-14-dev valgrind
reliability-deps: deps
	@missing=""; for p in $(RELIABILITY_PKGS); do \
	    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "cachebench: missing Debian packages:$$missing" >&2; exit 1; fi; \
	    echo "cachebench: installing$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The same Makefile, recursively, into $(SAN_BUILD) with instrumentation. -O2 as in the normal build: the code under
# test is the code that ships, and gcc's -Wformat-truncation gives false alarms at -O1 that -O2 does not.
sanitize-build:
	$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) CUDA=0 OPT=-O2 EXTRA_CFLAGS="$(SAN_FLAGS)" \
	    EXTRA_LDFLAGS="$(SAN_FLAGS)" $(SAN_BUILD)/cachebench $(SAN_BUILD)/test_all

sanitize: deps sanitize-build
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	$(SAN_ENV) $(SAN_BUILD)/test_all -j2 $(TEST_ARGS); rc=$$?; $(SAN_CHECK_REPORTS); exit $$rc

# ---- fuzzing (libFuzzer, clang) ----
# Each fuzz/fuzz_NAME.c is one target; its seeds are fuzz/corpus/NAME/ (committed, written by `make fuzz-corpus`),
# its optional dictionary fuzz/NAME.dict and extra flags fuzz/NAME.options. The library is rebuilt with clang into
# $(FUZZ_BUILD) (coverage instrumentation for libFuzzer plus ASan/UBSan). clang's OpenMP runtime is libomp, which
# also serves the GOMP_* entry points of the libgomp-built OpenBLAS; the targets run with OMP_NUM_THREADS=1 anyway.
# fuzz/fuzz_sweep_config.c covers the sweep INI reader, template expansion and seed lists; fuzz/fuzz_baseline.c the
# baseline files of `cachebench check`.
FUZZ_CC      ?= clang
FUZZ_TARGETS := $(sort $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c)))
FUZZ_CFLAGS  := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_LDFLAGS := -fsanitize=address,undefined
FUZZ_ENV := OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 UBSAN_OPTIONS=print_stacktrace=1

fuzz-build: reliability-deps
	$(MAKE) --no-print-directory CC=$(FUZZ_CC) BUILD=$(FUZZ_BUILD) CUDA=0 OPT=-O2 EXTRA_CFLAGS="$(FUZZ_CFLAGS)" \
	    EXTRA_LDFLAGS="$(FUZZ_LDFLAGS)" $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

# Only meaningful inside fuzz-build's recursive make, where CC, BUILD and the flags are the fuzzing ones.
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libcachebench.a
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) $< $(FUZZ_BUILD)/libcachebench.a -o $@ $(LDLIBS) $(EXTRA_LDLIBS)
-include $(wildcard $(FUZZ_BUILD)/fuzz_*.d)

# Runs every target for FUZZ_SECONDS (default 60) and stops at the first crash, leak, timeout (10 s for one input)
# or out-of-memory (2 GB). Seeds: fuzz/corpus/NAME and the past findings tests/regressions/NAME (both only read);
# new inputs go to $(FUZZ_BUILD)/corpus/NAME, kept between runs until `make clean`. A crash
# is saved as $(FUZZ_BUILD)/artifacts/NAME-crash-<sha1>: reproduce with `$(FUZZ_BUILD)/fuzz_NAME <file>`, then add
# it to tests/regressions/NAME/ so tests/test_regressions.c replays it on every `make test`.
fuzz: reliability-deps fuzz-build
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for t in $(FUZZ_TARGETS); do \
	    n=$${t#fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	    dict=; if [ -f fuzz/$$n.dict ]; then dict=-dict=fuzz/$$n.dict; fi; \
	    opts=; if [ -f fuzz/$$n.options ]; then opts=$$(grep -v '^#' fuzz/$$n.options); fi; \
	    echo "== $$t: $(FUZZ_SECONDS) s"; \
	    $(FUZZ_ENV) $(FUZZ_BUILD)/$$t $$dict $$opts -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	        -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$n- \
	        $(FUZZ_BUILD)/corpus/$$n fuzz/corpus/$$n $$(ls -d tests/regressions/$$n 2>/dev/null) \
	        2>$(FUZZ_BUILD)/$$n.log \
	    || { tail -60 $(FUZZ_BUILD)/$$n.log; \
	         echo "fuzz: $$t failed (log $(FUZZ_BUILD)/$$n.log, inputs in $(FUZZ_BUILD)/artifacts/)"; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' $(FUZZ_BUILD)/$$n.log \
	        | tr '\n' ' '; echo; \
	done

# The seed corpora: generated inputs of every kind plus run records written by the CLI itself (a 1-step run, one with
# latents, one with stored metrics) and old-format copies of two of them (fuzz/make_record_seeds.py). Rerun only when
# a format changes; the output is committed.
$(BUILD)/make_corpus: fuzz/make_corpus.c $(BUILD)/libcachebench.a
	$(CC) $(CFLAGS) $(LDFLAGS) $^ -o $@ $(LDLIBS) $(EXTRA_LDLIBS)

fuzz-corpus: $(BUILD)/make_corpus $(BUILD)/cachebench
	$(BUILD)/make_corpus fuzz/corpus
	@d=$$(mktemp -d /tmp/cachebench-corpus-XXXXXX) && set -e && \
	run="$(BUILD)/cachebench run --weights random:1 --prompt red --frames 1 --height 16 --width 16 --quiet --out $$d" && \
	OMP_NUM_THREADS=1 $$run --steps 1 --prompt-id one && \
	OMP_NUM_THREADS=1 $$run --steps 2 --prompt-id lat --latents --strategy static:interval=2,warmup=1 && \
	OMP_NUM_THREADS=1 $$run --steps 1 --prompt-id met && \
	$(BUILD)/cachebench metrics --store $$d/tiny__none__one__s0.h5 $$d/tiny__none__met__s0.h5 >/dev/null && \
	mkdir -p fuzz/corpus/record && cp $$d/tiny__none__one__s0.h5 fuzz/corpus/record/one_step.h5 && \
	cp $$d/tiny__static_interval-2_warmup-1__lat__s0.h5 fuzz/corpus/record/latents.h5 && \
	cp $$d/tiny__none__met__s0.h5 fuzz/corpus/record/metrics.h5 && rm -rf $$d && \
	$(PYTHON) fuzz/make_record_seeds.py fuzz/corpus/record/one_step.h5 fuzz/corpus/record/one_step_v0.h5 && \
	$(PYTHON) fuzz/make_record_seeds.py fuzz/corpus/record/metrics.h5 fuzz/corpus/record/metrics_v0.h5
	@du -sh fuzz/corpus/*

# ---- valgrind ----
# A short real session under memcheck: two runs (the baseline on random weights, and a caching strategy that reuses
# calls and records latents on the tiny checkpoint when it is there: the safetensors mapping and loader), `info` on
# both, `metrics --store` between them and `info` again. Any memcheck error or definite leak
# fails (exit 99, distinct from our own 1 and 2); "still reachable" memory of OpenBLAS, libgomp and HDF5 at exit is
# not a leak. 1x32x32 pixels (16 tokens) keeps it to about a minute; SSIM needs frames of at least 11x11.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --track-fds=no
VG_RUN = run --prompt "a red circle" --frames 1 --height 32 --width 32 --quiet
valgrind: reliability-deps $(BUILD)/cachebench
	@d=$$(mktemp -d /tmp/cachebench-valgrind-XXXXXX) && trap 'rm -rf "$$d"' EXIT && set -e && \
	vg="env OMP_NUM_THREADS=1 $(VALGRIND) $(BUILD)/cachebench" && \
	e=$$d/tiny__easycache_thresh-1_warmup-1__e__s0.h5 && \
	echo "== run (none)" && $$vg $(VG_RUN) --weights random:1 --out $$d --steps 2 && \
	echo "== run (easycache, latents)" && \
	$$vg $(VG_RUN) --weights $(DEMO_WEIGHTS) --out $$d --steps 4 --latents --prompt-id e \
	    --strategy easycache:thresh=1,warmup=1 && \
	echo "== run (none, the baseline of the easycache run: metrics --store checks it is one)" && \
	$$vg $(VG_RUN) --weights $(DEMO_WEIGHTS) --out $$d --steps 4 --prompt-id e && \
	echo "== info" && $$vg info $$d/tiny__none__p0__s0.h5 $$e >/dev/null && \
	echo "== metrics --store" && $$vg metrics --store $$d/tiny__none__e__s0.h5 $$e >/dev/null && \
	echo "== info (with metrics)" && $$vg info $$e >/dev/null && \
	echo "valgrind: no errors, no definite leaks"
