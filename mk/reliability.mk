# Reliability builds (docs/RELIABILITY.md). Each has its own build folder.
#   make MODE=asan CXX=clang++    clang -O1 with AddressSanitizer + UndefinedBehaviorSanitizer (build/asan/), every
#                                 object also instrumented for libFuzzer (-fsanitize=fuzzer-no-link), so one build
#                                 runs the test suite under the sanitizers AND links the fuzzers
#   make fuzz                     builds the four fuzzers (build/asan/fuzz/*) and runs each for FUZZ_SECONDS
#   make tsan-check               ThreadSanitizer (clang, libomp + Archer): the threaded kernels' tests and short
#                                 training runs on 2 threads (build/tsan/)
#   make test-noomp               OPENMP=0 (single-threaded) build and tests, in build/noomp/
#   make test-clang               clang++ release build and tests, in build/clang/
#   make test-libcxx              clang with libc++ and no OpenMP, as Apple's toolchain (build/libcxx/)
CLANGXX      ?= clang++
FUZZ_SECONDS ?= 60
FUZZERS      := safetensors idx corpus variant
ARCHER       ?= /usr/lib/llvm-14/lib/libarcher.so
SAN_ENV      := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
                LSAN_OPTIONS=suppressions=$(CURDIR)/.ci/lsan.supp
# Catch2 arguments for the sanitized suites ("~[slow]" skips the slowest cases).
SAN_TEST_ARGS ?=

ifeq ($(MODE),asan)
  CXXFLAGS += -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link \
              -fno-sanitize-recover=undefined
  LDFLAGS  += -fsanitize=address,undefined
endif
ifeq ($(MODE),tsan)
  CXXFLAGS += -O1 -g -fno-omit-frame-pointer -fsanitize=thread
  LDFLAGS  += -fsanitize=thread
endif

.PHONY: asan test-asan fuzz fuzzers tsan-parts tsan-check test-noomp test-clang test-libcxx

asan:
	$(MAKE) MODE=asan CXX="$(CLANGXX)" all
test-asan:
	$(MAKE) MODE=asan CXX="$(CLANGXX)" all
	env $(SAN_ENV) build/asan/qkvlab_tests $(SAN_TEST_ARGS)

# ---- fuzzing: libFuzzer harnesses in fuzz/, seeds in fuzz/corpus/<name>/ ----
ifeq ($(MODE),asan)
FUZZ_BINS := $(FUZZERS:%=$(BUILD)/fuzz/fuzz_%)
fuzzers: $(FUZZ_BINS)
.PRECIOUS: $(BUILD)/fuzz/%.o
$(BUILD)/fuzz/fuzz_%: $(BUILD)/fuzz/fuzz_%.o $(LIB)
	$(CXX) $(LDFLAGS) -fsanitize=fuzzer $< $(LIB) $(LDLIBS) -o $@
endif

# Each fuzzer starts from a copy of its seeds (so the run's finds do not land in the repository) and stops after
# FUZZ_SECONDS; a crash leaves its input in build/asan/fuzz/crash-<name>-* and fails the target.
fuzz:
	$(MAKE) MODE=asan CXX="$(CLANGXX)" fuzzers
	@set -e; for f in $(FUZZERS); do \
	  rm -rf build/asan/fuzz/work-$$f && mkdir -p build/asan/fuzz/work-$$f && \
	  cp fuzz/corpus/$$f/* build/asan/fuzz/work-$$f/ && \
	  echo "== fuzz $$f for $(FUZZ_SECONDS) s (log: build/asan/fuzz/$$f.log)" && \
	  rc=0 && env $(SAN_ENV) build/asan/fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/asan/fuzz/crash-$$f- \
	    build/asan/fuzz/work-$$f >build/asan/fuzz/$$f.log 2>&1 || rc=$$?; \
	  grep -E "^stat::number_of_executed_units|^SUMMARY|ERROR" build/asan/fuzz/$$f.log || true; \
	  test $$rc -eq 0; \
	done

# ---- ThreadSanitizer ----
# libgomp is not instrumented, so TSan cannot see its barriers and would report races that are not there. The
# TSan build uses clang's libomp instead and loads Archer (LLVM's OMPT tool that tells TSan about OpenMP's
# synchronisation): docs/RELIABILITY.md explains the choice. Its test binary holds only the threaded kernels' tests
# and the determinism test (two short training runs on 2 threads through the trainer), not the whole suite.
TSAN_TEST_SRC := tests/main.cpp tests/tensor/test_gemm.cpp tests/reliability/test_threads.cpp \
                 tests/reliability/test_determinism.cpp
ifeq ($(MODE),tsan)
$(BUILD)/qkvlab_tsan_tests: $(TSAN_TEST_SRC:%.cpp=$(BUILD)/%.o) $(LIB)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@
tsan-parts: $(BUILD)/qkvlab_tsan_tests
-include $(TSAN_TEST_SRC:%.cpp=$(BUILD)/%.d)
endif
TSAN_ENV := OMP_TOOL_LIBRARIES=$(ARCHER) TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1 QKVLAB_THREADS=2
tsan-check:
	$(MAKE) MODE=tsan CXX="$(CLANGXX)" tsan-parts
	env $(TSAN_ENV) build/tsan/qkvlab_tsan_tests

# ---- portability ----
test-noomp:
	$(MAKE) OPENMP=0 BUILD=build/noomp all
	build/noomp/qkvlab_tests $(QKVLAB_TEST_ARGS)
test-clang:
	$(MAKE) CXX="$(CLANGXX)" BUILD=build/clang all
	build/clang/qkvlab_tests $(QKVLAB_TEST_ARGS)
# The nearest this machine has to Apple's own toolchain: clang, its C++ library libc++ instead of GCC's libstdc++,
# and no OpenMP (Apple's clang ships none; with Homebrew's libomp a Mac build is the ordinary OpenMP one).
LIBCXX_FLAGS := CXX="$(CLANGXX)" OPENMP=0 BUILD=build/libcxx EXTRA_CXXFLAGS=-stdlib=libc++ EXTRA_LDFLAGS=-stdlib=libc++
test-libcxx:
	$(MAKE) $(LIBCXX_FLAGS) all
	build/libcxx/qkvlab_tests $(QKVLAB_TEST_ARGS)
