# Reliability suites (docs/RELIABILITY.md, mk/reliability.mk), sourced by .ci/run after the gcc release suite:
#   sanitizers   the test suite but its [slow] cases under ASan + UBSan (clang -O1; the objects carry libFuzzer
#                coverage, so the same build links the fuzzers)
#   fuzz-*       each libFuzzer harness for REL_FUZZ_SECONDS (60) from its seed corpus
#   tsan         ThreadSanitizer (libomp + Archer): the threaded kernels' tests and 2-thread training runs
#   libcxx, libcxx-same  clang with libc++ and OPENMP=0, the nearest thing here to Apple's toolchain (make
#                      test-libcxx): its tests, and a training run whose losses must equal the gcc OpenMP build's
#                      at --threads 1 to 1e-5 (it replaced the gcc OPENMP=0 build, whose checkpoint had to equal
#                      the OpenMP build's byte for byte)
# Time: docs/RELIABILITY.md, "CI time".
REL_CXX=clang++-14
REL_FUZZ_SECONDS=${REL_FUZZ_SECONDS:-60}
# allocator_may_return_null: a model too large for memory must give qkvlab's "out of memory" error, not ASan's.
REL_SAN_ENV=(ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
             LSAN_OPTIONS=suppressions=$PWD/.ci/lsan.supp)  # libomp's own exit-time blocks

rel_build() {  # name, make arguments...: one failed case when the build fails
  local name=$1; shift
  echo "== build ($name): make $*"
  local start=$SECONDS
  if make -j"$(nproc)" "$@" >"$LOG/build-$name.log" 2>&1; then
    echo "== build ($name) took $((SECONDS - start)) s"
    return 0
  fi
  tail -n 40 "$LOG/build-$name.log"
  echo "ci: build ($name) FAILED"
  FAILED=$((FAILED + 1))
  return 1
}

echo "== reliability: packages (clang 14, its sanitizer runtimes, libomp with Archer, libc++)"
apt-get install -y -qq --no-install-recommends clang-14 libclang-rt-14-dev libomp-14-dev libc++-14-dev \
  libc++abi-14-dev >/dev/null \
  || { echo "ci: apt-get install clang-14 failed"; FAILED=$((FAILED + 1)); }

if rel_build asan MODE=asan CXX=$REL_CXX all fuzzers; then
  run_suite sanitizers env "${REL_SAN_ENV[@]}" build/asan/qkvlab_tests "~[slow]"  # as the gcc debug suite did
  # Two fuzzers at a time (libFuzzer uses one core), each for REL_FUZZ_SECONDS.
  rel_fuzzers=(safetensors idx corpus variant)
  for i in "${!rel_fuzzers[@]}"; do
    f=${rel_fuzzers[$i]}
    rm -rf "build/asan/fuzz/work-$f" && mkdir -p "build/asan/fuzz/work-$f" && cp fuzz/corpus/$f/* "build/asan/fuzz/work-$f/"
    run_check_bg "fuzz-$f" env "${REL_SAN_ENV[@]}" "build/asan/fuzz/fuzz_$f" -max_total_time="$REL_FUZZ_SECONDS" \
      -max_len=4096 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="build/asan/fuzz/crash-$f-" \
      "build/asan/fuzz/work-$f"
    if [ $((i % 2)) -eq 1 ] || [ "$i" -eq $((${#rel_fuzzers[@]} - 1)) ]; then finish_checks; fi
  done
  for f in "${rel_fuzzers[@]}"; do
    echo "fuzz-$f: $(grep -E "^stat::number_of_executed_units" "$LOG/fuzz-$f.log" || echo "no stats")"
  done
fi

if rel_build tsan MODE=tsan CXX=$REL_CXX tsan-parts; then
  REL_TSAN_ENV=(OMP_TOOL_LIBRARIES=/usr/lib/llvm-14/lib/libarcher.so
                TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1 QKVLAB_THREADS=2)
  run_suite tsan env "${REL_TSAN_ENV[@]}" build/tsan/qkvlab_tsan_tests
fi

if rel_build libcxx CXX=$REL_CXX OPENMP=0 BUILD=build/libcxx EXTRA_CXXFLAGS=-stdlib=libc++ \
     EXTRA_LDFLAGS=-stdlib=libc++ all; then
  run_suite libcxx build/libcxx/qkvlab_tests "~[slow]"
  # Its training must follow the gcc OpenMP build's at --threads 1: the same loss at every step, to 1e-5. Not byte
  # for byte: the last bits of the weights differ between the compilers (clang fuses a*b+c only within an
  # expression, gcc also across them), while every logged loss was equal to all printed digits (2026-12-03).
  rel_same_as_threaded() {
    local flags=(train --task lm --data README.md --context 32 --d-model 32 --heads 4
                 --layers 2 --batch 8 --steps 15 --seed 3 --threads 1)
    rm -rf build/libcxx/same build/libcxx/same-gcc
    build/libcxx/qkvlab "${flags[@]}" --out build/libcxx/same >/dev/null 2>&1 || return 1
    build/release/qkvlab "${flags[@]}" --out build/libcxx/same-gcc >/dev/null 2>&1 || return 1
    python3 - build/libcxx/same/metrics.jsonl build/libcxx/same-gcc/metrics.jsonl <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
la = {r["step"]: r["loss"] for r in a if "loss" in r}
lb = {r["step"]: r["loss"] for r in b if "loss" in r}
assert la.keys() == lb.keys() and len(la) == 15, (sorted(la), sorted(lb))
worst = max(abs(la[k] - lb[k]) / abs(lb[k]) for k in la)
print(f"libc++/no-OpenMP vs gcc/OpenMP: {len(la)} steps, largest relative loss difference {worst:.2e}")
sys.exit(0 if worst <= 1e-5 else 1)
PY
  }
  run_check libcxx-same rel_same_as_threaded
fi
