# make MPI=1: data-parallel training over Open MPI (models/distributed.h), linked with mpicxx in build/mpi, so that
# the normal build keeps no MPI dependency at all (the MPI-only objects never enter build/release). Debian: libopenmpi-dev
# openmpi-bin.
#   make MPI=1                  build/mpi/qkvlab and build/mpi/qkvlab_mpi_tests (release flags)
#   make MPI=1 test-mpi         the 2-rank tests: mpirun -np 2 build/mpi/qkvlab_mpi_tests "[mpi]"
#   mpirun -np 2 build/mpi/qkvlab train --threads 1 ...       (see docs/SCALING.md)
# MPICXX="ccache mpicxx" caches the compiles. As root, Open MPI's mpirun also needs --allow-run-as-root.
ifeq ($(MPI),1)
MPICXX   ?= mpicxx
MPIRUN   ?= mpirun
MPI_NP   ?= 2
override CXX := $(MPICXX)
CXXFLAGS += -DQKVLAB_MPI
MPI_TESTS := $(BUILD)/qkvlab_mpi_tests
# Catch2's main and the MPI test cases (tests/mpi/, empty in the normal build); the cases start MPI themselves.
MPI_TEST_OBJ := $(BUILD)/tests/main.o $(patsubst %.cpp,$(BUILD)/%.o,$(wildcard tests/mpi/*.cpp))

# Only models/distributed.cpp and tests/mpi/ compile differently under QKVLAB_MPI (nothing else names it), so every
# other object is the release build's, copied here: mpicxx is the same g++ with MPI's include and link flags, and the
# flags are the same. The MPI build then costs two compiles after `make` instead of a second full build. Two steps:
# the release objects first (a make without MPI), then this folder's own compiles, the copies and the links.
MPI_OWN_OBJ  := $(BUILD)/models/distributed.o $(filter-out $(BUILD)/tests/main.o,$(MPI_TEST_OBJ))
MPI_BORROWED := $(filter-out $(MPI_OWN_OBJ),$(LIB_OBJ) $(PLOT_OBJ) $(BENCH_OBJ) $(APP_OBJ) $(BUILD)/tests/main.o)

.PHONY: mpi mpi-link test-mpi
.DEFAULT_GOAL := mpi
mpi:
	$(MAKE) MPI= $(MPI_BORROWED:$(BUILD)/%=build/release/%)
	$(MAKE) MPI=1 mpi-link
mpi-link: $(APP) $(MPI_TESTS)

$(MPI_BORROWED): $(BUILD)/%.o: build/release/%.o
	@mkdir -p $(dir $@)
	cp $< $@

$(MPI_TESTS): $(MPI_TEST_OBJ) $(LIB)
	$(CXX) $(LDFLAGS) $(MPI_TEST_OBJ) $(LIB) $(LDLIBS) -o $@

test-mpi: mpi
	$(MPIRUN) $(if $(filter 0,$(shell id -u)),--allow-run-as-root) --oversubscribe -np $(MPI_NP) \
	  -x QKVLAB_THREADS=1 $(MPI_TESTS) "[mpi]"
endif
ifneq ($(MPI),1)
.PHONY: test-mpi
test-mpi:
	@echo "test-mpi: the MPI tests need the MPI build: make MPI=1 test-mpi" >&2; exit 2
endif
