#!/usr/bin/env bash
# Train gm-tiny end to end ON a lent GPU machine, from the repository root, in one `device`
# call (at most 10 minutes): render the data there, train the autoencoder, fine-tune its
# decoder with the phase losses, train the DiT, export the bundle and evaluate it. What
# tools/train/README.md's CPU commands do, on CUDA, with step counts fitted to minutes
# (budget.py: each stage prints the steps it ran, and they go into the bundle's provenance).
#
# Needs target/device-carry/ from tools/train/device/prepare.sh (named in `carry`). Writes
# $OUT/result.tgz.NN: parts of one archive (the `device` tool returns files of 16 MiB at
# most) holding the bundle (bundle/), the final checkpoints (ae.pt, dit.pt), every stage's
# log and eval.txt; and $OUT/summary.txt. Here: cat result.tgz.* | tar xz.
#
# Knobs (environment): DEVICE (cuda), CLIPS (training clips, 3000), AE_MIN (2.5), DEC_MIN (1),
# DIT_MIN (2.5), JOBS (render processes, 16), WORK (/tmp/gm-train), ENC_HIRES_BINS (the
# encoder's 12.5 Hz fine view, 160 bins; 0 = gm-tiny's shipped encoder; README: why),
# DEC_POSITION_PHASE (0 by default: stage 1's plain decoder, fine-tuned with the phase losses;
# peaks: the autoencoder trains with a position-phase decoder from the start, its phase read
# from its magnitudes' peaks, and the decoder stage goes on with it; partials: the same with
# only the peaks that stand out as partials, every other bin played as noise (README:
# "Bins without a partial"); 1: the decoder stage turns
# stage 1's decoder into a position-phase one with a deviation head taught from the sources;
# README: why), DEC_FINE_DIM (the decoder's width at the STFT frame rate, which bounds the rank
# of its log magnitudes; 0 = 128, gm-tiny's; README: why wider, and what it costs latentd's
# decode), DEC_LATENT_HEAD (with DEC_POSITION_PHASE=peaks or partials, 1 by default: the decoder also
# predicts log magnitudes from its latent-rate features, 256 more dimensions for a sixth more
# decode; README: "A latent-rate magnitude head"), WITHOUT_DRUMS (held by default: how the
# training clips without drums are arranged, as the shipped DiT's last stage saw them, so that
# `nodrums` is heard; sparse or style: make_dataset's other arrangements; README: "Clips
# without drums").
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT="${OUT:?set OUT to the folder results go to}"
DEVICE="${DEVICE:-cuda}" CLIPS="${CLIPS:-3000}" JOBS="${JOBS:-16}" WORK="${WORK:-/tmp/gm-train}"
AE_MIN="${AE_MIN:-2.5}" DEC_MIN="${DEC_MIN:-1}" DIT_MIN="${DIT_MIN:-2.5}"
ENC_HIRES_BINS="${ENC_HIRES_BINS:-160}" DEC_POSITION_PHASE="${DEC_POSITION_PHASE:-0}"
DEC_FINE_DIM="${DEC_FINE_DIM:-0}" WITHOUT_DRUMS="${WITHOUT_DRUMS:-held}"
# Position-phase decoders whose deviations are read from their magnitudes (no deviation head).
READ_DEVIATIONS=$(case "$DEC_POSITION_PHASE" in peaks | partials) echo 1 ;; *) echo 0 ;; esac)
DEC_LATENT_HEAD="${DEC_LATENT_HEAD:-$READ_DEVIATIONS}"
CARRY=target/device-carry
SF="$CARRY/sf/MuseScore_General_Lite.sf3"
[ -f "$SF" ] || { echo "train: $SF is missing: run tools/train/device/prepare.sh here and carry $CARRY" >&2; exit 2; }
case "$DEC_POSITION_PHASE" in
    0 | 1) AE_DECODER=() ;;
    peaks | partials) AE_DECODER=(--position-phase --deviations "$DEC_POSITION_PHASE") ;;
    *) echo "train: DEC_POSITION_PHASE=$DEC_POSITION_PHASE: 0, 1, peaks or partials" >&2; exit 2 ;;
