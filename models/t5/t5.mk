# The umT5 tokenizer calls Debian's libsentencepiece (C++, packages libsentencepiece-dev + sentencepiece, listed in
# scripts/install-deps.sh) through one C++ file, models/t5/spm_shim.cc, compiled here with g++ into libcachebench.a;
# every binary then links -lsentencepiece and the C++ runtime.

CXX      ?= g++
CXXFLAGS ?= $(OPT) -g -std=c++17 -Wall -Wextra

T5_CXX_SRC := $(wildcard models/t5/*.cc)
T5_CXX_OBJ := $(T5_CXX_SRC:%.cc=$(BUILD)/%.o)
EXTRA_LIB_OBJ += $(T5_CXX_OBJ)
EXTRA_LDLIBS  += -lsentencepiece -lstdc++

$(BUILD)/models/t5/%.o: models/t5/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -I. -MMD -MP -c $< -o $@

-include $(T5_CXX_OBJ:.o=.d)
