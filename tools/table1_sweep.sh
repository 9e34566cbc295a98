#!/usr/bin/env bash
# Paper Table 1 at laptop scale: the six paper-synthetic variants on the five synthetic tasks over the sweep
# d_model {32, 64} x heads {2, 4} x length {16, 64}, 2 layers, seeds 0-2, the authors' recipe and init (the synthetic
# defaults: 2 epochs of 10,000 sequences, Adam lr 1e-3, batch 128, clip 5; torch init; (X)+ w ~ N(0, 0.02)).
# One `qkvlab study` per cell (task x d x heads x length), written to OUT/T<len>_d<d>_h<heads>/<task>/.
#
# Resumable: a cell with a results.json is skipped; a cell without one (a run stopped half way) is removed and run
# again. Lengths run in the order given, so the cheap length 16 finishes first. Summarise with
# tools/table1_summary.py OUT.
#
#   tools/table1_sweep.sh [OUT] [extra study flags...]     e.g.  nice -n 10 tools/table1_sweep.sh runs/table1
# Environment: QKVLAB (default build/qkvlab), LENGTHS (default "16 64"), DIMS ("32 64"), HEADS ("2 4"),
# TASKS ("reverse sort sub swap copy"), THREADS (default 1).
set -euo pipefail
OUT=${1:-runs/table1}
shift || true
QKVLAB=${QKVLAB:-build/qkvlab}
LENGTHS=${LENGTHS:-"16 64"}
DIMS=${DIMS:-"32 64"}
HEADS=${HEADS:-"2 4"}
TASKS=${TASKS:-"reverse sort sub swap copy"}
THREADS=${THREADS:-1}
[ -x "$QKVLAB" ] || { echo "table1_sweep: $QKVLAB not found; build first (make)" >&2; exit 2; }
mkdir -p "$OUT"
for T in $LENGTHS; do
  for d in $DIMS; do
    for h in $HEADS; do
      for task in $TASKS; do
        cell="$OUT/T${T}_d${d}_h${h}/$task"
        if [ -f "$cell/results.json" ]; then continue; fi
        rm -rf "$cell"
        mkdir -p "$(dirname "$cell")"
        echo "$(date +%H:%M:%S) table1: $cell" >&2
        start=$(date +%s)
        "$QKVLAB" study --task "$task" --variants paper-synthetic --d-model "$d" --layers 2 --heads "$h" \
          --seq-len "$T" --epochs 2 --seeds 3 --threads "$THREADS" --no-maps --out "$cell" "$@" \
          > "$cell.log" 2>&1 || { echo "table1: $cell failed (see $cell.log)" >&2; exit 1; }
        echo "$(date +%H:%M:%S) table1: $cell done in $(( $(date +%s) - start )) s" >&2
      done
    done
  done
done
echo "table1: all cells in $OUT done" >&2
