#!/usr/bin/env bash
# bench/run.sh -- qkvlab's performance figures beside the reference implementations, when they are installed.
# `make bench` runs it after building (`make bench-quick` passes --quick). Each section is one `qkvlab bench`
# command (app/cmd_bench.cpp; the measuring code is bench/*.cpp), which runs the yardstick in its own process alternately with ours, row by row, and
# prints one markdown table with a ratio column (ours / theirs):
#   matmul    OpenBLAS cblas_sgemm: bench/sgemm_openblas.c, built here with -lopenblas (libopenblas-dev), and
#             the machine's FP32 FMA peak (bench/cpu_peak.c) as the ceiling
#   train     PyTorch: /usr/bin/python3 bench/torch_gpt.py (python3-torch), the same GPT in PyTorch
#   decode    ours only: with and without the KV cache, and the cache bytes against the formula
#   scaling   ours only: step time vs context and vs width, QKV vs Q-K=V, charts in $OUT/
#   demo      one run of `make demo`'s configuration (REVERSE, d 64, 2 layers, 2 heads, length 16, 2 epochs, one
#             seed, QKV) on one thread, whole `qkvlab study` processes, beside bench/torch_synthetic.py, the same
#             run in PyTorch (issue 16's speed goal: at most half the time of the authors' PyTorch code)
# A missing yardstick is said in one line and our figures are printed alone (install: bash tools/deps.sh --bench).
#
# Usage: bash bench/run.sh [--quick] [--sections "matmul train decode scaling demo"] [--repeats N] [--threads N]
#   --quick     one repeat, fewer samples and steps: a few minutes in all
#   --repeats   independent measurements per row (default 3; the tables show median [min-max])
#   --threads   measure only this thread count (default: 1 and all cores)
# The tables are also written to $OUT/bench_<time>.md (OUT defaults to build/release/bench-results).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build/release}
OUT=${OUT:-$BUILD/bench-results}
QKVLAB=$BUILD/qkvlab
SECTIONS="matmul train decode scaling demo"
FLAGS=()
QUICK=()
REPEATS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) FLAGS+=(--quick); QUICK=(--quick); REPEATS=1 ;;
    --sections) SECTIONS=$2; shift ;;
    --repeats) FLAGS+=(--repeats "$2"); REPEATS=$2; shift ;;
    --threads) FLAGS+=(--threads "$2"); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option '$1' (expected --quick, --sections, --repeats or --threads)" >&2; exit 2 ;;
  esac
  shift
done
for s in $SECTIONS; do
  case "$s" in matmul|train|decode|scaling|demo) ;;
    *) echo "bench/run.sh: unknown section '$s' (known: matmul train decode scaling demo)" >&2; exit 2 ;;
  esac
done
[ -x "$QKVLAB" ] || { echo "bench/run.sh: $QKVLAB not found; run make first" >&2; exit 2; }
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT="$OUT/bench_$STAMP.md"

# The yardsticks, when they can run here.
OPENBLAS=()
if ${CC:-gcc} -O2 bench/sgemm_openblas.c -o "$OUT/sgemm_openblas" -lopenblas -lm 2>/dev/null; then
  OPENBLAS=(--openblas "$OUT/sgemm_openblas")
fi
# OpenBLAS picks its kernels from the CPU it recognises. On a CPU newer than the library it falls back to an old
# generic core: OpenBLAS 0.3.21 took a 2026 Intel Xeon with AVX-512 for a Prescott (SSE3), and ran sgemm, and
# PyTorch's products with it (Debian's torch calls the same OpenBLAS), 2-5x below what the CPU can do, which made
# both yardsticks, and every ratio to them, wrong. So unless OPENBLAS_CORETYPE is set already, a core older than
# Haswell on a CPU with AVX2 and FMA gets the newest kernels OpenBLAS has for its instruction set (SkylakeX with
# AVX-512, else Haswell), for both yardsticks; the facts table says which kernels ran and why.
BLAS_CORE="not measured (OpenBLAS not found)"
if [ ${#OPENBLAS[@]} -gt 0 ]; then
  detected=$(env -u OPENBLAS_CORETYPE "$OUT/sgemm_openblas" --corename 2>/dev/null || echo unknown)
  cpu_has() {  # cpu_has FLAG...: every flag is in /proc/cpuinfo
    local f
    for f in "$@"; do grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | grep -qw "$f" || return 1; done
  }
  if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    BLAS_CORE="$OPENBLAS_CORETYPE, set by the caller (OPENBLAS_CORETYPE; the library detects $detected)"
  else
    case "${detected,,}" in  # lower case: a build for one core names it in capitals
      haswell|zen|skylakex|cooperlake|sapphirerapids) BLAS_CORE="$detected, as the library detects it" ;;
      *)
        want=""
        if cpu_has avx512f avx512bw avx512dq avx512vl; then want=SkylakeX
        elif cpu_has avx2 fma; then want=Haswell
        fi
        if [ -n "$want" ]; then
          export OPENBLAS_CORETYPE=$want
          used=$("$OUT/sgemm_openblas" --corename 2>/dev/null || echo unknown)  # a build without it ignores the request
          BLAS_CORE="$used, set here (OPENBLAS_CORETYPE=$want) for OpenBLAS and PyTorch: the library detects $detected, an older core than this CPU's"
        else
          BLAS_CORE="$detected, as the library detects it"
        fi ;;
    esac
  fi
