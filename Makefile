# qkvlab — the one build entry point.
#   make            release build: build/qkvlab, the library (-O3 -march=native, OpenMP) and the tests
#   make demo       builds only build/qkvlab, then runs the paper's synthetic study (the README's main job)
#   make test       build and run every test (Catch2)
#   make debug      -O0 -g3 with AddressSanitizer + UndefinedBehaviorSanitizer (build/debug/...)
#   make test-debug run the test suite under the sanitizers
#   make bench      performance figures beside OpenBLAS / PyTorch when installed
#   make deps       install the Debian packages (as root)
#   make clean
# Knobs: CXX=clang++, OPENMP=0 (single-threaded build), MODE=release|debug, JOBS=N (parallel compiles)
# Never add -ffast-math: it breaks NaN detection and gradcheck.
# Folders (docs/DESIGN.md, "Layout and layering"): the library tensor/ autograd/ nn/ models/ (libqkvlab.a); plot/
# (PNG charts) and bench/ (the measuring harness of `qkvlab bench`) below app/ (the command line); tests/.

# Every target compiles in parallel, one job per core; `make JOBS=1` (or -jN on the command line) overrides it.
# (Only the top-level make sets it: a recursive $(MAKE) shares the parent's job slots.)
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(MAKELEVEL),0)
MAKEFLAGS += -j$(JOBS)
endif

CXX      ?= g++
MODE     ?= release
OPENMP   ?= 1
# ARCH=arm64 cross-builds for aarch64 into build/arm64, run under qemu (mk/arm64.mk: `make ARCH=arm64 test-arm64`).
ARCH     ?= native
ifeq ($(ARCH),arm64)
  ifneq ($(origin CXX),command line)  # a CXX from the environment names the host's compiler
    CXX := aarch64-linux-gnu-g++
  endif
  # The header-only libraries (Catch2, CLI11, nlohmann-json, stb) are the host's: one copy serves every arch.
  EXTRA_CXXFLAGS += -idirafter /usr/include
  # Linked statically: under qemu-aarch64 7.2 (Debian 12) a dynamically linked arm64 program hangs when it starts
  # its first thread (std::thread or OpenMP alike); the same program linked statically runs.
  EXTRA_LDFLAGS += -static
endif
# MPI=1 builds with mpicxx into build/mpi (mk/mpi.mk).
BUILD    := $(if $(filter 1,$(MPI)),build/mpi,$(if $(filter arm64,$(ARCH)),build/arm64,build/$(MODE)))

# -Wno-psabi: the row kernels hold 8 doubles, and fastmath 16 floats, in one vector type (tensor/ops_detail.h,
# tensor/fastmath.h), wider than an AVX2 or NEON register; GCC and Clang then note that passing one by value would
# differ between instruction sets. It never
# crosses a boundary compiled with other flags (the helpers are inline, and the whole program is built at once).
WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-psabi
# -march: this machine's instruction set (AVX-512 or AVX2 kernels on x86); ARMv8-A for the arm64 cross build, which
# every 64-bit ARM core runs (NEON is part of it).
MARCH    := $(if $(filter arm64,$(ARCH)),-march=armv8-a,-march=native)
CXXFLAGS_release := -O3 $(MARCH) -DNDEBUG
CXXFLAGS_debug   := -O0 -g3 -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS_debug    := -fsanitize=address,undefined
# -fno-math-errno: math functions need not set errno (nothing here reads errno after one), so a loop with a
# sqrt can vectorise (AdamW's update ran scalar without it). No result changes: sqrt is exact either way; this
# is not -ffast-math, which would.
CXXFLAGS := -std=c++20 $(WARN) -fno-math-errno $(CXXFLAGS_$(MODE)) -I. -MMD -MP $(EXTRA_CXXFLAGS)
# Optimisation by folder, for the time `make demo` takes from a fresh clone (README, "Set-up"); measured one file
# at a time with g++ 12 on a 2-vCPU Intel Xeon VM, 2026-12-03:
# - app/ is command-line parsing, JSON and printing around the library's kernels. Its files are the slowest to
#   compile: CLI11 alone costs 7 s a file at -O1 (it defines its validators in every file that includes it), and
#   nothing in app/ runs long enough to gain from optimisation. APP_OPT (-O0): 19 -> 10 s for cmd_study.cpp.
# - plot/ (PNG encoding: stb's zlib shows in a study's profile) and bench/ (the harness around the timed
#   kernels), and the library files that are JSON and file handling (a checkpoint's config, safetensors, the run
#   directory, the trainer's loop around the kernels, gradcheck's case list) compile at TOOL_OPT (-O1): 15 -> 8 s
#   for config.cpp.
# - everything else in the library at -O3 (CXXFLAGS_release).
APP_OPT  ?= -O0
TOOL_OPT ?= -O1
LDFLAGS  := $(LDFLAGS_$(MODE)) -rdynamic $(EXTRA_LDFLAGS)
LDLIBS   := -lz -lpthread
ifeq ($(OPENMP),1)
  CXXFLAGS += -fopenmp
  LDFLAGS  += -fopenmp
endif

