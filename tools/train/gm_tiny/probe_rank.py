"""How far can a decoder get whose log magnitudes have rank R? gm-tiny's decoder ends in a
linear head from a 128-wide feature per STFT frame, so every log-magnitude frame it can
make lies in one 128-dimensional (affine) subspace, whatever its trunk learns. This probe
scores the best such subspace for the music itself: the principal components of the
training clips' log-magnitude frames (n_fft 1920, both channels), the heldout sources'
frames projected onto the first R of them, decoded

- with the source's own phase (the bound of a decoder that gets the phase right), and
- by the position-phase rule with deviations from the projected magnitudes' own peaks
  (`autoencoder.peak_deviations`, the bound of `Decoder(deviations="peaks")` at rank R),

scored by `eval_ae`'s measures. Trains nothing.

    python3 -m tools.train.gm_tiny.probe_rank --data /work/data/train \\
        --heldout /work/data/heldout --ranks 128,256,512

Prints one JSON line per rank and decoding. tools/train/README.md has the figures.
"""

import argparse
import json
from pathlib import Path

import torch

from . import eval_ae
from . import geometry as g
from .autoencoder import LOBE_PHASE, peak_turn, stft, to_stft
from .clips import ClipSet


class Projection(torch.nn.Module):
    """An "autoencoder" for `eval_ae`: its encoder passes the audio through, its decoder
    plays the source's log magnitudes projected onto `basis` [R, F] around `mean` [F]
    (none: unprojected), with the source's phase or (`peaks`) the position-phase rule."""

    def __init__(self, mean, basis, peaks: bool):
        super().__init__()
        self.mean, self.basis, self.peaks = mean, basis, peaks
        self.encoder = torch.nn.Identity()

    def decoder(self, audio):
        spec = stft(audio)
        n = spec.shape[2] - spec.shape[2] % g.FRAMES_PER_LATENT
        spec = spec[:, :, :n]
        logmag = torch.log(torch.linalg.vector_norm(spec, dim=-1) + 1e-5)
        if self.basis is not None:
            logmag = (logmag - self.mean) @ self.basis.T @ self.basis + self.mean
        if self.peaks:
            return to_stft(logmag, LOBE_PHASE, peak_turn(logmag, torch.tensor([0])))
        return to_stft(logmag, torch.atan2(spec[..., 1], spec[..., 0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the clips the components come from")
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--ranks", default="128,256,512", help="comma-separated; 0 = unprojected")
    ap.add_argument("--every", type=int, default=10, help="use every N-th training clip")
    ap.add_argument("--clips", type=int, default=10, help="heldout clips scored")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train, heldout = ClipSet(args.data), ClipSet(args.heldout)
    with torch.no_grad():
        frames = torch.cat([
            torch.log(torch.linalg.vector_norm(stft(train.clip(i)[None]), dim=-1) + 1e-5)
            .reshape(-1, g.BINS) for i in range(0, len(train), args.every)])
        mean = frames.mean(0)
        _, _, components = torch.linalg.svd(frames - mean, full_matrices=False)
        for rank in (int(r) for r in args.ranks.split(",")):
            for peaks in (False, True):
                model = Projection(mean, components[:rank] if rank else None, peaks)
                print(json.dumps({"rank": rank or "full", "frames": len(frames),
                                  "phase": "its peaks" if peaks else "the source's",
                                  **eval_ae.evaluate(model, heldout, args.clips),
                                  **eval_ae.held_tones(model)}), flush=True)


if __name__ == "__main__":
    main()
