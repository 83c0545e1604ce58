#!/usr/bin/env bash
# One command for a lent GPU: continue the shipped teacher and student side by side on stills and call video (issue
# "calls that look better"), each told the stream version 2 (codec, QP, call video). The student distils from the
# shipped teacher (the new one is not ready until the end; alpha low, so the clean targets of call frames lead).
# Best (EMA) weights and logs are written straight into $OUT, so a run cut short by the call's limit still brings
# them back. Ship them here with `python -m kd.ship OUT/NAME.best.pt weights/NAME.pt --coring auto`.
#   OUT=$OUT T_MIN=6.5 S_MIN=6.5 bash tools/gpu_calls.sh
# Needs data/stills_shard.npz (`python -m kd.data pack`), data/call_shard.npz (`python -m kd.calldata pack`) and the
# pytorch-msssim wheel in .whl/ (the GPU image lacks it).
set -euo pipefail
OUT=${OUT:-runs/gpu}; T_MIN=${T_MIN:-6.5}; S_MIN=${S_MIN:-6.5}; EVAL=${EVAL:-400}
DATA=${DATA:-data/stills_shard.npz}; CALLS=${CALLS:-data/call_shard.npz}; CALL_SHARE=${CALL_SHARE:-0.45}
T_LR=${T_LR:-2e-4}; S_LR=${S_LR:-5e-4}; ALPHA=${ALPHA:-0.3}; BATCH=${BATCH:-64}; S_TEACHER=${S_TEACHER:-weights/teacher.pt}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_setup.sh"
workers=$(( ($(nproc) - 2) / 2 )); [ "$workers" -ge 1 ] || workers=1
config_of() { python3 -c "import json, torch; print(json.dumps(torch.load('$1', weights_only=False)['config']))"; }
common=(--data "$DATA" --call-data "$CALLS" --call-share "$CALL_SHARE" --stream-aware --steps 1000000 --patch 128
        --batch "$BATCH" --ladder-share 0.5 --workers "$workers" --eval-every "$EVAL" --save-every 1000000 --best-fp16)
nets=(student)
if [ "$T_MIN" != 0 ]; then  # T_MIN=0: the student alone (e.g. distilling from a teacher a first run shipped)
  nets=(teacher student)
  python3 -m kd.train --model-config "$(config_of weights/teacher.pt)" --init weights/teacher.pt --minutes "$T_MIN" \
    --lr "$T_LR" --warmup 300 "${common[@]}" --out "$OUT/teacher.pt" --log "$OUT/teacher.log.jsonl" 2>"$OUT/teacher.err" &
  t=$!
else
  workers=$(( $(nproc) - 2 ))
  common+=(--workers "$workers")
fi
python3 -m kd.train --model-config "$(config_of weights/student.pt)" --init weights/student.pt --minutes "$S_MIN" \
  --teacher "$S_TEACHER" --alpha "$ALPHA" --pixel-loss mse --no-amp --lr "$S_LR" --warmup 200 --threads 1 \
  "${common[@]}" --out "$OUT/student.pt" --log "$OUT/student.log.jsonl" 2>"$OUT/student.err" &
s=$!
failed=0
[ "$T_MIN" = 0 ] || wait $t || failed=1
wait $s || failed=1
mkdir -p runs
for name in "${nets[@]}"; do
  mv "$OUT/$name.pt" "runs/$name.pt" 2>/dev/null || true  # the full training state is too large to bring back
  [ -f "$OUT/$name.best.pt" ] || { echo "$name: no best checkpoint" >&2; failed=1; }
  tail -c 3000 "$OUT/$name.err" | tr '\r' '\n' | grep -v '^$' | tail -n 4
done
ls -la "$OUT"
exit $failed