# The floors, each using only those before it: the library (tensor <- autograd <- nn <- models: libqkvlab.a), then
# plot/ (PNG charts, needs only tensor/error.h) and bench/ (the measuring harness and one file per benchmark, on
# the library), then app/ (the command line) on top. bench/ also holds the yardsticks bench/run.sh builds and runs
# itself (sgemm_openblas.c, cpu_peak.c, torch_gpt.py): they are not part of this build.
LIB_SRC  := $(wildcard tensor/*.cpp autograd/*.cpp nn/*.cpp nn/*/*.cpp models/*.cpp)
PLOT_SRC := $(wildcard plot/*.cpp)
BENCH_SRC:= $(wildcard bench/*.cpp)
APP_SRC  := $(wildcard app/*.cpp)
TEST_SRC := $(wildcard tests/*.cpp tests/*/*.cpp)
# Under emulation the arm64 tests run about 200x slower, so the arm64 test binary holds these files, not the whole
# suite: the tensor, autograd and attention tests, checkpoints, the golden numbers from PyTorch, and the command line.
ifeq ($(ARCH),arm64)
  TEST_SRC := tests/main.cpp $(wildcard tests/tensor/*.cpp tests/autograd/*.cpp tests/nn/*.cpp) \
              tests/models/test_checkpoint.cpp tests/models/test_safetensors.cpp tests/golden/test_golden.cpp \
              tests/app/test_cli.cpp tests/reliability/test_bad_inputs.cpp
endif

LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/%.o)
PLOT_OBJ := $(PLOT_SRC:%.cpp=$(BUILD)/%.o)
BENCH_OBJ:= $(BENCH_SRC:%.cpp=$(BUILD)/%.o)
APP_OBJ  := $(APP_SRC:%.cpp=$(BUILD)/%.o)
TOOL_LIB_OBJ := $(addprefix $(BUILD)/,models/config.o models/safetensors.o models/run_dir.o models/trainer.o \
                autograd/gradcheck_suite.o)
# The tests link plot/, bench/ and the app's pieces too (command helpers), all but its main().
APP_PARTS:= $(filter-out $(BUILD)/app/main.o,$(APP_OBJ)) $(PLOT_OBJ) $(BENCH_OBJ)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
LIB      := $(BUILD)/libqkvlab.a
APP      := $(BUILD)/qkvlab
TESTS    := $(BUILD)/qkvlab_tests

.PHONY: all release debug test test-debug bench clean deps demo
.DEFAULT_GOAL := all

all: $(APP) $(TESTS)
	$(LINK_APP)

# build/qkvlab -> release/qkvlab, the path the README uses.
define LINK_APP
$(if $(filter build/release,$(BUILD)),@ln -sf release/qkvlab build/qkvlab)
endef

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

ifeq ($(MODE),release)
$(APP_OBJ): CXXFLAGS += $(APP_OPT)
$(PLOT_OBJ) $(BENCH_OBJ) $(TOOL_LIB_OBJ): CXXFLAGS += $(TOOL_OPT)
endif

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The library's objects first: an inline or template function compiled in several objects (std::vector's, Array's)
# is linked from the first object that has it, and the library's are the -O3 copies (app/ is -O0).
$(APP): $(APP_OBJ) $(PLOT_OBJ) $(BENCH_OBJ) $(LIB)
	$(CXX) $(LDFLAGS) $(LIB_OBJ) $(APP_OBJ) $(PLOT_OBJ) $(BENCH_OBJ) $(LDLIBS) -o $@

$(TESTS): $(TEST_OBJ) $(APP_PARTS) $(LIB)
	$(CXX) $(LDFLAGS) $(TEST_OBJ) $(APP_PARTS) $(LIB) $(LDLIBS) -o $@

# Run every test. QKVLAB_TEST_ARGS passes Catch2 arguments (e.g. a tag filter).
test: all
	$(TESTS) $(QKVLAB_TEST_ARGS)

debug:
	$(MAKE) MODE=debug all

test-debug:
	$(MAKE) MODE=debug test

bench: all
	bash bench/run.sh $(BENCH_FLAGS)

# The README's main job: the paper's synthetic comparison (paper-synthetic set: QKV, Q=K-V, (Q=K-V)+, Q-K=V,
# Q=K=V, (Q=K=V)+) at the authors' configuration: REVERSE, d 64, 2 layers, 2 heads, 16 digits, their recipe (2 epochs
# of 10,000, Adam, batch 128; the synthetic default) and init (torch), seeds 0-2; about a minute on 2 idle cores.
DEMO_FLAGS ?= --task reverse --variants paper-synthetic --d-model 64 --layers 2 --heads 2 --seq-len 16 --epochs 2 --seeds 3
# Only the program: the tests and benchmarks are not needed to print the table.
demo: $(APP)
	$(LINK_APP)
	build/qkvlab study $(DEMO_FLAGS) --out runs/demo --overwrite

clean:
	rm -rf build

deps:
	bash tools/deps.sh

# Further targets, one file per topic (mk/*.mk: fuzzing, notebooks, MPI, ...).
-include $(wildcard mk/*.mk)

-include $(LIB_OBJ:.o=.d) $(PLOT_OBJ:.o=.d) $(BENCH_OBJ:.o=.d) $(APP_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
