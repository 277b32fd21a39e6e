#!/usr/bin/env bash
# Train the default model (arch compact with grid maps) and a design rival side by side on a 2-core CPU, one
# core each, in the background; rerun the same command to continue after an interruption (each run resumes
# from its checkpoint.pt, or starts from INIT's weights, grown to the new inputs, when no checkpoint is left).
#
#   INIT=weights/depix-default.safetensors bash scripts/train_cpu.sh CROPDIR FACES_CSV RUNS MINUTES
#
# CROPDIR: a `depix prepare` export of ../shared/data/clips.csv; FACES_CSV: ../shared/data/faces.csv;
# RUNS: output folder; MINUTES: wall-clock length of the learning-rate schedule (the runs keep going at the
# final rate afterwards until stopped: `pkill -TERM -f "depixcli train"` checkpoints and exports first; with
# NPROC=2 signal the ranks only, `pkill -TERM -f -- "-u -m depixcli train"`, so torchrun does not print a traceback).
#   grid    compact net, F=5 (w=2, d=3), grid maps of every frame as input, clips + stills, L1, bf16 on CPU
#   align   the same + a flow aligner at 32 px warping the neighbours onto the centre (its loss on clean frames)
#   align-id  align + the SFace identity loss on 2 stacks of every batch (weight 0.005; 0.05 killed the net: output = input within 250 steps); branch it from align by
#           copying align's checkpoint.pt and config.json into RUNS/align-id first (ONLY=align-id)
#   align-t  align-id + the temporal loss (WT, default 0.3: ~20 % of the L1 at the start, on TS clip stacks of every
#           batch, default 4): those clip stacks are also reconstructed one frame later with the same mosaic draw, and the change of the
#           output between the two is held to the truth's (mean |Δoutput - Δtruth|); branch it from align-id the
#           same way (copy its checkpoint.pt and config.json into RUNS/align-t; ONLY=align-t)
# LR (default 3e-4) peak learning rate. THREADS (default 1) torch threads per run. NPROC=2 runs each run as NPROC data-parallel torchrun ranks on
# one core each (gradients averaged over ranks, batch 16 per rank): both cores on one design (ONLY=align-id). Logs: RUNS/<name>/log.jsonl (losses, samples/s, validation
# every 10 min), RUNS/<name>.out.
set -euo pipefail
CROPS=$1
FACES=$2
RUNS=$3
MINUTES=$4
THREADS=${THREADS:-1}
NPROC=${NPROC:-1}
LAUNCH=(python -m depixcli)
if [ "$NPROC" -gt 1 ]; then LAUNCH=(python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m depixcli); fi
mkdir -p "$RUNS"
run() {  # name, extra flags...
    local name=$1
    shift 1
    OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS setsid nohup "${LAUNCH[@]}" train "$CROPS" \
        -o "$RUNS/$name" --arch compact --window 2 --stride 3 --stage recon --no-gan --perceptual none \
        --grid-input --cpu-bf16 --stills "$FACES" \
        --batch-size 16 --lr "${LR:-3e-4}" --steps 10000000 --schedule-minutes "$MINUTES" --workers 1 --seed 0 \
        --val-minutes 10 --val-every 1000000 --ckpt-minutes 5 --ckpt-every 1000000 --log-every 100 -q "$@" \
        >>"$RUNS/$name.out" 2>&1 &
}
INIT_FLAGS=()
if [ -n "${INIT:-}" ]; then INIT_FLAGS=(--init "$INIT"); fi
for name in ${ONLY:-grid align}; do
    case $name in
        grid) run grid "${INIT_FLAGS[@]}" ;;
        align) run align --align "${INIT_FLAGS[@]}" ;;
        align-id) run align-id --align --w-identity 0.005 --identity-samples 2 "${INIT_FLAGS[@]}" ;;
        align-t) run align-t --align --w-identity 0.005 --identity-samples 2 --w-temporal "${WT:-0.3}" \
            --temporal-samples "${TS:-4}" "${INIT_FLAGS[@]}" ;;
    esac
done
echo "started: ${ONLY:-grid align} in $RUNS (tail -f $RUNS/grid/log.jsonl)"