fi
PEAK=""
if ${CC:-gcc} -O2 -march=native -fopenmp bench/cpu_peak.c -o "$OUT/cpu_peak" 2>/dev/null; then
  PEAK=$("$OUT/cpu_peak" || true)
fi
TORCH=()
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  TORCH=(--torch "/usr/bin/python3 bench/torch_gpt.py")
fi

section() {
  case "$1" in
    matmul)
      [ ${#OPENBLAS[@]} -gt 0 ] || echo "OpenBLAS: not found (libopenblas-dev); our figures alone."
      [ -z "$PEAK" ] || echo "$PEAK (bench/cpu_peak.c: the ceiling; also in the facts above)"
      echo
      "$QKVLAB" bench matmul "${FLAGS[@]}" "${OPENBLAS[@]}" ;;
    train)
      [ ${#TORCH[@]} -gt 0 ] || echo "PyTorch: not found (python3-torch for /usr/bin/python3); our figures alone."
      echo
      "$QKVLAB" bench train "${FLAGS[@]}" "${TORCH[@]}"
      # The memory goal: `small` again, keeping only each block's input (train --recompute).
      "$QKVLAB" bench train --presets small "${FLAGS[@]}" "${TORCH[@]}" --recompute ;;
    decode)
      "$QKVLAB" bench decode "${FLAGS[@]}" ;;
    scaling)
      "$QKVLAB" bench scaling "${QUICK[@]}" --out "$OUT" ;;
    demo)
      demo_section ;;
  esac
}