esac
case "$DEC_LATENT_HEAD/$READ_DEVIATIONS" in  # stage 1's new decoder; the rest keep its shape
    0/*) NEW_DECODER=() ;;
    1/1) NEW_DECODER=(--dec-latent-head) ;;
    1/*) echo "train: DEC_LATENT_HEAD=1 needs DEC_POSITION_PHASE=peaks or partials" >&2; exit 2 ;;
    *) echo "train: DEC_LATENT_HEAD=$DEC_LATENT_HEAD: 0 or 1" >&2; exit 2 ;;
esac
case "$WITHOUT_DRUMS" in
    style | sparse | held) ;;
    *) echo "train: WITHOUT_DRUMS=$WITHOUT_DRUMS: style, sparse or held" >&2; exit 2 ;;
esac
mkdir -p "$OUT" "$WORK"
started=$(date +%s)
stage() { echo "== $1 at $(( $(date +%s) - started )) s" | tee -a "$WORK/stages.txt"; }

if ! python3 -c "import tinysoundfont" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
        "$CARRY"/wheels/*.whl
    export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true) >"$WORK/card.txt" 2>&1
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$WORK/card.txt"

stage "data: $CLIPS training clips, 60 heldout"
python3 tools/train/make_dataset.py --out "$WORK/data/train" --clips "$CLIPS" --seconds 8 \
    --seed 1 --jobs "$JOBS" --soundfont "$SF" --without-drums "$WITHOUT_DRUMS" >"$WORK/data.log" 2>&1
python3 tools/train/make_dataset.py --out "$WORK/data/heldout" --clips 60 --seed 1 --heldout \
    --brightness-from "$WORK/data/train" --jobs "$JOBS" --soundfont "$SF" >>"$WORK/data.log" 2>&1

stage "autoencoder, $AE_MIN min"
python3 -m tools.train.gm_tiny.train_ae --data "$WORK/data/train" --heldout "$WORK/data/heldout" \
    --out "$WORK/ae" --steps 200000 --batch 32 --device "$DEVICE" --budget-minutes "$AE_MIN" \
    --enc-hires-bins "$ENC_HIRES_BINS" --dec-fine-dim "$DEC_FINE_DIM" --eval-every 1000 \
    --threads 4 "${AE_DECODER[@]}" "${NEW_DECODER[@]}" \
    >"$WORK/ae.log" 2>&1
decoder_stage() {  # out init minutes train_ae-arguments...
    local out="$1" init="$2" minutes="$3"
    shift 3
    python3 -m tools.train.gm_tiny.train_ae --data "$WORK/data/train" --heldout "$WORK/data/heldout" \
        --out "$WORK/$out" --steps 200000 --batch 32 --init "$init" --decoder-only \
        --device "$DEVICE" --budget-minutes "$minutes" --eval-every 1000 --threads 4 "$@" \
        >"$WORK/$out.log" 2>&1
}
if [ "$DEC_POSITION_PHASE" = 1 ]; then
    # A fifth of the time teaches a new deviation head on the stage-1 magnitudes, the rest
    # trains the whole decoder under the rule (README: "Where the position-phase decoder's
    # phase must come from").
    fifth=$(python3 -c "print($DEC_MIN / 5)") rest=$(python3 -c "print($DEC_MIN * 4 / 5)")
    stage "deviation head on the stage-1 magnitudes, $fifth min"
    decoder_stage ae-dev "$WORK/ae/ae.pt" "$fifth" --position-phase --keep-magnitudes \
        --deviation-weight 1 --lr 1e-3
    stage "position-phase decoder, $rest min"
    decoder_stage ae-dec "$WORK/ae-dev/ae.pt" "$rest" --position-phase --deviation-weight 1 \
        --lr 3e-4
elif [ "$READ_DEVIATIONS" = 1 ]; then
    stage "position-phase decoder (deviations from its $DEC_POSITION_PHASE), $DEC_MIN min"
    decoder_stage ae-dec "$WORK/ae/ae.pt" "$DEC_MIN" "${AE_DECODER[@]}" --lr 3e-4
else
    stage "decoder with phase losses, $DEC_MIN min"
    decoder_stage ae-dec "$WORK/ae/ae.pt" "$DEC_MIN" --phase-weight 1.0 --lr 5e-4
fi
stage "DiT, $DIT_MIN min"
python3 -m tools.train.gm_tiny.train_dit --ae "$WORK/ae/ae.pt" --data "$WORK/data/train" \
    --heldout "$WORK/data/heldout" --out "$WORK/dit" --steps 200000 --batch 64 \
    --device "$DEVICE" --budget-minutes "$DIT_MIN" --threads 4 >"$WORK/dit.log" 2>&1
stage "export"
python3 -m tools.train.gm_tiny.export --ae "$WORK/ae-dec/ae.pt" --dit "$WORK/dit/dit.pt" \
    --data "$WORK/data/train" --out "$WORK/bundle" --default-prompt "pop piano bass drums" \
    >"$WORK/export.log" 2>&1
stage "evaluate"
python3 -m tools.train.gm_tiny.eval_ae --ae "$WORK/ae/ae.pt" --ae "$WORK/ae-dec/ae.pt" \
    --heldout "$WORK/data/heldout" --clips 12 --threads 8 >"$WORK/eval.txt" 2>&1
stage "done"

{
    cat "$WORK/card.txt" "$WORK/stages.txt" "$WORK/eval.txt"
    grep -h "^budget:" "$WORK/ae.log" "$WORK/ae-dec.log" "$WORK/dit.log"
    tail -n 1 "$WORK/ae.log" "$WORK/ae-dec.log" "$WORK/dit.log"
} >"$OUT/summary.txt" 2>&1
tar czf "$WORK/result.tgz" -C "$WORK" bundle ae-dec/ae.pt dit/dit.pt card.txt stages.txt eval.txt \
    data.log ae.log ae-dec.log dit.log export.log ae/ae-log.jsonl ae-dec/ae-log.jsonl dit/dit-log.jsonl
split -b 15M -d "$WORK/result.tgz" "$OUT/result.tgz."
cat "$OUT/summary.txt"
