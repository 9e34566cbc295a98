#!/usr/bin/env bash
# `qkvlab train` under mpirun (make MPI=1 first): 2 ranks print one report and write one run directory, the run
# resumes on 1 rank with the global batch, and commands other than train are refused on several ranks.
# Exit status 0 when every check holds; each failure says what it expected.
set -uo pipefail
cd "$(dirname "$0")/../.."
QK=build/mpi/qkvlab
MPIRUN=(mpirun --oversubscribe -np 2 -x QKVLAB_THREADS=1)
[ "$(id -u)" = 0 ] && MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2 -x QKVLAB_THREADS=1)
T=$(mktemp -d /tmp/qkvlab_mpi_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
expect() {  # description, command...: passes when the command succeeds
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}
FLAGS=(--task reverse --seq-len 8 --train-size 256 --test-size 64 --d-model 16 --layers 1 --heads 2 --seed 4)

"${MPIRUN[@]}" $QK train "${FLAGS[@]}" --batch 8 --steps 20 --save-every 10 --out "$T/run" >"$T/out" 2>"$T/err"
rc=$?
cat "$T/out"
expect "2-rank train exits 0 (got $rc)" test "$rc" = 0
expect "one report, from rank 0" test "$(grep -c '^done: 20 steps' "$T/out")" = 1
expect "it says it ran on 2 ranks with 16 examples per step" grep -q "data-parallel over 2 MPI ranks: batch 8 per rank, 16 per step" "$T/out"
expect "it times the allreduce" grep -q "^allreduce: .* ms per step (20 steps" "$T/out"
expect "metrics.jsonl written once per logged step" test "$(grep -c '"step":20,"loss"' "$T/run/metrics.jsonl")" = 1

# The checkpoint continues on 1 rank with the global batch (16) to step 30.
$QK train "${FLAGS[@]}" --batch 16 --steps 30 --resume --out "$T/run" --threads 1 >"$T/out1" 2>"$T/err1"
rc=$?
expect "resume on 1 rank exits 0 (got $rc; $(tail -n 1 "$T/err1"))" test "$rc" = 0
expect "the resumed run reaches step 30" grep -q '^done: 30 steps' "$T/out1"
expect "metrics continue from step 20" grep -q '"step":30,"loss"' "$T/run/metrics.jsonl"

# Only train runs on several ranks; the refusal is one line per rank and a non-zero status.
"${MPIRUN[@]}" $QK cache --preset 300M >"$T/out2" 2>"$T/err2"
rc=$?
expect "cache on 2 ranks is refused (status $rc)" test "$rc" != 0
expect "with a message naming train" grep -q "only 'train' runs on several MPI ranks" "$T/err2"

echo "$fails failed"
[ "$fails" = 0 ]
