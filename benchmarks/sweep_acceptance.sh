#!/bin/bash
#   bash benchmarks/sweep_acceptance.sh [OUTPUT_ROOT]   (results: benchmarks/results/2026-12-03-sweep.md)
# zoo sweep acceptance: 2x2 grid, SIGTERM mid-trial, re-run, no finished trial repeated, export best
cd "$(dirname "$0")/.."
ROOT="${1:-/tmp/zoo-sweep-acceptance}"; OUT="$ROOT/sweep"
[ -e "$ROOT" ] && { echo "$ROOT exists: give a new folder" >&2; exit 2; }
mkdir -p "$ROOT"
SWEEP=(.venv/bin/zoo sweep finetune_sst2_quick --grid train.learning_rate=1e-4,5e-5 --grid train.batch_size=16,32 --set train.max_steps=60 --set train.logging_steps=20 --set eval.every_steps=30 --output $OUT -q)
echo "\$ ${SWEEP[*]}"
"${SWEEP[@]}" & PID=$!
# wait: one trial finished, another mid-trial (a step-30 checkpoint and no result.json)
while true; do
  done_n=$(ls $OUT/trials/*/result.json 2>/dev/null | wc -l)
  mid=$(for d in $OUT/trials/*/; do [ -d "$d/checkpoints/step-0000030" ] && [ ! -f "$d/result.json" ] && echo "$d"; done)
  if [ "$done_n" -ge 1 ] && [ -n "$mid" ]; then echo ">>> kill -TERM $PID while $mid is mid-trial"; kill -TERM $PID; break; fi
  kill -0 $PID 2>/dev/null || { echo "sweep ended before the kill"; break; }
  sleep 0.5
done
wait $PID; echo "exit $?"
for d in $OUT/trials/*/; do echo "$(basename $d): $(ls $d/checkpoints 2>/dev/null | tail -1) result=$([ -f $d/result.json ] && echo yes || echo no) "; done
echo "--- the same command again"
"${SWEEP[@]}"; echo "exit $?"
for d in $OUT/trials/*/; do echo "$(basename $d): $(ls $d/checkpoints 2>/dev/null | tail -1) result=$([ -f $d/result.json ] && echo yes || echo no)"; done
echo "--- export the best"
.venv/bin/zoo export $OUT -f onnx -o "$ROOT/export"; echo "exit $?"
