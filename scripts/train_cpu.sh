#!/usr/bin/env bash
# Train the shipped default model (arch compact) and its no-stills ablation on a 2-core CPU, side by side,
# one core each, in the background; rerun the same command to continue after an interruption (each run
# resumes from its checkpoint.pt, or from the shipped weights when INIT is set and no checkpoint is left).
#
#   bash scripts/train_cpu.sh CROPDIR FACES_CSV RUNS MINUTES
#
# CROPDIR: a `depix prepare` export of ../shared/data/clips.csv; FACES_CSV: ../shared/data/faces.csv;
# RUNS: output folder; MINUTES: wall-clock length of the learning-rate schedule (the runs keep going at the
# final rate afterwards until stopped: `pkill -TERM -f "depixcli train"` checkpoints and exports first).
#   default   compact net, F=5 (w=2, d=3), clips + stills (half of every batch), L1, mosaics of degrade.MosaicConfig
#   nostills  ablation: the same on the clips only (niced: compare with `default` at equal steps); seed 1:
#             its seed-0 run died at the start (all ReLUs before the output negative: output = input,
#             val_change ~ 0), which train.py now reports as a warning
# Logs: RUNS/<name>/log.jsonl (losses, samples/s, validation every 10 min), RUNS/<name>.out.
set -euo pipefail
CROPS=$1
FACES=$2
RUNS=$3
MINUTES=$4
mkdir -p "$RUNS"
run() {  # name, nice level, extra flags...
    local name=$1 level=$2
    shift 2
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 setsid nohup nice -n "$level" python -m depixcli train "$CROPS" \
        -o "$RUNS/$name" --arch compact --window 2 --stride 3 --stage recon --no-gan --perceptual none \
        --batch-size 16 --lr 5e-4 --steps 10000000 --schedule-minutes "$MINUTES" --workers 1 --seed 0 \
        --val-minutes 10 --val-every 1000000 --ckpt-minutes 5 --ckpt-every 1000000 --log-every 100 -q "$@" \
        >>"$RUNS/$name.out" 2>&1 &
}
INIT_FLAGS=()
if [ -n "${INIT:-}" ]; then INIT_FLAGS=(--init "$INIT"); fi
run default 0 --stills "$FACES" "${INIT_FLAGS[@]}"
run nostills 5 --seed 1
echo "started: $RUNS/default and $RUNS/nostills (tail -f $RUNS/default/log.jsonl)"