# One run of `make demo`'s configuration, ours and PyTorch's alternating, $REPEATS times each, one thread.
# Ours: the whole `qkvlab study` process (data, 158 steps, the 2,000-sequence evaluation, checkpoint, charts).
# PyTorch: the time bench/torch_synthetic.py reports (data, training, evaluation; not the interpreter's start and
# `import torch`, about a second more, which the last column adds back).
demo_section() {
  local have_torch=0 i t0 t1 ours theirs whole
  /usr/bin/python3 -c "import torch" 2>/dev/null && have_torch=1
  echo "## One run of the demo's configuration (REVERSE, d 64, 2 layers, 2 heads, length 16, 2 epochs: 158 steps of 128), one thread"
  echo
  [ $have_torch = 1 ] || echo "PyTorch: not found (python3-torch for /usr/bin/python3); our figures alone."
  echo "| run | qkvlab study, whole process (s) | PyTorch bench/torch_synthetic.py, data + training + evaluation (s) | ours / PyTorch | PyTorch whole process (s) |"
  echo "|---|---|---|---|---|"
  local rows=()
  for i in $(seq "$REPEATS"); do
    t0=$(date +%s.%N)
    "$QKVLAB" study --task reverse --variants qkv --d-model 64 --layers 2 --heads 2 --seq-len 16 --epochs 2 \
      --seeds 1 --threads 1 --no-maps --out "$OUT/demo-run" --overwrite >/dev/null 2>&1 ||
      { echo "bench/run.sh: qkvlab study failed (run it by hand to see why)" >&2; return 1; }
    t1=$(date +%s.%N)
    ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    theirs=- whole=-
    if [ $have_torch = 1 ]; then
      t0=$(date +%s.%N)
      theirs=$(/usr/bin/python3 bench/torch_synthetic.py --threads 1 | awk '{ printf "%.2f", $2 }')
      t1=$(date +%s.%N)
      whole=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    fi
    rows+=("$ours $theirs $whole")
    echo "| $i | $ours | $theirs | $(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }') | $whole |"
  done
  # median [min-max] of each column
  printf '%s\n' "${rows[@]}" | awk '
    function med(v, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
                                    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
    { n++; a[n] = $1; b[n] = $2; c[n] = $3; if ($2 + 0 > 0) r[n] = $1 / $2 }
    END {
      ma = med(a, n); lo_a = a[1]; hi_a = a[n]
      if (b[1] == "-") { printf "| median [min-max] | %.2f [%.2f-%.2f] | - | - | - |\n", ma, lo_a, hi_a; exit }
      mb = med(b, n); lo_b = b[1]; hi_b = b[n]; mr = med(r, n); lo_r = r[1]; hi_r = r[n]; mc = med(c, n)
      printf "| median [min-max] | %.2f [%.2f-%.2f] | %.2f [%.2f-%.2f] | %.2f [%.2f-%.2f] | %.2f [%.2f-%.2f] |\n", ma, lo_a, hi_a, mb, lo_b, hi_b, mr, lo_r, hi_r, mc, c[1], c[n]
    }'
  echo
  echo "The goal (issue 16): ours at most half the PyTorch run, a ratio <= 0.50. PyTorch runs its products on"
  echo "OpenBLAS with the kernels in the facts table above; bench/torch_synthetic.py is this project's PyTorch"
  echo "version of the authors' recipe, not their code."
  echo
}

# The facts two reports must share before their figures can be compared (issue 18): CPU, cores, caches, the
# measured FMA peak, transparent huge pages, the OpenMP wait policy, the load, and the versions of what ran.
machine_facts() {
  local cpu caches thp defrag gov wait torch blas peak
  cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
  caches=$(lscpu 2>/dev/null | sed -n 's/^\(L[123][di]*\) cache: *\(.*\)/\1 \2/p' | paste -sd, - | sed 's/,/, /g')
  thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
  defrag=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/defrag 2>/dev/null)
  gov=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || echo "not exposed")
  # app/openmp_policy.h: unless one of these three is set, qkvlab keeps the runtime's spin when no other process
  # runs at its start, and restarts with OMP_WAIT_POLICY=PASSIVE when one does.
  if [ -n "${OMP_WAIT_POLICY:-}${GOMP_SPINCOUNT:-}${KMP_BLOCKTIME:-}" ]; then
    wait="set here: OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-} KMP_BLOCKTIME=${KMP_BLOCKTIME:-}"
  else
    wait="qkvlab's default (the runtime's spin when the machine is idle at start-up, else OMP_WAIT_POLICY=PASSIVE); PyTorch's and OpenBLAS's own defaults"
  fi
  torch=$(/usr/bin/python3 -c "import torch; print(torch.__version__)" 2>/dev/null || echo "not installed")
  blas=$(dpkg-query -W -f '${Version}' libopenblas0-pthread 2>/dev/null || dpkg-query -W -f '${Version}' libopenblas0 2>/dev/null || echo "not installed")
  echo "| fact | value |"
  echo "|---|---|"
  echo "| date (UTC) | $(date -u '+%Y-%m-%d %H:%M') |"
  echo "| system | $(uname -srm) |"
  echo "| CPU | ${cpu:-unknown}, $(nproc) cores (nproc), frequency governor: $gov |"
  echo "| memory | $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) |"
  echo "| caches | ${caches:-unknown} |"
  local peak=${PEAK//FP32 FMA peak /}
  echo "| FP32 FMA peak (bench/cpu_peak.c) | ${peak:-not measured (it did not build)} |"
  echo "| transparent huge pages | enabled: ${thp:-unknown}, defrag: ${defrag:-unknown} |"
  echo "| OpenMP wait policy | $wait |"
  echo "| load average at the start | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| compiler | $(${CXX:-g++} --version | head -1) |"
  echo "| yardsticks | PyTorch $torch; OpenBLAS $blas |"
  echo "| OpenBLAS kernels (both yardsticks) | $BLAS_CORE |"
}

{
  echo "# qkvlab benchmarks $STAMP"
  echo
  machine_facts
  echo
  for s in $SECTIONS; do
    section "$s"
  done
} | tee "$REPORT"
echo "(written to $REPORT)"
