"""Can a position-phase decoder learn its deviations? Trains only the deviation head of a
position-phase decoder that keeps a plain decoder's magnitudes (`train_ae --keep-magnitudes`),
300 steps, in one of three arms:

- `soft`: the magnitude losses alone, through `Turn`'s soft choice among neighbouring grid
  points (train_ae's estimator);
- `straight`: the same through a straight-through rounding of the turn's angle, the
  estimator train_ae used before 2026-12-07 (reproduced here only);
- `supervised`: `soft` plus `deviation_loss`, the distance to the source's own deviations.

Step 0 is the yardstick: every deviation 0, each bin turning at its own centre's rate.

`--ceiling` trains nothing: it scores (`eval_ae`'s measures, 10 heldout clips) what the
position-phase rule makes of the plain decoder's magnitudes, or of the source's, with the
source's own deviations per latent frame (`source_steps`), the bound of any deviation head,
or with deviations read from the magnitudes' own peaks (`autoencoder.peak_deviations`).

    python3 -m tools.train.gm_tiny.probe_deviation --ae /work/runs/base/ae.pt \\
        --data /work/data/train --heldout /work/data/heldout --arm supervised \\
        --save /work/runs/probe-supervised.pt

Prints the mean training loss every 50 steps and the heldout log-mel error (8 clips) before
and after, as JSON lines; `--save` keeps the decoder for `eval_ae`. Same seed, batches and
learning rate in every arm. tools/train/README.md has the figures.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from . import autoencoder, eval_ae
from . import geometry as g
from .autoencoder import position_phase_from, stft
from .budget import cpu_state
from .clips import ClipSet
from .train_ae import (heldout_error_db, reconstruction_loss, source_steps,
                       train_deviations_only)

ARMS = ("soft", "straight", "supervised")
ROUNDED = autoencoder.frame_rotation  # the `straight` arm replaces the module's


def straight_through(deviation, frame_offset, frames: int, soft: bool = False):
    """`frame_rotation` with the gradient of the rounded angle itself (the old estimator)."""
    if not soft:
        return ROUNDED(deviation, frame_offset, frames)
    m = autoencoder.period_frames(frame_offset, frames, deviation.device)
    steps = deviation * autoencoder.PHASE_GRID
    steps = steps + (autoencoder.grid_steps(deviation) - steps).detach()
    return autoencoder.Turn(autoencoder.turn_angle(steps, m), None, deviation)


class Ceiling(torch.nn.Module):
    """An "autoencoder" for `eval_ae`: its encoder passes the audio through and its decoder
    is a `RuleDecoder`."""

    def __init__(self, plain, **rule):
        super().__init__()
        self.encoder, self.decoder = torch.nn.Identity(), RuleDecoder(plain, **rule)


class RuleDecoder(torch.nn.Module):
    """Audio -> the STFT the position-phase rule plays: magnitudes (the plain autoencoder's
    decode, or the source's with `source_magnitudes`), deviations per latent frame (`source`:
    the source's own; `peaks`: read from the magnitudes played, `autoencoder.peak_deviations`;
    `zero`), and the lobe phase (or 0)."""

    def __init__(self, plain, source_magnitudes=False, deviations="source", lobe_phase=True):
        super().__init__()
        self.plain, self.rule = plain, (source_magnitudes, deviations, lobe_phase)

    def forward(self, audio):
        source_magnitudes, deviations, lobe_phase = self.rule
        target = stft(audio)
        decoded = self.plain.decoder(self.plain.encoder(audio))
        n = min(target.shape[2], decoded.shape[2])
        target, decoded = target[:, :, :n], decoded[:, :, :n]
        magnitude = torch.linalg.vector_norm(target if source_magnitudes else decoded, dim=-1)
        logmag = torch.log(magnitude + 1e-7)
        phase = autoencoder.LOBE_PHASE if lobe_phase else torch.zeros(g.BINS)
        if deviations == "peaks":
            return autoencoder.to_stft(logmag, phase,
                                       autoencoder.peak_turn(logmag, torch.tensor([0])))
        re, im = source_steps(target)
        b, a, _, f = re.shape
        pad = torch.zeros(b, a, 1, f)  # the last frame's step: none, taken as 0
        re, im = torch.cat([re, pad], 2), torch.cat([im, pad], 2)
        group = (b, a, n // g.FRAMES_PER_LATENT, g.FRAMES_PER_LATENT, f)
        angle = torch.atan2(im.reshape(group).sum(3), re.reshape(group).sum(3))
        deviation = torch.repeat_interleave(angle / (math.pi / 2), g.FRAMES_PER_LATENT, dim=2)
        if deviations == "zero":
            deviation = torch.zeros_like(deviation)
        turn = ROUNDED(deviation, torch.tensor([0]), n)
        return autoencoder.to_stft(logmag, phase, turn)


def ceiling(plain, heldout):
    arms = {"as decoded": None,
            "its magnitudes, the source's deviations": Ceiling(plain),
            "its magnitudes, the source's deviations, phase 0": Ceiling(plain, lobe_phase=False),
            "its magnitudes, deviations 0": Ceiling(plain, deviations="zero"),
            "the source's magnitudes and deviations": Ceiling(plain, source_magnitudes=True),
            "its magnitudes, deviations from their peaks": Ceiling(plain, deviations="peaks"),
            "the source's magnitudes, deviations from their peaks":
                Ceiling(plain, source_magnitudes=True, deviations="peaks")}
    for name, model in arms.items():
        model = model or plain
        print(json.dumps({"ceiling": name, **eval_ae.evaluate(model, heldout, 10),
                          **eval_ae.held_tones(model)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", type=Path, required=True, help="a plain decoder's checkpoint")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--arm", choices=ARMS)
    ap.add_argument("--ceiling", action="store_true", help="score the rule's bound, train nothing")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--save", type=Path, help="write the trained autoencoder here (for eval_ae)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    if args.ceiling == bool(args.arm):
        ap.error("give one of --arm and --ceiling")
    ckpt = torch.load(args.ae, map_location="cpu", weights_only=False)
    ae = autoencoder.Autoencoder(**ckpt.get("sizes", {}))
    ae.load_state_dict(ckpt["state"])
    if args.ceiling:
        with torch.no_grad():
            ceiling(ae.eval(), ClipSet(args.heldout))
        return
    sizes = {**autoencoder.decoder_sizes(ae.sizes), "position_phase": True}
    ae.decoder = position_phase_from(ae.decoder, sizes)
    ae.encoder.requires_grad_(False)
    trained = train_deviations_only(ae.decoder)
    if args.arm == "straight":
        autoencoder.frame_rotation = straight_through  # Decoder.polar looks it up by name
    opt = torch.optim.AdamW(trained.parameters(), lr=args.lr, betas=(0.8, 0.99))
    train, heldout = ClipSet(args.data), ClipSet(args.heldout)
    print(json.dumps({"arm": args.arm, "step": 0,
                      "heldout_log_mel_db": heldout_error_db(ae, heldout)}), flush=True)
    started, running = time.time(), []
    for step in range(1, args.steps + 1):
        audio, first_frames = train.crops(rng, 8, 24 * g.SAMPLES_PER_LATENT)
        loss, _ = reconstruction_loss(ae, audio, train=True, first_frames=first_frames,
                                      deviation_weight=1.0 if args.arm == "supervised" else 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(float(loss.detach()))
        if step % 50 == 0:
            print(json.dumps({"arm": args.arm, "step": step, "loss": round(float(np.mean(running)), 4),
                              "elapsed_s": round(time.time() - started)}), flush=True)
            running = []
    print(json.dumps({"arm": args.arm, "step": args.steps,
                      "heldout_log_mel_db": heldout_error_db(ae, heldout)}), flush=True)
    if args.save:
        stage = {"steps": args.steps, "decoder_only": True, "position_phase": True,
                 "keep_magnitudes": True, "phase_weight": 0.0,
                 "deviation_weight": 1.0 if args.arm == "supervised" else 0.0}
        torch.save({"step": args.steps, "sizes": {**ae.sizes, "dec_position_phase": True},
                    "stages": ckpt.get("stages", []) + [stage], "state": cpu_state(ae)}, args.save)


if __name__ == "__main__":
    main()
