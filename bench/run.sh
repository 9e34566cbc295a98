#!/usr/bin/env bash
# bench/run.sh -- qkvlab's performance figures, beside reference implementations when they are installed.
# `make bench` runs it after building everything. One section per kind of figure; each section is a shell
# function `section_NAME` below and is listed in SECTIONS (add train/decode sections the same way).
#
# Usage: bash bench/run.sh [--quick] [--sections "matmul ..."] [--shapes LIST] [--threads "1 2"]
#   --quick     fewer and shorter samples (about a minute for the matmul section)
#   --sections  which sections to run (default: all of $ALL_SECTIONS)
#   --shapes    matmul shapes (prefixes of names, comma separated; see `bench_matmul --list`)
#   --threads   thread counts to measure (default "1 2", capped at nproc)
# Results (CSV and the printed markdown tables) are kept in $OUT (default build/release/bench-results).
#
# OpenBLAS pitfalls handled here (see ../shared/bench/README.md): OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set
# in the environment and would make OpenBLAS pick slower kernels, so they are unset for its runs; its thread count
# is set with OPENBLAS_NUM_THREADS; and it runs in its own process so that idle (spinning) threads of one library
# never compete with the other for the two cores. OpenBLAS and our kernel are measured alternately per thread
# count, so slow phases of a noisy machine hit both.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build/release}
OUT=${OUT:-$BUILD/bench-results}
ALL_SECTIONS="matmul"
SECTIONS=$ALL_SECTIONS
QUICK=()
SHAPES=()
NPROC=$(nproc 2>/dev/null || echo 1)
THREADS="1 2"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=(--quick) ;;
    --sections) SECTIONS=$2; shift ;;
    --shapes) SHAPES=(--shapes "$2"); shift ;;
    --threads) THREADS=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option '$1' (expected --quick, --sections, --shapes or --threads)" >&2; exit 2 ;;
  esac
  shift
done
T_LIST=""
for t in $THREADS; do [ "$t" -le "$NPROC" ] && T_LIST="$T_LIST $t"; done
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)

echo "# qkvlab benchmarks $STAMP"
echo "# $(uname -srm) | $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p') | nproc $NPROC | $(${CXX:-g++} --version | head -1)"
echo

section_matmul() {
  local ours="$BUILD/bench/bench_matmul"
  [ -x "$ours" ] || make -s "$ours"
  local csv_ours="$OUT/matmul_ours_$STAMP.csv" csv_ref="$OUT/matmul_openblas_$STAMP.csv"
  local ob="$OUT/bench_matmul_openblas" have_ob=0
  # The OpenBLAS copy of the same program: only when cblas.h and libopenblas are installed.
  if ${CXX:-g++} -std=c++20 -O3 -march=native -fopenmp -DWITH_OPENBLAS -I. bench/bench_matmul.cpp "$BUILD/libqkvlab.a" \
       -lopenblas -lz -lpthread -o "$ob" 2>/dev/null; then
    have_ob=1
  fi
  echo "## matmul: qkvlab::gemm GFLOP/s (float32)"
  echo
  if [ $have_ob = 1 ]; then
    echo "Reference: OpenBLAS cblas_sgemm on the same shapes and layouts (one call per batch entry), in its own process,"
    echo "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, OPENBLAS_NUM_THREADS = threads."
  else
    echo "OpenBLAS: not found (install libopenblas-dev for the reference columns)"
  fi
  echo
  for t in $T_LIST; do
    if [ $have_ob = 1 ]; then
      env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
        "$ob" --impl openblas --threads $t --csv "$csv_ref" "${QUICK[@]}" "${SHAPES[@]}" >/dev/null
    fi
    "$ours" --impl ours --threads $t --csv "$csv_ours" "${QUICK[@]}" "${SHAPES[@]}" >/dev/null
  done
  if [ $have_ob = 1 ]; then
    "$ours" --from-csv "$csv_ours" --ref "$csv_ref" | tee "$OUT/matmul_$STAMP.md"
  else
    "$ours" --from-csv "$csv_ours" | tee "$OUT/matmul_$STAMP.md"
  fi
  echo
  if [ $have_ob = 1 ]; then echo "(ratio = ours / OpenBLAS, median GF/s; CSV: $csv_ours $csv_ref)"; else echo "(CSV: $csv_ours)"; fi
  echo
}

for s in $SECTIONS; do
  if ! declare -F "section_$s" >/dev/null; then
    echo "bench/run.sh: unknown section '$s' (known: $ALL_SECTIONS)" >&2
    exit 2
  fi
  "section_$s"
done
