# make bench-quick: the same tables as `make bench` (bench/run.sh) with one repeat and fewer samples/steps,
# a few minutes in all. BENCH_FLAGS passes further options to bench/run.sh (e.g. --sections "matmul decode").
.PHONY: bench-quick
bench-quick: all
	bash bench/run.sh --quick $(BENCH_FLAGS)
