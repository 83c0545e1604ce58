#!/usr/bin/env bash
# One command for a lent GPU: train student variants side by side on a packed shard, told their stream, on clean
# targets. One tiny student barely loads the GPU; its data workers are the limit, so the machine's cores are split
# between the runs and each variant gets the same data, schedule and seed: an ablation at the price of one run.
# Each argument is NAME=JSON (a model config); all start from S_INIT (grown where a variant has more experts).
# Best (EMA) weights and logs land in $OUT; ship them here with `python -m kd.ship OUT/NAME.best.pt ... --coring auto`.
#   S_INIT=weights/student.pt S_MIN=7.5 DATA=data/train_shard_ladder.npz OUT=runs/gpu bash tools/gpu_students.sh \
#     trunk='{"arch":"student",...,"experts":16}' all='{"arch":"student",...,"experts":16,"expert_scope":"all"}'
# Needs the pytorch-msssim wheel in .whl/ when the machine lacks it (as tools/gpu_run.sh).
set -euo pipefail
OUT=${OUT:-runs/gpu}; S_MIN=${S_MIN:-5}; DATA=${DATA:-data/train_shard.npz}; S_LR=${S_LR:-5e-4}
S_BATCH=${S_BATCH:-64}; LADDER=${LADDER:-0.5}; EVAL=${EVAL:-500}; SEED=${SEED:-0}
[ $# -gt 0 ] || { echo "usage: bash tools/gpu_students.sh NAME=JSON [NAME=JSON ...]" >&2; exit 2; }
mkdir -p "$OUT" runs
source "$(dirname "$0")/gpu_setup.sh"
workers=$(( ($(nproc) - $#) / $# )); [ "$workers" -ge 1 ] || workers=1
pids=()
for variant in "$@"; do
  name=${variant%%=*}; config=${variant#*=}
  python3 -m kd.train --model student --model-config "$config" --stream-aware --no-kd ${S_INIT:+--init "$S_INIT"} \
    --data "$DATA" --minutes "$S_MIN" --steps 1000000 --batch "$S_BATCH" --patch 128 --lr "$S_LR" --warmup 200 \
    --ladder-share "$LADDER" --seed "$SEED" --workers "$workers" --threads 1 --eval-every "$EVAL" \
    --save-every 1000000 --no-amp --out "runs/$name.pt" --log "$OUT/$name.log.jsonl" 2>"$OUT/$name.err" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
for variant in "$@"; do
  name=${variant%%=*}
  [ -f "runs/$name.best.pt" ] && cp "runs/$name.best.pt" "$OUT/" || { echo "$name: no best checkpoint" >&2; failed=1; }
  tail -c 2000 "$OUT/$name.err" | tr '\r' '\n' | tail -n 3
done
ls -la "$OUT"
exit $failed
