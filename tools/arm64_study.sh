#!/usr/bin/env bash
# One short study run twice, by the x86 program and by the arm64 one under qemu (make study-arm64): prints both
# tables, then how far apart their numbers are. Fails when the runs disagree by more than rounding can explain.
#   bash tools/arm64_study.sh X86_QKVLAB "ARM64 COMMAND (the emulator, its options and the arm64 qkvlab)"
set -euo pipefail
x86=$1
arm=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Three variants of the paper, one seed, 30 steps: about 0.5 s on x86, one to two minutes under qemu.
args=(study --task reverse --variants qkv,kv,single+ --seq-len 8 --d-model 32 --layers 2 --heads 2 --steps 30
      --train-size 1024 --test-size 512 --batch 32 --no-maps --threads 2)
for side in x86 arm64; do
  cmd=$x86
  [ "$side" = arm64 ] && cmd=$arm
  echo "== $side: $cmd ${args[*]}"
  start=$SECONDS
  # shellcheck disable=SC2086
  $cmd "${args[@]}" --out "$out/$side" 2>"$out/$side.log"
  echo "== $side took $((SECONDS - start)) s"
done
# The trained weights themselves, byte for byte (reported, not required: a compiler may round differently).
for f in "$out"/x86/*/model.safetensors; do
  v=$(basename "$(dirname "$f")")
  if cmp -s "$f" "$out/arm64/$v/model.safetensors"; then same=identical; else same=different; fi
  echo "$v: trained weights on x86 and arm64 are $same byte for byte"
done
python3 - "$out/x86/results.json" "$out/arm64/results.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
worst_metric = worst_loss = 0.0
for va, vb in zip(a["variants"], b["variants"]):
    assert va["variant"] == vb["variant"], (va["variant"], vb["variant"])
    dm = max(abs(x - y) for x, y in zip(va["metric"], vb["metric"]))
    dl = max(abs(x - y) for x, y in zip(va["eval_loss"], vb["eval_loss"]))
    worst_metric, worst_loss = max(worst_metric, dm), max(worst_loss, dl)
    print(f"{va['paper_name']:>10}  accuracy x86 {va['metric'][0]:.6f}  arm64 {vb['metric'][0]:.6f}"
          f"  eval loss x86 {va['eval_loss'][0]:.9f}  arm64 {vb['eval_loss'][0]:.9f}  |diff| {dl:.2e}")
print(f"largest difference: accuracy {worst_metric:.6f}, eval loss {worst_loss:.3e}")
# Accuracy is a count over 512 x 8 digits: a rounding difference may flip a few of them, not more.
if worst_metric > 0.01 or worst_loss > 1e-3:
    sys.exit("arm64 and x86 disagree by more than rounding")
PY
