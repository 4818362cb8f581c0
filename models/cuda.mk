# The CUDA backend (DESIGN §2): built only where nvcc is found. `make CUDA=0` builds without it even then; `make CUDA=1`
# insists (and fails when nvcc is missing). When on: models/*.cu and models/*/*.cu are compiled by nvcc into $(BUILD)/models/ and go
# into libcachebench.a, every C file is compiled with -DCACHEBENCH_CUDA (models/dit/engine_cpu.c then leaves engine_create
# to models/dit/engine_cuda.cu; tests/test_cuda.c and bench/cuda_forward.c use the CUDA engine), and the CUDA runtime is
# linked. A build with CUDA runs on machines without a GPU: the CUDA engine then reports "no CUDA device available: ..."
# and the CUDA tests skip.

ifndef NVCC
NVCC := $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
endif
ifndef CUDA
CUDA := $(if $(wildcard $(NVCC)),1,0)
endif

CUDA_HOME   ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_LIBDIR ?= $(CUDA_HOME)/lib64
# SASS for A100-class (sm_80, also runs on sm_86/89) and H100/H200 (sm_90), plus compute_90 PTX that the driver
# JIT-compiles for newer GPUs.
CUDA_ARCH   ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
               -gencode arch=compute_90,code=compute_90
NVCCFLAGS   ?= -O2 -std=c++17

CUDA_SRC := $(wildcard models/*.cu models/*/*.cu)
CUDA_OBJ := $(CUDA_SRC:%.cu=$(BUILD)/%.o)

# The CUDA configuration, rewritten only when it changes. Every object depends on it, so that switching CUDA=0 <-> 1
# recompiles what CACHEBENCH_CUDA changes (a stale engine_cpu.o would define engine_create twice, or not at all).
CUDA_STAMP := $(BUILD)/cuda.stamp
$(CUDA_STAMP): cuda-config-check
	@mkdir -p $(@D)
	@echo 'CUDA=$(CUDA)$(if $(filter 1,$(CUDA)), NVCC=$(NVCC) $(CUDA_ARCH) $(NVCCFLAGS))' > $@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv $@.new $@; fi
$(LIB_OBJ) $(TEST_OBJ) $(BUILD)/harness/main.o: $(CUDA_STAMP)
.PHONY: cuda-config-check

ifeq ($(CUDA),1)
ifeq ($(wildcard $(NVCC)),)
$(error CUDA=1 but nvcc was not found at '$(NVCC)': set NVCC=/path/to/nvcc, or build without CUDA (make CUDA=0))
endif
CFLAGS        += -DCACHEBENCH_CUDA
EXTRA_LIB_OBJ += $(CUDA_OBJ)
# The CUDA runtime statically (the binary starts without CUDA libraries); cuBLAS is dlopen'ed by models/dit/engine_cuda.cu
# when a CUDA engine is created, found through this rpath.
EXTRA_LDLIBS  += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudart_static -ldl -lrt -lpthread -lstdc++

$(BUILD)/models/%.o: models/%.cu $(CUDA_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) $(CUDA_ARCH) -I. -Xcompiler -Wall,-Wextra -MMD -MP -MF $(@:.o=.d) -c $< -o $@

-include $(CUDA_OBJ:.o=.d)
endif
