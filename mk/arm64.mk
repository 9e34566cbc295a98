# ARM64 (aarch64): cross-built on this x86 machine and run under qemu's user-mode emulation (docs/PORTABILITY.md).
# The cross compiler, the arm64 libraries and qemu: bash tools/deps.sh --arm64.
#   make ARCH=arm64              build/arm64/qkvlab and build/arm64/qkvlab_tests (the test files the Makefile names)
#   make test-arm64              those tests under qemu-aarch64-static; ARM64_TEST_ARGS passes Catch2 arguments
#   make study-arm64             one short study on x86 (build/release) and under qemu, both tables and how far apart
# qemu runs the arm64 program about 200x slower than this machine runs the x86 one: it proves that the code builds,
# runs and computes the same numbers on ARM64, not how fast it is there.
QEMU_ARM64      ?= $(shell command -v qemu-aarch64-static 2>/dev/null || echo qemu-aarch64-static)
ARM64_TEST_ARGS ?= ~[slow]
.PHONY: test-arm64 study-arm64

ifneq ($(ARCH),arm64)
test-arm64 study-arm64:
	$(MAKE) ARCH=arm64 $@
else
# The CLI tests start build/arm64/qkvlab through qemu as well (QKVLAB_TEST_EXEC_PREFIX, tests/cli_child.h): without
# binfmt_misc, the kernel cannot exec an arm64 program by itself. The programs are static (the Makefile says why),
# so qemu needs no arm64 library folder (-L).
test-arm64: $(APP) $(TESTS)
	QKVLAB_TEST_EXEC_PREFIX="$(QEMU_ARM64)" $(QEMU_ARM64) $(TESTS) $(ARM64_TEST_ARGS)

study-arm64: $(APP)
	$(MAKE) ARCH=native build/release/qkvlab
	bash tools/arm64_study.sh build/release/qkvlab "$(QEMU_ARM64) $(APP)"
endif
