#!/usr/bin/env bash
# One command for a lent GPU machine: train the teacher on the packed shard for a fixed time (T_INIT=weights/teacher.pt
# continues the shipped one with a fresh schedule), ship it with the coring that does no harm (chosen on the shard's
# validation crops), then distil students from that cored teacher (alpha 0.5 and 0.9: an uncored teacher teaches
# them to change undamaged pixels). Weights and logs land in $OUT. Needs data/train_shard.npz
# (`python -m kd.data pack`) and the pytorch-msssim wheel in .whl/ (the GPU image lacks it). Nets are told their
# stream (--stream-aware; STREAM=0 for blind ones): a blind T_INIT starts the stream-aware teacher.
#   T_MIN=5 S_MIN=1.5 T_INIT=weights/teacher.pt OUT=runs/gpu bash tools/gpu_run.sh
# T_LR: the teacher's peak learning rate (lower to continue one), T_LADDER its --ladder-share. The students: ALPHAS
# (ALPHAS= for none), S_MODEL (a named config) or S_CONFIG (JSON), S_INIT to continue one, S_LR, S_FEAT the weight of
# feature distillation (0: outputs only); NOKD=1 adds the same student trained S_MIN minutes on clean targets alone
# (the equal-budget ablation: it runs no teacher, so it takes more steps in the same time); DATA names the shard
# (its size + the repo's must fit a device call's 64 MiB upload: `python -m kd.data pack --max-mb 23 --size 160`).
set -euo pipefail
OUT=${OUT:-runs/gpu}; T_MIN=${T_MIN:-5}; S_MIN=${S_MIN:-1.5}; WORKERS=${WORKERS:-14}
T_BATCH=${T_BATCH:-64}; S_BATCH=${S_BATCH:-64}; T_MODEL=${T_MODEL:-teacher-gpu}; EVAL=${EVAL:-500}
DATA=${DATA:-data/train_shard.npz}; T_LR=${T_LR:-5e-4}; S_MODEL=${S_MODEL:-student-rep}; S_LR=${S_LR:-2e-3}
AWARE=$([ "${STREAM:-1}" = 1 ] && echo --stream-aware || true)
mkdir -p "$OUT" runs
source "$(dirname "$0")/gpu_setup.sh"
python3 -m kd.train --model "$T_MODEL" --data "$DATA" --minutes "$T_MIN" --steps 1000000 \
  --batch "$T_BATCH" --patch 128 --lr "$T_LR" --warmup 300 --workers "$WORKERS" --eval-every "$EVAL" \
  --save-every 1000000 --best-fp16 --ladder-share "${T_LADDER:-0}" $AWARE ${T_INIT:+--init "$T_INIT"} \
  --out "$OUT/teacher.pt" --log "$OUT/teacher.log.jsonl"  # the full state (>16 MB) stays there
mv "$OUT/teacher.pt" runs/teacher.pt; cp "$OUT/teacher.best.pt" runs/teacher.best.pt
python3 -m kd.ship runs/teacher.best.pt "$OUT/teacher_shipped.pt" --coring auto --fp16 --val "$DATA"
for alpha in ${ALPHAS-0.5 0.9}; do
  python3 -m kd.train --model "$S_MODEL" ${S_CONFIG:+--model-config "$S_CONFIG"} ${S_INIT:+--init "$S_INIT"} \
    --teacher "$OUT/teacher_shipped.pt" --alpha "$alpha" --feature-weight "${S_FEAT:-0}" --pixel-loss mse --no-amp \
    --data "$DATA" --minutes "$S_MIN" --steps 1000000 --batch "$S_BATCH" --patch 128 --lr "$S_LR" \
    --warmup 200 --workers "$WORKERS" --eval-every "$EVAL" --save-every 1000000 $AWARE \
    --out "runs/student_a$alpha.pt" --log "$OUT/student_a$alpha.log.jsonl"
  cp "runs/student_a$alpha.best.pt" "$OUT/student_a$alpha.best.pt"
done
if [ "${NOKD:-0}" = 1 ]; then
  python3 -m kd.train --model "$S_MODEL" ${S_CONFIG:+--model-config "$S_CONFIG"} ${S_INIT:+--init "$S_INIT"} --no-kd \
    --pixel-loss mse --no-amp --data "$DATA" --minutes "$S_MIN" --steps 1000000 --batch "$S_BATCH" --patch 128 \
    --lr "$S_LR" --warmup 200 --workers "$WORKERS" --eval-every "$EVAL" --save-every 1000000 $AWARE \
    --out runs/student_nokd.pt --log "$OUT/student_nokd.log.jsonl"
  cp runs/student_nokd.best.pt "$OUT/student_nokd.best.pt"
fi
ls -la "$OUT"
