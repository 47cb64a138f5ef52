"""Can a position-phase decoder learn its deviations? Trains only the phase head of a
position-phase decoder that keeps a plain decoder's magnitudes (`train_ae --keep-magnitudes`),
with the magnitude losses alone, in one of four arms:

- `frozen`: the deviations held at 0, so every bin turns at its centre's rate (the phase
  head learns its phases only): the yardstick;
- `soft`: the deviations learn through `Turn`'s soft choice among neighbouring grid points
  (what `train_ae` does);
- `slow`: the same at a tenth of the rate (the deviation rows' outputs scaled by 0.1);
- `straight`: through a straight-through rounding of the turn's angle, the estimator
  train_ae used before 2026-12-07 (reproduced here only).

    python3 -m tools.train.gm_tiny.probe_deviation --ae /work/runs/base/ae.pt \\
        --data /work/data/train --heldout /work/data/heldout --arm soft

Prints the mean training loss every 50 steps and the heldout log-mel error (8 clips) before
and after, as JSON lines. Same seed, batches and learning rate in every arm, so the arms'
losses compare step by step. tools/train/README.md has the figures.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import autoencoder
from . import geometry as g
from .clips import ClipSet
from .train_ae import heldout_error_db, reconstruction_loss, with_phase_head

ARMS = ("frozen", "soft", "slow", "straight")
SLOW = 0.1
ROUNDED = autoencoder.frame_rotation  # the `straight` arm replaces the module's


def straight_through(deviation, frame_offset, frames: int, soft: bool = False):
    """`frame_rotation` with the gradient of the rounded angle itself (the old estimator)."""
    if not soft:
        return ROUNDED(deviation, frame_offset, frames)
    m = autoencoder.period_frames(frame_offset, frames, deviation.device)
    limit = autoencoder.MAX_DEVIATION * autoencoder.PHASE_GRID
    steps = deviation * autoencoder.PHASE_GRID
    steps = steps + (torch.round(steps.clamp(-limit, limit)) - steps).detach()
    return autoencoder.Turn(autoencoder.turn_angle(steps, m), None)


class DeviationRows(torch.nn.Module):
    """The phase head with its deviation rows' outputs scaled by `scale`."""

    def __init__(self, head: torch.nn.Linear, scale: float):
        super().__init__()
        self.head = head
        rows = torch.ones(g.AUDIO_CHANNELS, 2, g.BINS)
        rows[:, 1] = scale
        self.register_buffer("rows", rows.reshape(-1))

    def forward(self, x):
        return self.head(x) * self.rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ae", type=Path, required=True, help="a plain decoder's checkpoint")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--arm", choices=ARMS, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    ckpt = torch.load(args.ae, map_location="cpu", weights_only=False)
    ae = autoencoder.Autoencoder(**ckpt.get("sizes", {}))
    ae.load_state_dict(ckpt["state"])
    sizes = {**autoencoder.decoder_sizes(ae.sizes), "position_phase": True}
    ae.decoder = with_phase_head(ae.decoder, sizes)
    ae.requires_grad_(False)
    decoder = ae.decoder
    trained = [decoder.phase_norm, decoder.phase_head]
    for module in trained:
        module.requires_grad_(True)
    if args.arm == "frozen":
        keep = torch.ones(g.AUDIO_CHANNELS, 2, g.BINS)
        keep[:, 1] = 0.0
        keep = keep.reshape(-1)
        decoder.phase_head.weight.register_hook(lambda grad: grad * keep[:, None])
        decoder.phase_head.bias.register_hook(lambda grad: grad * keep)
    elif args.arm == "slow":
        decoder.phase_head = DeviationRows(decoder.phase_head, SLOW)
    elif args.arm == "straight":
        autoencoder.frame_rotation = straight_through  # Decoder.polar looks it up by name
    opt = torch.optim.AdamW([p for m in trained for p in m.parameters()], lr=args.lr,
                            betas=(0.8, 0.99))
    train, heldout = ClipSet(args.data), ClipSet(args.heldout)
    print(json.dumps({"arm": args.arm, "step": 0,
                      "heldout_log_mel_db": heldout_error_db(ae, heldout)}), flush=True)
    started, running = time.time(), []
    for step in range(1, args.steps + 1):
        audio, first_frames = train.crops(rng, 8, 24 * g.SAMPLES_PER_LATENT)
        loss, _ = reconstruction_loss(ae, audio, train=True, first_frames=first_frames)
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


if __name__ == "__main__":
    main()
